//! Request-smuggling guard for HTTP/1.x. hyper, as RFC 9112 allows, reads a request
//! with both `Content-Length` and `Transfer-Encoding` by the latter and folds duplicate
//! equal `Content-Length`s into one, so the handler cannot see either. Envoy rejects
//! both, and so does Weft: this wrapper watches the bytes hyper reads, follows the
//! message framing (heads, content-length bodies, chunks) and records, per request, a
//! verdict the handler reads before doing anything else.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest head inspected; longer ones are hyper's to refuse (431).
const MAX_HEAD: usize = 128 * 1024;

/// What the guard found in a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing wrong.
    Clean,
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// More than one `Content-Length`.
    DuplicateLength,
}

/// Verdicts of one connection's requests, in order.
#[derive(Debug, Default)]
pub struct Verdicts {
    queue: Mutex<VecDeque<Verdict>>,
}

impl Verdicts {
    /// The verdict on the next request the handler sees.
    pub fn next(&self) -> Verdict {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or(Verdict::Clean)
    }

    fn push(&self, v: Verdict) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(v);
    }
}

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers(Vec<u8>),
    /// Tunnel, upgrade or unparseable: nothing more to inspect.
    Off,
}

pin_project_lite::pin_project! {
    /// Wraps a downstream HTTP/1 socket and judges each request head.
    #[derive(Debug)]
    pub struct Guarded<T> {
        #[pin]
        inner: T,
        state: State,
        verdicts: Arc<Verdicts>,
    }
}

impl<T> Guarded<T> {
    /// Wraps `inner`; verdicts go to `verdicts`.
    pub fn new(inner: T, verdicts: Arc<Verdicts>) -> Self {
        Guarded {
            inner,
            state: State::Head(Vec::new()),
            verdicts,
        }
    }
}

/// Feeds bytes through the framing state machine.
fn feed(state: &mut State, verdicts: &Verdicts, mut data: &[u8]) {
    while !data.is_empty() {
        match state {
            State::Off => return,
            State::Head(buf) => {
                // Leading CRLFs between messages are allowed (RFC 9112 §2.2).
                if buf.is_empty() {
                    let skip = data
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    data = &data[skip..];
                    if data.is_empty() {
                        return;
                    }
                }
                let start = buf.len().saturating_sub(3);
                buf.extend_from_slice(data);
                let Some(end) = find(&buf[start..], b"\r\n\r\n").map(|i| start + i + 4) else {
                    if buf.len() > MAX_HEAD {
                        *state = State::Off;
                    }
                    return;
                };
                let rest = buf.split_off(end);
                let head = std::mem::take(buf);
                *state = judge(&head, verdicts);
                data = &[];
                feed(state, verdicts, &rest);
            }
            State::Body(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                data = &data[n as usize..];
                if *left == 0 {
                    *state = State::Head(Vec::new());
                }
            }
            State::ChunkSize(line) => {
                let Some(nl) = data.iter().position(|b| *b == b'\n') else {
                    line.extend_from_slice(data);
                    if line.len() > 1024 {
                        *state = State::Off;
                    }
                    return;
                };
                line.extend_from_slice(&data[..nl]);
                data = &data[nl + 1..];
                let text = String::from_utf8_lossy(line);
                let hex = text.split(';').next().unwrap_or("").trim();
                *state = match u64::from_str_radix(hex, 16) {
                    Ok(0) => State::Trailers(Vec::new()),
                    Ok(n) => State::ChunkData(n),
                    Err(_) => State::Off,
                };
            }
            State::ChunkData(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                data = &data[n as usize..];
                if *left == 0 {
                    *state = State::ChunkDataEnd(2);
                }
            }
            State::ChunkDataEnd(left) => {
                let n = usize::from(*left).min(data.len());
                data = &data[n..];
                *left -= n as u8;
                if *left == 0 {
                    *state = State::ChunkSize(Vec::new());
                }
            }
            State::Trailers(buf) => {
                buf.extend_from_slice(data);
                data = &[];
                // The trailer section ends with an empty line.
                let done = if buf.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    find(buf, b"\r\n\r\n").map(|i| i + 4)
                };
                match done {
                    Some(end) => {
                        let rest = buf.split_off(end);
                        *state = State::Head(Vec::new());
                        feed(state, verdicts, &rest);
                    }
                    None if buf.len() > MAX_HEAD => *state = State::Off,
                    None => {}
                }
            }
        }
    }
}

/// Records the verdict on one head and returns the state for what follows it.
fn judge(head: &[u8], verdicts: &Verdicts) -> State {
    // Most heads carry no body and no upgrade: a scan of the line starts settles them
    // without a full parse.
    if !head.starts_with(b"CONNECT") && !has_framing_or_upgrade(head) {
        verdicts.push(Verdict::Clean);
        return State::Head(Vec::new());
    }
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        // hyper refuses it too; it will not reach the handler.
        return State::Off;
    }
    let mut lengths = Vec::new();
    let mut chunked = false;
    let mut te = false;
    let mut upgrade = req.method == Some("CONNECT");
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let verdict = if te && !lengths.is_empty() {
        Verdict::LengthAndChunked
    } else if lengths.len() > 1 {
        Verdict::DuplicateLength
    } else {
        Verdict::Clean
    };
    verdicts.push(verdict);
    if upgrade || verdict != Verdict::Clean {
        // A tunnel follows, or the connection is closed after the refusal.
        return State::Off;
    }
    if te {
        return if chunked {
            State::ChunkSize(Vec::new())
        } else {
            State::Off
        };
    }
    match lengths
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok())
    {
        Some(0) | None => State::Head(Vec::new()),
        Some(n) => State::Body(n),
    }
}

/// Whether any header line starts with `content-length`, `transfer-encoding` or
/// `upgrade` (case-insensitively).
fn has_framing_or_upgrade(head: &[u8]) -> bool {
    head.split(|b| *b == b'\n').skip(1).any(|line| {
        let starts =
            |name: &[u8]| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        match line.first().map(u8::to_ascii_lowercase) {
            Some(b'c') => starts(b"content-length"),
            Some(b't') => starts(b"transfer-encoding"),
            Some(b'u') => starts(b"upgrade"),
            _ => false,
        }
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<T: AsyncRead> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if res.is_ready() && !matches!(this.state, State::Off) {
            feed(this.state, this.verdicts, &buf.filled()[before..]);
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<Verdict> {
        let v = Verdicts::default();
        let mut state = State::Head(Vec::new());
        for c in chunks {
            feed(&mut state, &v, c);
        }
        let mut out = Vec::new();
        while let Some(x) = v.queue.lock().expect("lock").pop_front() {
            out.push(x);
        }
        out
    }

    #[test]
    fn follows_pipelined_framing() {
        let stream = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\nX-T: 1\r\n\r\n\
POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        // Fed byte by byte and whole, the verdicts are the same.
        let whole = run(&[stream]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
        assert_eq!(
            whole,
            vec![
                Verdict::Clean,
                Verdict::Clean,
                Verdict::Clean,
                Verdict::LengthAndChunked
            ]
        );
    }

    #[test]
    fn body_bytes_are_not_heads() {
        let stream = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n12345";
        assert_eq!(run(&[stream]), vec![Verdict::Clean]);
    }

    #[test]
    fn fast_path_agrees_with_the_parser() {
        assert!(!has_framing_or_upgrade(
            b"GET / HTTP/1.1\r\nHost: a\r\nCookie: x\r\n\r\n"
        ));
        assert!(has_framing_or_upgrade(
            b"POST / HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 1\r\n\r\n"
        ));
        assert!(has_framing_or_upgrade(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert_eq!(
            run(&[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"]),
            vec![Verdict::Clean, Verdict::Clean]
        );
    }

    #[test]
    fn duplicate_lengths() {
        assert_eq!(
            run(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"]),
            vec![Verdict::DuplicateLength]
        );
    }
}
