//! End-to-end harness: pieces shared by `make run` (the quickstart) and the tests that drive
//! a real Envoy.

use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Header pairs of one request the upstream received, names lower-cased.
pub type SeenRequest = Vec<(String, String)>;

/// A loopback HTTP/1.1 upstream that answers every request `200` with a JSON echo of what it
/// received (method, path, headers in order), so users and tests can see exactly which
/// headers reached the upstream. Remembers every request; stops when dropped.
pub struct EchoUpstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
}

impl EchoUpstream {
    /// Listens on 127.0.0.1:`port` (0 picks a free port).
    pub fn start(port: u16) -> std::io::Result<EchoUpstream> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_in, stop_in) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_in.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let seen = Arc::clone(&seen_in);
                    std::thread::spawn(move || {
                        let _ = answer(stream, &seen);
                    });
                }
            }
        });
        Ok(EchoUpstream { port, seen, stop })
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(stream: TcpStream, seen: &Mutex<Vec<SeenRequest>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    // Bounded: a request head larger than this is not something Envoy would send us.
    for _ in 0..512 {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    if let Ok(mut seen) = seen.lock() {
        seen.push(headers.clone());
    }
    let mut parts = request_line.split_whitespace();
    let echo = json!({
        "method": parts.next().unwrap_or_default(),
        "path": parts.next().unwrap_or_default(),
        "headers": headers,
    });
    let body = serde_json::to_string_pretty(&echo).unwrap_or_default() + "\n";
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn echoes_and_records_every_header_in_order() {
        let upstream = EchoUpstream::start(0).unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", upstream.port)).unwrap();
        stream
            .write_all(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Twice: 1\r\nx-twice: 2\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        let body: serde_json::Value =
            serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["method"], "GET");
        assert_eq!(body["path"], "/a?b=1");
        assert_eq!(
            body["headers"],
            json!([["host", "x"], ["x-twice", "1"], ["x-twice", "2"]])
        );
        assert_eq!(upstream.requests().len(), 1);
    }
}
