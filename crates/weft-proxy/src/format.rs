//! Envoy's substitution format strings (`%REQ(X-REQUEST-ID)%`, `%RESPONSE_CODE%`, ...),
//! parsed once into pieces and rendered against a [`StreamInfo`]. Used by access logs and
//! by header values that carry command operators.

use crate::stream_info::StreamInfo;
use http::HeaderName;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// A parsed format string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Op(Operator, Option<usize>),
}

/// Where a header operator looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderSource {
    Request,
    Response,
    Trailer,
}

/// One command operator.
#[derive(Debug, Clone, PartialEq)]
enum Operator {
    StartTime(Option<String>),
    Header(HeaderSource, HeaderRef, Option<HeaderRef>),
    Protocol,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    UpstreamTransportFailureReason,
    UpstreamRequestAttemptCount,
    DownstreamRemoteAddress { port: bool },
    DownstreamRemotePort,
    DownstreamDirectRemoteAddress { port: bool },
    DownstreamLocalAddress { port: bool },
    DownstreamLocalPort,
    RequestedServerName,
    Tls(TlsSide, TlsField),
    RouteName,
    ConnectionId,
    Hostname,
    ConnectionTerminationDetails,
}

/// Which connection a TLS operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsSide {
    Downstream,
    Upstream,
}

/// What a TLS operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsField {
    PeerUriSan,
    LocalUriSan,
    PeerSerial,
    Version,
    Cipher,
}

/// A header an operator names: a pseudo-header or a regular one.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderRef {
    /// `:method`
    Method,
    /// `:path`
    Path,
    /// `:authority` (or `Host`)
    Authority,
    /// `:scheme`
    Scheme,
    /// Any other header.
    Named(HeaderName),
}

/// A format string that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

/// Whether the rendered value of a one-operator template is a number (for JSON logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A string.
    Text,
    /// An integer.
    Number,
}

impl Template {
    /// Parses Envoy's format string syntax.
    pub fn parse(s: &str) -> Result<Template, FormatError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let end = command_end(rest)
                .ok_or_else(|| FormatError(format!("unterminated command operator in {s:?}")))?;
            let command = &rest[..end];
            rest = &rest[end + 1..];
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            let (op, max_len) = parse_operator(command)?;
            pieces.push(Piece::Op(op, max_len));
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// Whether the template has no operator at all.
    pub fn is_static(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// The JSON type of the value, for templates of exactly one numeric operator.
    pub fn kind(&self) -> ValueKind {
        match self.pieces.as_slice() {
            [Piece::Op(op, None)] if op.is_numeric() => ValueKind::Number,
            _ => ValueKind::Text,
        }
    }

    /// Request headers this template reads, so they can be captured before forwarding.
    pub fn request_headers(&self, out: &mut Vec<HeaderName>) {
        self.headers(HeaderSource::Request, out)
    }

    /// Response headers (and trailers) this template reads.
    pub fn response_headers(&self, out: &mut Vec<HeaderName>) {
        self.headers(HeaderSource::Response, out);
        self.headers(HeaderSource::Trailer, out);
    }

    fn headers(&self, source: HeaderSource, out: &mut Vec<HeaderName>) {
        for piece in &self.pieces {
            if let Piece::Op(Operator::Header(s, a, b), _) = piece {
                if *s == source {
                    for h in [Some(a), b.as_ref()].into_iter().flatten() {
                        if let HeaderRef::Named(name) = h {
                            if !out.contains(name) {
                                out.push(name.clone());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Renders into `out`; a value that is unknown renders as `-`.
    pub fn render(&self, info: &StreamInfo, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Op(op, max_len) => {
                    let start = out.len();
                    op.render(info, out);
                    if out.len() == start {
                        out.push('-');
                    }
                    if let Some(max) = max_len {
                        truncate_at_char(out, start + max);
                    }
                }
            }
        }
    }

    /// Renders a value for a JSON log: `false` when the template is one operator whose
    /// value is unknown (written as `null`), `true` otherwise.
    pub fn render_value(&self, info: &StreamInfo, out: &mut String) -> bool {
        if let [Piece::Op(op, max_len)] = self.pieces.as_slice() {
            op.render(info, out);
            if let Some(max) = max_len {
                truncate_at_char(out, *max);
            }
            return !out.is_empty();
        }
        self.render(info, out);
        true
    }

    /// Renders into a new string.
    pub fn render_to_string(&self, info: &StreamInfo) -> String {
        let mut s = String::new();
        self.render(info, &mut s);
        s
    }
}

/// The index of the `%` that ends the command at the start of `rest`: after the name,
/// an optional `(...)` argument (which may itself hold `%`), and an optional `:LEN`.
fn command_end(rest: &str) -> Option<usize> {
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let mut i = name_len;
    if rest[i..].starts_with('(') {
        i += rest[i..].find(')')? + 1;
    }
    if rest[i..].starts_with(':') {
        i += 1 + rest[i + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - i - 1);
    }
    rest[i..].starts_with('%').then_some(i)
}

fn truncate_at_char(s: &mut String, mut at: usize) {
    if at >= s.len() {
        return;
    }
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
}

fn parse_operator(command: &str) -> Result<(Operator, Option<usize>), FormatError> {
    // NAME, NAME(args), NAME(args):LEN
    let (head, max_len) = match command.rfind("):") {
        Some(i) => {
            let len = command[i + 2..]
                .parse::<usize>()
                .map_err(|_| FormatError(format!("bad length in %{command}%")))?;
            (&command[..i + 1], Some(len))
        }
        None => (command, None),
    };
    let (name, arg) = match head.find('(') {
        Some(i) if head.ends_with(')') => (&head[..i], Some(&head[i + 1..head.len() - 1])),
        Some(_) => {
            return Err(FormatError(format!(
                "unbalanced parentheses in %{command}%"
            )))
        }
        None => (head, None),
    };
    let no_arg = |op: Operator| match arg {
        None => Ok((op, max_len)),
        Some(_) => Err(FormatError(format!("%{name}% takes no argument"))),
    };
    match name {
        "START_TIME" => Ok((
            Operator::StartTime(arg.filter(|a| !a.is_empty()).map(str::to_string)),
            max_len,
        )),
        "REQ" | "RESP" | "TRAILER" => {
            let source = match name {
                "REQ" => HeaderSource::Request,
                "RESP" => HeaderSource::Response,
                _ => HeaderSource::Trailer,
            };
            let arg =
                arg.ok_or_else(|| FormatError(format!("%{name}(...)% needs a header name")))?;
            let (main, alt) = match arg.split_once('?') {
                Some((a, b)) => (a, Some(b)),
                None => (arg, None),
            };
            let main = header_ref(main)?;
            let alt = alt.map(header_ref).transpose()?;
            Ok((Operator::Header(source, main, alt), max_len))
        }
        "PROTOCOL" => no_arg(Operator::Protocol),
        "RESPONSE_CODE" => no_arg(Operator::ResponseCode),
        "RESPONSE_CODE_DETAILS" => no_arg(Operator::ResponseCodeDetails),
        "RESPONSE_FLAGS" => no_arg(Operator::ResponseFlags),
        "BYTES_RECEIVED" => no_arg(Operator::BytesReceived),
        "BYTES_SENT" => no_arg(Operator::BytesSent),
        "DURATION" => no_arg(Operator::Duration),
        "RESPONSE_DURATION" => no_arg(Operator::ResponseDuration),
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => no_arg(Operator::UpstreamHost),
        "UPSTREAM_CLUSTER" => no_arg(Operator::UpstreamCluster),
        "UPSTREAM_LOCAL_ADDRESS" => no_arg(Operator::UpstreamLocalAddress),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => no_arg(Operator::UpstreamTransportFailureReason),
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => no_arg(Operator::UpstreamRequestAttemptCount),
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Operator::DownstreamRemoteAddress { port: true }),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Operator::DownstreamRemoteAddress { port: false })
        }
        "DOWNSTREAM_REMOTE_PORT" => no_arg(Operator::DownstreamRemotePort),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
            no_arg(Operator::DownstreamDirectRemoteAddress { port: true })
        }
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Operator::DownstreamDirectRemoteAddress { port: false })
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(Operator::DownstreamLocalAddress { port: true }),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            no_arg(Operator::DownstreamLocalAddress { port: false })
        }
        "DOWNSTREAM_LOCAL_PORT" => no_arg(Operator::DownstreamLocalPort),
        "REQUESTED_SERVER_NAME" => no_arg(Operator::RequestedServerName),
        "DOWNSTREAM_PEER_URI_SAN" => {
            no_arg(Operator::Tls(TlsSide::Downstream, TlsField::PeerUriSan))
        }
        "DOWNSTREAM_LOCAL_URI_SAN" => {
            no_arg(Operator::Tls(TlsSide::Downstream, TlsField::LocalUriSan))
        }
        "DOWNSTREAM_PEER_SERIAL" => {
            no_arg(Operator::Tls(TlsSide::Downstream, TlsField::PeerSerial))
        }
        "DOWNSTREAM_TLS_VERSION" => no_arg(Operator::Tls(TlsSide::Downstream, TlsField::Version)),
        "DOWNSTREAM_TLS_CIPHER" => no_arg(Operator::Tls(TlsSide::Downstream, TlsField::Cipher)),
        "UPSTREAM_PEER_URI_SAN" => no_arg(Operator::Tls(TlsSide::Upstream, TlsField::PeerUriSan)),
        "UPSTREAM_LOCAL_URI_SAN" => no_arg(Operator::Tls(TlsSide::Upstream, TlsField::LocalUriSan)),
        "UPSTREAM_PEER_SERIAL" => no_arg(Operator::Tls(TlsSide::Upstream, TlsField::PeerSerial)),
        "UPSTREAM_TLS_VERSION" => no_arg(Operator::Tls(TlsSide::Upstream, TlsField::Version)),
        "UPSTREAM_TLS_CIPHER" => no_arg(Operator::Tls(TlsSide::Upstream, TlsField::Cipher)),
        "ROUTE_NAME" => no_arg(Operator::RouteName),
        "CONNECTION_ID" => no_arg(Operator::ConnectionId),
        "HOSTNAME" => no_arg(Operator::Hostname),
        "CONNECTION_TERMINATION_DETAILS" => no_arg(Operator::ConnectionTerminationDetails),
        other => Err(FormatError(format!(
            "command operator %{other}% is not supported"
        ))),
    }
}

fn header_ref(name: &str) -> Result<HeaderRef, FormatError> {
    let lower = name.trim().to_ascii_lowercase();
    Ok(match lower.as_str() {
        ":method" => HeaderRef::Method,
        ":path" => HeaderRef::Path,
        ":authority" => HeaderRef::Authority,
        ":scheme" => HeaderRef::Scheme,
        _ => HeaderRef::Named(
            HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| FormatError(format!("{name:?} is not a valid header name")))?,
        ),
    })
}

impl Operator {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
                | Operator::ResponseDuration
                | Operator::UpstreamRequestAttemptCount
                | Operator::ConnectionId
                | Operator::DownstreamRemotePort
                | Operator::DownstreamLocalPort
        )
    }

    fn render(&self, info: &StreamInfo, out: &mut String) {
        match self {
            Operator::StartTime(None) => write_rfc3339_millis(info.start_time, out),
            Operator::StartTime(Some(fmt)) => write_strftime(info.start_time, fmt, out),
            Operator::Header(source, main, alt) => {
                let found = render_header(info, *source, main, out);
                if !found {
                    if let Some(alt) = alt {
                        render_header(info, *source, alt, out);
                    }
                }
            }
            Operator::Protocol => {
                if let Some(r) = &info.request {
                    out.push_str(match r.version {
                        http::Version::HTTP_09 => "HTTP/0.9",
                        http::Version::HTTP_10 => "HTTP/1.0",
                        http::Version::HTTP_11 => "HTTP/1.1",
                        http::Version::HTTP_2 => "HTTP/2",
                        http::Version::HTTP_3 => "HTTP/3",
                        _ => "-",
                    });
                }
            }
            Operator::ResponseCode => {
                let _ = write!(out, "{}", info.response_code.unwrap_or(0));
            }
            Operator::ResponseCodeDetails => out.push_str(&info.details),
            Operator::ResponseFlags => info.flags.write_to(out),
            Operator::BytesReceived => {
                let _ = write!(out, "{}", info.bytes_received);
            }
            Operator::BytesSent => {
                let _ = write!(out, "{}", info.bytes_sent);
            }
            Operator::Duration => {
                write_millis(info.duration.or_else(|| Some(info.start.elapsed())), out)
            }
            Operator::ResponseDuration => write_millis(info.response_after, out),
            Operator::UpstreamHost => write_addr(info.upstream_host, true, out),
            Operator::UpstreamCluster => {
                if let Some(c) = &info.cluster {
                    out.push_str(c)
                }
            }
            Operator::UpstreamLocalAddress => write_addr(info.upstream_local, true, out),
            Operator::UpstreamTransportFailureReason => {
                if let Some(r) = &info.upstream_failure {
                    out.push_str(r)
                }
            }
            Operator::UpstreamRequestAttemptCount => {
                let _ = write!(out, "{}", info.attempts);
            }
            Operator::DownstreamRemoteAddress { port } => write_addr(Some(info.client), *port, out),
            Operator::DownstreamRemotePort => {
                let _ = write!(out, "{}", info.client.port());
            }
            Operator::DownstreamDirectRemoteAddress { port } => {
                write_addr(Some(info.downstream.remote), *port, out)
            }
            Operator::DownstreamLocalAddress { port } => {
                write_addr(Some(info.downstream.local), *port, out)
            }
            Operator::DownstreamLocalPort => {
                let _ = write!(out, "{}", info.downstream.local.port());
            }
            Operator::RequestedServerName => {
                if let Some(s) = &info.downstream.server_name {
                    out.push_str(s)
                }
            }
            Operator::Tls(side, field) => {
                let session = match side {
                    TlsSide::Downstream => info.downstream.tls.as_deref(),
                    TlsSide::Upstream => info.upstream_tls.as_deref(),
                };
                if let Some(t) = session {
                    // Envoy joins several SANs with commas.
                    let join = |list: &[Box<str>], out: &mut String| {
                        for (i, s) in list.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            out.push_str(s);
                        }
                    };
                    match field {
                        TlsField::PeerUriSan => join(&t.peer_uri_sans, out),
                        TlsField::LocalUriSan => join(&t.local_uri_sans, out),
                        TlsField::PeerSerial => {
                            out.push_str(t.peer_serial.as_deref().unwrap_or(""))
                        }
                        TlsField::Version => out.push_str(t.version),
                        TlsField::Cipher => out.push_str(t.cipher),
                    }
                }
            }
            Operator::RouteName => {
                if let Some(r) = &info.route_name {
                    out.push_str(r)
                }
            }
            Operator::ConnectionId => {
                let _ = write!(out, "{}", info.downstream.id);
            }
            Operator::Hostname => out.push_str(hostname()),
            Operator::ConnectionTerminationDetails => {
                if let Some(d) = &info.termination_details {
                    out.push_str(d)
                }
            }
        }
    }
}

/// Renders a header; returns whether it was present.
fn render_header(info: &StreamInfo, source: HeaderSource, h: &HeaderRef, out: &mut String) -> bool {
    let value = match (source, h) {
        (HeaderSource::Request, HeaderRef::Method) => {
            return info
                .request
                .as_ref()
                .map(|r| out.push_str(r.method.as_str()))
                .is_some()
        }
        (HeaderSource::Request, HeaderRef::Path) => {
            return info
                .request
                .as_ref()
                .map(|r| out.push_str(r.path.as_ref().map_or("", |p| p.as_str())))
                .is_some()
        }
        (HeaderSource::Request, HeaderRef::Authority) => {
            info.request.as_ref().and_then(|r| r.authority.as_ref())
        }
        (HeaderSource::Request, HeaderRef::Scheme) => {
            out.push_str(if info.downstream.tls.is_some() {
                "https"
            } else {
                "http"
            });
            return true;
        }
        (HeaderSource::Request, HeaderRef::Named(n)) => info.request_header(n),
        (HeaderSource::Response, HeaderRef::Named(n)) => info.response_header(n),
        (HeaderSource::Trailer, HeaderRef::Named(n)) => info.response_trailer(n),
        _ => None,
    };
    match value.and_then(|v| v.to_str().ok()) {
        Some(v) => {
            out.push_str(v);
            true
        }
        None => false,
    }
}

fn write_millis(d: Option<Duration>, out: &mut String) {
    if let Some(d) = d {
        let _ = write!(out, "{}", d.as_millis());
    }
}

fn write_addr(a: Option<std::net::SocketAddr>, port: bool, out: &mut String) {
    if let Some(a) = a {
        if port {
            let _ = write!(out, "{a}");
        } else {
            let _ = write!(out, "{}", a.ip());
        }
    }
}

fn hostname() -> &'static str {
    static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "-".into())
    })
}

/// Civil date and time in UTC from a Unix time (Howard Hinnant's days-from-civil, inverted).
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    unix: i64,
}

fn civil(t: std::time::SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        nanos: d.subsec_nanos(),
        unix: secs,
    }
}

/// `2024-05-01T12:00:00.123Z`, Envoy's default `%START_TIME%`.
pub fn write_rfc3339_millis(t: std::time::SystemTime, out: &mut String) {
    let c = civil(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.nanos / 1_000_000
    );
}

/// The strftime subset people use in `%START_TIME(...)%`, plus Envoy's `%3f`/`%6f`/`%9f`.
fn write_strftime(t: std::time::SystemTime, fmt: &str, out: &mut String) {
    let c = civil(t);
    let mut chars = fmt.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{:04}", c.year),
            Some('m') => write!(out, "{:02}", c.month),
            Some('d') => write!(out, "{:02}", c.day),
            Some('H') => write!(out, "{:02}", c.hour),
            Some('M') => write!(out, "{:02}", c.minute),
            Some('S') => write!(out, "{:02}", c.second),
            Some('s') => write!(out, "{}", c.unix),
            Some('z') => write!(out, "+0000"),
            Some('Z') => write!(out, "UTC"),
            Some('F') => write!(out, "{:04}-{:02}-{:02}", c.year, c.month, c.day),
            Some('T') => write!(out, "{:02}:{:02}:{:02}", c.hour, c.minute, c.second),
            Some('%') => write!(out, "%"),
            Some(d @ ('1'..='9')) if chars.peek() == Some(&'f') => {
                chars.next();
                let digits = d.to_digit(10).unwrap_or(9) as usize;
                let frac = format!("{:09}", c.nanos);
                write!(out, "{}", &frac[..digits])
            }
            Some('f') => write!(out, "{:09}", c.nanos),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_info::{Downstream, RequestInfo};
    use std::sync::Arc;
    use std::time::SystemTime;

    fn info() -> StreamInfo {
        let ds = Arc::new(Downstream {
            id: 7,
            remote: "10.0.0.1:5555".parse().expect("addr"),
            local: "127.0.0.1:8080".parse().expect("addr"),
            server_name: None,
            listener: "l".into(),
            tls: None,
        });
        let mut i = StreamInfo::new(ds);
        i.start_time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        i.request = Some(RequestInfo {
            method: http::Method::GET,
            path: Some(http::uri::PathAndQuery::from_static("/a?b=1")),
            authority: Some(http::HeaderValue::from_static("svc:80")),
            version: http::Version::HTTP_11,
            headers: vec![(
                HeaderName::from_static("user-agent"),
                http::HeaderValue::from_static("curl/8"),
            )],
        });
        i.response_code = Some(503);
        i.flags
            .insert(crate::error::ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
        i.duration = Some(Duration::from_millis(12));
        i
    }

    #[test]
    fn renders_envoy_default_style_line() {
        let t = Template::parse(
            r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION% "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%""#,
        )
        .expect("parses");
        assert_eq!(
            t.render_to_string(&info()),
            r#"[2023-11-14T22:13:20.123Z] "GET /a?b=1 HTTP/1.1" 503 UF 12 "curl/8" "-" "svc:80" "-""#
        );
    }

    #[test]
    fn tls_operators() {
        let tls = crate::tls::TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            group: Some("X25519MLKEM768"),
            peer_uri_sans: vec!["spiffe://weft.local/ns/a/sa/b".into()],
            peer_serial: Some("0a1b".into()),
            local_uri_sans: vec!["spiffe://weft.local/ns/a/sa/me".into()],
            ..Default::default()
        };
        let mut i = info();
        i.downstream = Arc::new(Downstream {
            id: 1,
            remote: i.downstream.remote,
            local: i.downstream.local,
            server_name: None,
            listener: "l".into(),
            tls: Some(Arc::new(tls)),
        });
        let t = Template::parse(
            "%DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_LOCAL_URI_SAN% %DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_PEER_SERIAL% [%UPSTREAM_PEER_URI_SAN%] %REQ(:SCHEME)%",
        )
        .expect("parses");
        assert_eq!(
            t.render_to_string(&i),
            "spiffe://weft.local/ns/a/sa/b spiffe://weft.local/ns/a/sa/me TLSv1.3 0a1b [-] https"
        );
    }

    #[test]
    fn percent_escape_truncation_and_addresses() {
        let t =
            Template::parse("100%% %REQ(USER-AGENT):4% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")
                .expect("parses");
        assert_eq!(t.render_to_string(&info()), "100% curl 10.0.0.1");
        assert!(Template::parse("plain").expect("parses").is_static());
    }

    #[test]
    fn numeric_operators_are_numbers_in_json() {
        assert_eq!(
            Template::parse("%RESPONSE_CODE%").expect("p").kind(),
            ValueKind::Number
        );
        assert_eq!(
            Template::parse("code %RESPONSE_CODE%").expect("p").kind(),
            ValueKind::Text
        );
    }

    #[test]
    fn unknown_operator_and_unterminated_are_errors() {
        assert!(Template::parse("%NOPE%").is_err());
        assert!(Template::parse("%REQ(x)").is_err());
        assert!(Template::parse("%PROTOCOL(x)%").is_err());
    }

    #[test]
    fn strftime_subset() {
        let t = Template::parse("%START_TIME(%Y/%m/%d %H:%M:%S.%3f %s)%").expect("parses");
        assert_eq!(
            t.render_to_string(&info()),
            "2023/11/14 22:13:20.123 1700000000"
        );
    }

    #[test]
    fn civil_dates() {
        let mut s = String::new();
        write_rfc3339_millis(UNIX_EPOCH, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        write_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut s);
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
        let _ = SystemTime::now();
    }

    #[test]
    fn captured_header_names() {
        let t = Template::parse("%REQ(X-A?X-B)% %RESP(X-C)% %TRAILER(grpc-status)%").expect("p");
        let mut req = Vec::new();
        t.request_headers(&mut req);
        assert_eq!(
            req,
            vec![
                HeaderName::from_static("x-a"),
                HeaderName::from_static("x-b")
            ]
        );
        let mut resp = Vec::new();
        t.response_headers(&mut resp);
        assert_eq!(
            resp,
            vec![
                HeaderName::from_static("x-c"),
                HeaderName::from_static("grpc-status")
            ]
        );
    }
}
