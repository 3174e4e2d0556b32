//! Listener filters: peeking at a new connection's first bytes (without consuming them)
//! to learn whether it is TLS (with its SNI and ALPN), HTTP/1.x or HTTP/2 prior
//! knowledge, so that a filter chain can be chosen.

use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What the first bytes told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detected {
    /// `tls` or `raw_buffer`.
    pub transport: &'static str,
    /// TLS server name.
    pub server_name: Option<String>,
    /// TLS ALPN offers, or the HTTP version seen on cleartext (`http/1.1`, `h2c`).
    pub application_protocols: Vec<String>,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_PEEK: usize = 16 * 1024 + 5;

/// Peeks until the requested inspections can decide, the client stops sending, or
/// `timeout` passes (then what is known so far is returned).
pub async fn inspect(
    stream: &TcpStream,
    tls: bool,
    http: bool,
    timeout: Duration,
) -> std::io::Result<Detected> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_PEEK];
    let mut seen = 0;
    let mut pause = Duration::from_micros(200);
    loop {
        let n = match tokio::time::timeout_at(deadline.into(), stream.peek(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(decide(&buf[..seen], tls, http).unwrap_or_else(raw)),
        };
        if n == 0 {
            return Ok(decide(&buf[..seen], tls, http).unwrap_or_else(raw));
        }
        if let Some(d) = decide(&buf[..n], tls, http) {
            return Ok(d);
        }
        if n == buf.len() || Instant::now() >= deadline {
            return Ok(raw());
        }
        if n == seen {
            // Peeking does not wait for more bytes than are already there.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        seen = n;
    }
}

fn raw() -> Detected {
    Detected {
        transport: "raw_buffer",
        ..Detected::default()
    }
}

/// Decides from `data`, or `None` when more bytes are needed.
fn decide(data: &[u8], tls: bool, http: bool) -> Option<Detected> {
    if data.is_empty() {
        return None;
    }
    if tls && data[0] == 0x16 {
        return match parse_client_hello(data) {
            Hello::Complete(server_name, alpn) => Some(Detected {
                transport: "tls",
                server_name,
                application_protocols: alpn,
            }),
            Hello::Partial => None,
            Hello::NotTls => Some(raw()),
        };
    }
    if !http {
        return Some(raw());
    }
    if data.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(data) {
        return None;
    }
    if data.starts_with(H2_PREFACE) {
        return Some(Detected {
            transport: "raw_buffer",
            server_name: None,
            application_protocols: vec!["h2c".into()],
        });
    }
    match http1_version(data) {
        Some(Some(v)) => Some(Detected {
            transport: "raw_buffer",
            server_name: None,
            application_protocols: vec![v.into()],
        }),
        Some(None) => Some(raw()),
        None => None,
    }
}

/// `Some(Some(version))` for an HTTP/1.x request line, `Some(None)` for not HTTP, `None`
/// for "not yet known".
fn http1_version(data: &[u8]) -> Option<Option<&'static str>> {
    let line_end = data.windows(2).position(|w| w == b"\r\n");
    let line = match line_end {
        Some(i) => &data[..i],
        None if data.len() > 8 * 1024 => return Some(None),
        None => {
            let method_ok = data
                .iter()
                .take_while(|b| **b != b' ')
                .all(|b| b.is_ascii_uppercase());
            return if method_ok { None } else { Some(None) };
        }
    };
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(_target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Some(None);
    };
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return Some(None);
    }
    Some(match version {
        b"HTTP/1.1" => Some("http/1.1"),
        b"HTTP/1.0" => Some("http/1.0"),
        _ => None,
    })
}

enum Hello {
    Complete(Option<String>, Vec<String>),
    Partial,
    NotTls,
}

/// Reads SNI and ALPN out of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301).
fn parse_client_hello(data: &[u8]) -> Hello {
    if data.len() < 5 {
        return Hello::Partial;
    }
    if data[0] != 0x16 || data[1] != 0x03 {
        return Hello::NotTls;
    }
    let record_len = usize::from(u16::from_be_bytes([data[3], data[4]]));
    if data.len() < 5 + record_len {
        return Hello::Partial;
    }
    let mut r = Reader {
        data: &data[5..5 + record_len],
    };
    let parsed = (|| {
        if r.u8()? != 0x01 {
            return None;
        }
        let body_len = r.u24()?;
        let mut body = Reader {
            data: r.take(body_len)?,
        };
        body.take(2 + 32)?;
        let sid = usize::from(body.u8()?);
        body.take(sid)?;
        let suites = usize::from(body.u16()?);
        body.take(suites)?;
        let comp = usize::from(body.u8()?);
        body.take(comp)?;
        let mut sni = None;
        let mut alpn = Vec::new();
        if body.data.is_empty() {
            return Some((sni, alpn));
        }
        let ext_len = usize::from(body.u16()?);
        let mut exts = Reader {
            data: body.take(ext_len)?,
        };
        while !exts.data.is_empty() {
            let kind = exts.u16()?;
            let len = usize::from(exts.u16()?);
            let mut ext = Reader {
                data: exts.take(len)?,
            };
            match kind {
                0x0000 => {
                    let list = usize::from(ext.u16()?);
                    let mut names = Reader {
                        data: ext.take(list)?,
                    };
                    while !names.data.is_empty() {
                        let name_type = names.u8()?;
                        let n = usize::from(names.u16()?);
                        let name = names.take(n)?;
                        if name_type == 0 {
                            sni = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
                        }
                    }
                }
                0x0010 => {
                    let list = usize::from(ext.u16()?);
                    let mut protos = Reader {
                        data: ext.take(list)?,
                    };
                    while !protos.data.is_empty() {
                        let n = usize::from(protos.u8()?);
                        alpn.push(String::from_utf8_lossy(protos.take(n)?).into_owned());
                    }
                }
                _ => {}
            }
        }
        Some((sni, alpn))
    })();
    match parsed {
        Some((sni, alpn)) => Hello::Complete(sni, alpn),
        None => Hello::NotTls,
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with SNI `example.com` and ALPN `h2`, `http/1.1`.
    fn client_hello() -> Vec<u8> {
        let mut ext = Vec::new();
        let name = b"Example.com";
        let mut sni = Vec::new();
        sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni);
        let mut alpn = Vec::new();
        for p in [&b"h2"[..], b"http/1.1"] {
            alpn.push(p.len() as u8);
            alpn.extend_from_slice(p);
        }
        ext.extend_from_slice(&0x10u16.to_be_bytes());
        ext.extend_from_slice(&((alpn.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        ext.extend_from_slice(&alpn);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&[0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_sni_and_alpn() {
        let hello = client_hello();
        let d = decide(&hello, true, true).expect("decided");
        assert_eq!(d.transport, "tls");
        assert_eq!(d.server_name.as_deref(), Some("example.com"));
        assert_eq!(d.application_protocols, vec!["h2", "http/1.1"]);
        assert_eq!(
            decide(&hello[..20], true, true),
            None,
            "partial needs more bytes"
        );
    }

    #[test]
    fn http_versions() {
        assert_eq!(
            decide(b"GET / HTTP/1.1\r\nHost: a\r\n", true, true)
                .expect("d")
                .application_protocols,
            vec!["http/1.1"]
        );
        assert_eq!(
            decide(H2_PREFACE, true, true)
                .expect("d")
                .application_protocols,
            vec!["h2c"]
        );
        assert_eq!(decide(b"PRI * HT", false, true), None);
        assert_eq!(decide(b"GET /x", false, true), None);
        assert_eq!(decide(b"\x00\x01binary", true, true), Some(raw()));
        assert_eq!(decide(b"SSH-2.0-OpenSSH\r\n", false, true), Some(raw()));
    }

    #[test]
    fn garbage_tls_is_not_a_crash() {
        let mut bad = client_hello();
        bad[9] = 0xff; // body length far too large
        let _ = decide(&bad, true, true);
        for n in 0..bad.len() {
            let _ = decide(&bad[..n], true, true);
        }
    }
}
