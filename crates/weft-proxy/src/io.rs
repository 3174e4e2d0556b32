//! Byte-counting sockets and the bidirectional copy used by TCP proxying and tunnels
//! (WebSocket, CONNECT): half-close passes through, and the pair is closed after an
//! idle timeout.

use prometheus_client::metrics::counter::Counter;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a counting socket adds its bytes.
#[derive(Clone, Debug, Default)]
pub struct ByteCounters {
    /// Bytes read.
    pub rx: Option<Counter>,
    /// Bytes written.
    pub tx: Option<Counter>,
}

pin_project_lite::pin_project! {
    /// A socket that counts the bytes it reads and writes.
    #[derive(Debug)]
    pub struct CountingIo<T> {
        #[pin]
        inner: T,
        counters: ByteCounters,
    }
}

impl<T> CountingIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, counters: ByteCounters) -> Self {
        CountingIo { inner, counters }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead> AsyncRead for CountingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(c)) = (&res, &this.counters.rx) {
            c.inc_by((buf.filled().len() - before) as u64);
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for CountingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, data);
        if let (Poll::Ready(Ok(n)), Some(c)) = (&res, &this.counters.tx) {
            c.inc_by(*n as u64);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(c)) = (&res, &this.counters.tx) {
            c.inc_by(*n as u64);
        }
        res
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

/// Bytes moved by [`copy_bidirectional`], and why it stopped.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyOutcome {
    /// Bytes from the first side to the second.
    pub a_to_b: u64,
    /// Bytes from the second side to the first.
    pub b_to_a: u64,
    /// Stopped because nothing moved for the idle timeout.
    pub idle_timeout: bool,
    /// Stopped on an I/O error.
    pub error: bool,
}

/// Copies both ways until both sides have finished sending (a side's EOF becomes a
/// write shutdown on the other: half-close), an error, or `idle` passes with no bytes
/// moving either way.
pub async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B, idle: Option<Duration>) -> CopyOutcome
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let activity = Activity::new();
    let mut a = Tracked {
        inner: a,
        activity: &activity,
        read_count: &activity.a_to_b,
    };
    let mut b = Tracked {
        inner: b,
        activity: &activity,
        read_count: &activity.b_to_a,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    let mut outcome = CopyOutcome::default();
    match idle {
        None => outcome.error = copy.await.is_err(),
        Some(idle) => {
            tokio::pin!(copy);
            loop {
                let deadline = activity.last() + idle;
                tokio::select! {
                    r = &mut copy => { outcome.error = r.is_err(); break; }
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        if activity.last() + idle <= Instant::now() {
                            outcome.idle_timeout = true;
                            break;
                        }
                    }
                }
            }
        }
    }
    outcome.a_to_b = activity.a_to_b.load(Ordering::Relaxed);
    outcome.b_to_a = activity.b_to_a.load(Ordering::Relaxed);
    outcome
}

/// Last time any byte moved, shared by both directions.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    a_to_b: AtomicU64,
    b_to_a: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            a_to_b: AtomicU64::new(0),
            b_to_a: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

struct Tracked<'a, T: ?Sized> {
    inner: &'a mut T,
    activity: &'a Activity,
    read_count: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin + ?Sized> AsyncRead for Tracked<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read_count.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin + ?Sized> AsyncWrite for Tracked<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut *self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &res {
            if *n > 0 {
                self.activity.touch();
            }
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn half_close_passes_through() {
        let (mut client, mut proxy_a) = tokio::io::duplex(1024);
        let (mut proxy_b, mut server) = tokio::io::duplex(1024);
        let copy =
            tokio::spawn(async move { copy_bidirectional(&mut proxy_a, &mut proxy_b, None).await });
        client.write_all(b"request").await.expect("write");
        client.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.expect("server sees EOF");
        assert_eq!(got, b"request");
        // The other direction still works after the client's half-close.
        server.write_all(b"response").await.expect("write back");
        server.shutdown().await.expect("close");
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"response");
        let outcome = copy.await.expect("join");
        assert_eq!((outcome.a_to_b, outcome.b_to_a), (7, 8));
    }

    #[tokio::test]
    async fn idle_timeout_closes() {
        let (_client, mut proxy_a) = tokio::io::duplex(64);
        let (mut proxy_b, _server) = tokio::io::duplex(64);
        let outcome =
            copy_bidirectional(&mut proxy_a, &mut proxy_b, Some(Duration::from_millis(50))).await;
        assert!(outcome.idle_timeout);
    }
}
