//! A loopback HTTP/1.1 upstream that answers every request `200` with a JSON echo of what it
//! received, and remembers every request, so a test can see exactly which headers reached the
//! upstream, or that nothing did. One request per connection (`connection: close`): simple, and
//! Envoy never reuses a connection the upstream is closing.

use crate::server::{write_response, LoopbackServer, SeenRequest};
use serde_json::json;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

pub struct EchoUpstream {
    server: LoopbackServer,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl EchoUpstream {
    /// Listens on a free loopback port.
    pub fn start() -> std::io::Result<EchoUpstream> {
        Self::start_on(0)
    }

    /// Listens on 127.0.0.1:`port` (0 picks a free one).
    pub fn start_on(port: u16) -> std::io::Result<EchoUpstream> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_by_server = Arc::clone(&seen);
        let server = LoopbackServer::start(
            port,
            "echo-upstream",
            Arc::new(move |request, connection: &mut TcpStream, _: &_| {
                answer(request, connection, &seen_by_server)
            }),
        )?;
        Ok(EchoUpstream { server, seen })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn request_count(&self) -> usize {
        self.requests().len()
    }
}

fn answer(request: SeenRequest, connection: &mut TcpStream, seen: &Mutex<Vec<SeenRequest>>) {
    let echo = json!({
        "method": request.method,
        "path": request.path,
        "headers": request
            .headers
            .iter()
            .map(|(name, value)| json!([name, String::from_utf8_lossy(value)]))
            .collect::<Vec<_>>(),
    });
    // Recorded before answering, so whoever sees the response also sees the record.
    match seen.lock() {
        Ok(mut seen) => seen.push(request),
        Err(poisoned) => poisoned.into_inner().push(request),
    }
    let body = format!("{echo}\n");
    write_response(
        connection,
        200,
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
}

/// What an echo body says the upstream received, for callers that only see the response
/// (for example through Envoy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// Parses an echo body; `None` if it is not one.
pub fn parse_echo(body: &[u8]) -> Option<Echo> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let headers = value["headers"]
        .as_array()?
        .iter()
        .map(|pair| {
            Some((
                pair.get(0)?.as_str()?.to_owned(),
                pair.get(1)?.as_str()?.to_owned(),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Echo {
        method: value["method"].as_str()?.to_owned(),
        path: value["path"].as_str()?.to_owned(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{build_request, send};

    #[test]
    fn round_trip_keeps_duplicate_headers_and_non_utf8_bytes() {
        let upstream = EchoUpstream::start().unwrap();
        let response = send(
            upstream.port(),
            &build_request(
                "POST",
                "/a/b?c=1",
                upstream.port(),
                &[
                    ("X-Twice", b"one"),
                    ("x-twice", b"two"),
                    ("x-bytes", b"caf\xe9 \xff"),
                ],
            ),
        );
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header_str("content-type").as_deref(),
            Some("application/json")
        );

        // The upstream recorded the exact bytes...
        let seen = upstream.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("POST", "/a/b?c=1")
        );
        assert_eq!(seen[0].header_values("x-twice"), [&b"one"[..], &b"two"[..]]);
        assert_eq!(seen[0].header_values("X-BYTES"), [&b"caf\xe9 \xff"[..]]);

        // ...and echoed them, in order, as lossy text.
        let echo = parse_echo(&response.body).unwrap();
        assert_eq!(
            (echo.method.as_str(), echo.path.as_str()),
            ("POST", "/a/b?c=1")
        );
        let names: Vec<&str> = echo.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["host", "x-twice", "x-twice", "x-bytes", "connection"]
        );
        assert_eq!(echo.headers[3].1, "caf\u{fffd} \u{fffd}");
    }

    #[test]
    fn request_bodies_are_read_so_the_reply_is_not_cut_short() {
        let upstream = EchoUpstream::start().unwrap();
        let raw =
            b"PUT /x HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
        assert_eq!(send(upstream.port(), raw).status, 200);
        let chunked = b"PUT /y HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(send(upstream.port(), chunked).status, 200);
        let bodies: Vec<Vec<u8>> = upstream.requests().into_iter().map(|r| r.body).collect();
        assert_eq!(bodies, [b"hello".to_vec(), b"abc".to_vec()]);
    }

    #[test]
    fn stops_on_drop_within_the_bound() {
        use crate::server::STOP_TIMEOUT;
        use std::net::TcpListener;
        use std::time::{Duration, Instant};
        let upstream = EchoUpstream::start().unwrap();
        let port = upstream.port();
        let started = Instant::now();
        drop(upstream);
        assert!(started.elapsed() < STOP_TIMEOUT + Duration::from_secs(1));
        // The listener is gone: the port can be bound again.
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn many_concurrent_clients_are_all_answered_and_counted() {
        let upstream = EchoUpstream::start().unwrap();
        let port = upstream.port();
        let clients: Vec<_> = (0..16)
            .map(|i| {
                std::thread::spawn(move || {
                    let path = format!("/n/{i}");
                    send(port, &build_request("GET", &path, port, &[])).status
                })
            })
            .collect();
        for client in clients {
            assert_eq!(client.join().unwrap(), 200);
        }
        assert_eq!(upstream.request_count(), 16);
    }
}
