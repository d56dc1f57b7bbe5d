//! The cheap generator: every request is built, signed and encoded to its HTTP/1.1
//! bytes before the clock starts (as `wrk` with a file of signed events), and each
//! connection is a bare TCP stream that writes those bytes and reads the answer's
//! status line, headers and `Content-Length` body. No HTTP client, no JSON, no HMAC on
//! the clock: what it costs per event is a write, a read and a histogram entry, so the
//! figures measure the server rather than the generator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::Stats;

/// One POST with its headers and body, ready to write.
pub fn encode_post(host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(format!("POST {path} HTTP/1.1\r\nhost: {host}\r\n").as_bytes());
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// The `host:port` of a base URL such as `http://127.0.0.1:1234`.
pub fn authority(base: &str) -> &str {
    base.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
}

/// Reads one response; returns whether its status was 2xx. `buf` keeps what was read
/// past it (nothing, with one request in flight per connection).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            let ok = head.starts_with(b"HTTP/1.1 2");
            let len = content_length(head).unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(ok);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

/// Sends the prepared requests over `connections` keep-alive connections, closed loop,
/// for `duration` or until a connection has sent all of its share. `requests[i]` goes
/// on connection `i % connections`, in order.
pub async fn run(
    authority: &str,
    connections: usize,
    duration: Duration,
    requests: Arc<Vec<Vec<u8>>>,
) -> (Stats, bool) {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|task| {
            let requests = requests.clone();
            let authority = authority.to_owned();
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let (mut ok, mut errors, mut ran_out) = (0u64, 0u64, false);
                let mut stream = match TcpStream::connect(&authority).await {
                    Ok(s) => s,
                    Err(_) => return (hist, 0, 1, false),
                };
                let _ = stream.set_nodelay(true);
                let mut buf = Vec::with_capacity(4096);
                let mut i = task;
                while Instant::now() < deadline {
                    let Some(req) = requests.get(i) else {
                        ran_out = true;
                        break;
                    };
                    i += connections;
                    let t = Instant::now();
                    let answered = match stream.write_all(req).await {
                        Ok(()) => read_response(&mut stream, &mut buf).await,
                        Err(e) => Err(e),
                    };
                    match answered {
                        Ok(true) => {
                            ok += 1;
                            let _ = hist.record(t.elapsed().as_micros() as u64);
                        }
                        Ok(false) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            buf.clear();
                            match TcpStream::connect(&authority).await {
                                Ok(s) => {
                                    let _ = s.set_nodelay(true);
                                    stream = s;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                }
                (hist, ok, errors, ran_out)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let (mut ok, mut errors, mut ran_out) = (0, 0, false);
    for t in tasks {
        let (h, o, e, r) = t.await.expect("load task");
        hist.add(&h).expect("merge");
        ok += o;
        errors += e;
        ran_out |= r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        Stats {
            ok,
            errors,
            rps: ok as f64 / elapsed,
            p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
            p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
            max_ms: hist.max() as f64 / 1000.0,
        },
        ran_out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_content_length_in_any_case() {
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nx: y"),
            Some(42)
        );
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\nx: y"), None);
    }

    #[test]
    fn encodes_a_post() {
        let r = encode_post("h:1", "/p", &[("a", "b")], b"xy");
        assert_eq!(
            r,
            b"POST /p HTTP/1.1\r\nhost: h:1\r\na: b\r\ncontent-length: 2\r\n\r\nxy"
        );
    }
}
