//! Access logs: a line per stream, in Envoy's text format or as JSON (the default, with
//! Envoy's default fields), buffered in memory and written by a flusher thread so that
//! no request waits on a disk.

use crate::format::{Template, ValueKind};
use crate::stream_info::StreamInfo;
use http::HeaderName;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How often buffered lines reach the file.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Buffered bytes that wake the flusher before its interval.
const FLUSH_THRESHOLD: usize = 64 * 1024;
/// Buffered bytes past which lines are dropped rather than grow memory without bound.
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

/// The fields of the default JSON line: Envoy's default format, as Istio names them.
pub const DEFAULT_JSON_FIELDS: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("downstream_peer_uri_san", "%DOWNSTREAM_PEER_URI_SAN%"),
    ("upstream_peer_uri_san", "%UPSTREAM_PEER_URI_SAN%"),
];

/// How a line is laid out.
#[derive(Debug)]
pub enum LogFormat {
    /// A text template; a newline is added when it has none.
    Text(Template),
    /// A JSON object, one key per template.
    Json {
        /// Keys (already JSON-escaped) and their templates.
        fields: Vec<(String, Template)>,
        /// Leave out keys whose value is missing.
        omit_empty: bool,
    },
}

impl LogFormat {
    /// Envoy's default fields as JSON.
    pub fn default_json() -> LogFormat {
        LogFormat::Json {
            fields: DEFAULT_JSON_FIELDS
                .iter()
                .map(|(k, v)| {
                    (
                        json_string(k),
                        Template::parse(v).expect("default format parses"),
                    )
                })
                .collect(),
            omit_empty: false,
        }
    }

    /// Headers the format reads, so the proxy captures them.
    pub fn referenced_headers(
        &self,
        request: &mut Vec<HeaderName>,
        response: &mut Vec<HeaderName>,
    ) {
        let mut each = |t: &Template| {
            t.request_headers(request);
            t.response_headers(response);
        };
        match self {
            LogFormat::Text(t) => each(t),
            LogFormat::Json { fields, .. } => fields.iter().for_each(|(_, t)| each(t)),
        }
    }

    /// Renders one line, newline included.
    pub fn render(&self, info: &StreamInfo, out: &mut String) {
        match self {
            LogFormat::Text(t) => {
                t.render(info, out);
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            LogFormat::Json { fields, omit_empty } => {
                out.push('{');
                let mut first = true;
                let mut value = String::new();
                for (key, template) in fields {
                    value.clear();
                    let missing = !template.render_value(info, &mut value);
                    if missing && *omit_empty {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(key);
                    out.push(':');
                    if missing {
                        out.push_str("null");
                    } else if template.kind() == ValueKind::Number {
                        out.push_str(&value);
                    } else {
                        push_json_string(&value, out);
                    }
                }
                out.push_str("}\n");
            }
        }
    }
}

/// One configured access log: a format and where its lines go.
#[derive(Debug)]
pub struct AccessLog {
    format: LogFormat,
    sink: Arc<Sink>,
}

impl AccessLog {
    /// An access log writing `format` lines to `target`.
    pub fn new(format: LogFormat, target: Target) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            format,
            sink: Sink::shared(target)?,
        })
    }

    /// The format, for the headers it needs.
    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// Writes the line of one finished stream.
    pub fn log(&self, info: &StreamInfo) {
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.format.render(info, &mut line);
            self.sink.append(line.as_bytes());
        });
    }
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A file, appended to (created if missing).
    File(PathBuf),
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A buffered destination shared by every log that writes to it.
struct Sink {
    buffer: Mutex<Vec<u8>>,
    wake: Condvar,
    writer: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

fn sinks() -> std::sync::MutexGuard<'static, HashMap<Target, Weak<Sink>>> {
    static SINKS: OnceLock<Mutex<HashMap<Target, Weak<Sink>>>> = OnceLock::new();
    SINKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Writes every buffered line now; called before the process exits.
pub fn flush_all() {
    let live: Vec<Arc<Sink>> = sinks().values().filter_map(Weak::upgrade).collect();
    for sink in live {
        let rest = std::mem::take(&mut *sink.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        sink.write(&rest);
    }
}

impl Sink {
    fn shared(target: Target) -> std::io::Result<Arc<Sink>> {
        let mut sinks = sinks();
        if let Some(sink) = sinks.get(&target).and_then(Weak::upgrade) {
            return Ok(sink);
        }
        let writer: Box<dyn Write + Send> = match &target {
            Target::File(path) => Box::new(open_append(path)?),
            Target::Stdout => Box::new(std::io::stdout()),
            Target::Stderr => Box::new(std::io::stderr()),
        };
        let sink = Arc::new(Sink {
            buffer: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            writer: Mutex::new(writer),
        });
        let weak = Arc::downgrade(&sink);
        std::thread::Builder::new()
            .name("weft-access-log".into())
            .spawn(move || flush_loop(weak))?;
        sinks.insert(target, Arc::downgrade(&sink));
        Ok(sink)
    }

    fn append(&self, line: &[u8]) {
        let mut buf = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() + line.len() > MAX_BUFFERED {
            return;
        }
        buf.extend_from_slice(line);
        if buf.len() >= FLUSH_THRESHOLD {
            self.wake.notify_one();
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn flush_loop(sink: Weak<Sink>) {
    let mut pending = Vec::new();
    loop {
        let Some(s) = sink.upgrade() else { return };
        {
            let guard = s.buffer.lock().unwrap_or_else(|e| e.into_inner());
            let (mut guard, _) = s
                .wake
                .wait_timeout_while(guard, FLUSH_INTERVAL, |b| b.len() < FLUSH_THRESHOLD)
                .unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *guard, &mut pending);
        }
        s.write(&pending);
        pending.clear();
    }
}

impl Sink {
    fn write(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // A full disk must not stop the proxy: the lines are lost, the traffic is not.
        let _ = w.write_all(bytes);
        let _ = w.flush();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // The last owner writes what is left, so no line is lost at shutdown.
        let rest = std::mem::take(self.buffer.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.write(&rest);
    }
}

/// A JSON string literal for `s`.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(s, &mut out);
    out
}

fn push_json_string(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_info::Downstream;

    fn info() -> StreamInfo {
        let ds = Arc::new(Downstream {
            id: 1,
            remote: "127.0.0.1:1000".parse().expect("addr"),
            local: "127.0.0.1:2000".parse().expect("addr"),
            server_name: None,
            listener: "l".into(),
            tls: None,
        });
        let mut i = StreamInfo::new(ds);
        i.response_code = Some(200);
        i
    }

    #[test]
    fn default_json_is_valid_json_with_envoy_fields() {
        let mut line = String::new();
        LogFormat::default_json().render(&info(), &mut line);
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["response_code"], 200);
        assert_eq!(
            v["response_flags"], "-",
            "no flag is a value, not a missing one"
        );
        assert!(v["method"].is_null());
        for (k, _) in DEFAULT_JSON_FIELDS {
            assert!(v.get(k).is_some(), "missing {k}");
        }
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn file_sink_writes_lines() {
        let dir = std::env::temp_dir().join(format!("weft-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let log = AccessLog::new(
            LogFormat::Text(Template::parse("%RESPONSE_CODE%").expect("p")),
            Target::File(path.clone()),
        )
        .expect("opens");
        log.log(&info());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text == "200\n" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not flushed: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
