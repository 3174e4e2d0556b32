//! Bad input over raw sockets: every case gets a 4xx (or a closed connection), nothing
//! reaches the upstream that should not, and the proxy keeps serving afterwards.

mod common;

use common::{cluster, http_bootstrap, route_all};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use weft_test::{runtime, TestProxy, Upstream};

/// Sends raw bytes and returns what came back before the proxy closed (or 2 s passed).
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status(reply: &str) -> u16 {
    reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn setup(hcm_extra: &str) -> (tokio::runtime::Runtime, Upstream, TestProxy) {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let yaml = http_bootstrap(
        &route_all("up", ""),
        hcm_extra,
        &[cluster("up", &[up.addr], "")],
    );
    let proxy = TestProxy::start(&yaml, 1);
    (rt, up, proxy)
}

fn still_serves(addr: SocketAddr) {
    let reply = raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&reply), 200, "the proxy still serves: {reply}");
}

#[test]
fn request_smuggling_shapes_are_refused() {
    let (_rt, up, proxy) = setup("");
    let addr = proxy.addr("http");
    let cases: &[(&str, &[u8])] = &[
        ("content-length and transfer-encoding", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("two content-lengths", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("same content-length twice", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ("content-length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("bad transfer-encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n"),
    ];
    let before = up.request_count();
    for (name, bytes) in cases {
        let reply = raw(addr, bytes);
        assert_eq!(status(&reply), 400, "{name}: {reply:?}");
        assert!(
            reply.to_ascii_lowercase().contains("connection: close")
                || !reply.contains("keep-alive"),
            "{name}"
        );
    }
    assert_eq!(up.request_count(), before, "nothing reached the upstream");
    still_serves(addr);
}

#[test]
fn malformed_requests_get_400_and_close() {
    let (_rt, _up, proxy) = setup("");
    let addr = proxy.addr("http");
    let cases: &[(&str, &[u8])] = &[
        ("not http", b"HELLO THERE\r\n\r\n"),
        ("bad version", b"GET / HTTP/9.9\r\nHost: a\r\n\r\n"),
        ("nul in header", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n"),
        ("bad method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("missing host", b"GET / HTTP/1.1\r\n\r\n"),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("http/1.0 refused", b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let reply = raw(addr, bytes);
        let code = status(&reply);
        assert!(
            (400..500).contains(&code) || reply.is_empty(),
            "{name}: {reply:?}"
        );
        if *name == "http/1.0 refused" {
            assert_eq!(
                code, 426,
                "Envoy answers HTTP/1.0 with 426 unless accept_http_10"
            );
        }
    }
    still_serves(addr);
}

#[test]
fn oversized_headers_get_431() {
    let (_rt, _up, proxy) = setup("          max_request_headers_kb: 8\n");
    let addr = proxy.addr("http");
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 16 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status(&raw(addr, &big)), 431);
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..150 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(status(&raw(addr, &many)), 431, "more than 100 headers");
    still_serves(addr);
}

#[test]
fn slow_headers_are_cut_off() {
    let (_rt, _up, proxy) = setup("          request_headers_timeout: 0.3s\n");
    let addr = proxy.addr("http");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .expect("partial head");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed after the header timeout"
    );
    still_serves(addr);
}

#[test]
fn random_garbage_never_crashes() {
    let (_rt, _up, proxy) = setup("");
    let addr = proxy.addr("http");
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let prefixes: [&[u8]; 4] = [
        b"",
        b"GET / HTTP/1.1\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for i in 0..200 {
        let len = (next() % 512) as usize;
        let mut bytes = prefixes[i % prefixes.len()].to_vec();
        bytes.extend((0..len).map(|_| next() as u8));
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    still_serves(addr);
}
