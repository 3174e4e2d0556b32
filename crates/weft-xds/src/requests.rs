//! The requests of one ADS stream, decoded from its HTTP/2 body: gRPC messages (a
//! one-byte compression flag, a four-byte length, the message) gathered in a buffer
//! that is let go whenever it is drained. tonic's `Streaming` keeps its buffer as large
//! as the largest request it ever received: a state-of-the-world client subscribed to a
//! thousand endpoint names sends ~50 KiB requests, and the buffer stayed at 64 KiB or
//! more per idle stream.

use bytes::{Buf, BytesMut};
use http_body::Body;
use std::marker::PhantomData;
use std::pin::Pin;
use tonic::Status;

/// Length of a gRPC message's header.
const HEADER: usize = 5;

/// A stream's requests.
pub struct Requests<B, R> {
    body: B,
    buf: BytesMut,
    max: usize,
    ended: bool,
    _message: PhantomData<fn() -> R>,
}

impl<B, R> Requests<B, R>
where
    B: Body + Unpin,
    B::Error: std::fmt::Display,
    R: prost::Message + Default,
{
    /// Requests read from `body`, each at most `max` bytes.
    pub fn new(body: B, max: usize) -> Self {
        Requests {
            body,
            buf: BytesMut::new(),
            max,
            ended: false,
            _message: PhantomData,
        }
    }

    /// The next request; `None` once the client closed its side. Cancel-safe: what was
    /// read stays buffered for the next call.
    pub async fn next(&mut self) -> Option<Result<R, Status>> {
        loop {
            if let Some(message) = self.take() {
                return Some(message);
            }
            if self.ended {
                return None;
            }
            match std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let mut data = data;
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            self.buf.extend_from_slice(chunk);
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    self.ended = true;
                    return Some(Err(Status::cancelled(format!("reading the stream: {e}"))));
                }
                None => {
                    self.ended = true;
                    if !self.buf.is_empty() {
                        self.buf = BytesMut::new();
                        return Some(Err(Status::internal("the stream ended inside a message")));
                    }
                    return None;
                }
            }
        }
    }

    /// A whole message from the buffer, if one is there.
    fn take(&mut self) -> Option<Result<R, Status>> {
        if self.buf.len() < HEADER {
            return None;
        }
        if self.buf[0] != 0 {
            self.ended = true;
            return Some(Err(Status::unimplemented(
                "compressed requests are not supported",
            )));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            self.ended = true;
            return Some(Err(Status::resource_exhausted(format!(
                "a request of {len} bytes is over the limit of {}",
                self.max
            ))));
        }
        if self.buf.len() < HEADER + len {
            self.buf.reserve(HEADER + len - self.buf.len());
            return None;
        }
        let message = self.buf.split_to(HEADER + len);
        if self.buf.is_empty() {
            // Drained: let the allocation go with the message.
            self.buf = BytesMut::new();
        }
        Some(
            R::decode(&message[HEADER..])
                .map_err(|e| Status::internal(format!("cannot decode the request: {e}"))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use bytes::Bytes;
    use http_body::Frame;
    use prost::Message;
    use std::collections::VecDeque;
    use std::task::{Context, Poll};

    /// A body yielding the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn framed(m: &DiscoveryRequest) -> Vec<u8> {
        let body = m.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn request(i: usize) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: format!("t{i}"),
            resource_names: (0..i * 100).map(|n| format!("name-{n}")).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_split_and_joined_across_frames() {
        // Three requests cut into 7-byte pieces, and two in one frame.
        let mut bytes = Vec::new();
        for i in 0..3 {
            bytes.extend(framed(&request(i)));
        }
        let mut chunks: VecDeque<Bytes> = bytes.chunks(7).map(Bytes::copy_from_slice).collect();
        let mut two = framed(&request(3));
        two.extend(framed(&request(4)));
        chunks.push_back(two.into());
        let mut requests = Requests::<_, DiscoveryRequest>::new(Chunks(chunks), 1 << 20);
        for i in 0..5 {
            let got = requests.next().await.expect("a request").expect("decodes");
            assert_eq!(got, request(i));
        }
        assert!(requests.next().await.is_none());
        assert_eq!(requests.buf.capacity(), 0, "the buffer was let go");
    }

    #[tokio::test]
    async fn oversized_truncated_and_compressed_requests_are_errors() {
        let big = framed(&request(5));
        let mut requests =
            Requests::<_, DiscoveryRequest>::new(Chunks([Bytes::from(big)].into()), 100);
        let err = requests
            .next()
            .await
            .expect("an answer")
            .expect_err("too big");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);

        let cut = framed(&request(1))[..20].to_vec();
        let mut requests =
            Requests::<_, DiscoveryRequest>::new(Chunks([Bytes::from(cut)].into()), 1 << 20);
        let err = requests.next().await.expect("an answer").expect_err("cut");
        assert_eq!(err.code(), tonic::Code::Internal);

        let mut zipped = framed(&request(1));
        zipped[0] = 1;
        let mut requests =
            Requests::<_, DiscoveryRequest>::new(Chunks([Bytes::from(zipped)].into()), 1 << 20);
        let err = requests
            .next()
            .await
            .expect("an answer")
            .expect_err("compressed");
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }
}
