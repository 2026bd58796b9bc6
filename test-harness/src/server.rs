//! A loopback HTTP/1.1 server skeleton: an accept loop on 127.0.0.1, one thread per
//! connection, one request per connection, and a bounded stop on drop. What to answer is the
//! caller's `respond` function; the echo upstream and the key server are built on it.

use crate::http::{read_message, BodyWithoutLength};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server waits for a request on a new connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Drop` waits for the accept loop to notice it should stop.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// One request as the server received it. Header names are lower-cased; values are raw bytes.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&[u8]> {
        crate::http::values_of(&self.headers, name)
    }

    /// Every value of header `name` as text (lossy UTF-8).
    pub fn header_strings(&self, name: &str) -> Vec<String> {
        self.header_values(name)
            .into_iter()
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .collect()
    }
}

/// Answers one request on its connection; `stopping` turns true when the server is dropped
/// (a handler that holds a connection open must watch it).
pub type Respond = dyn Fn(SeenRequest, &mut TcpStream, &AtomicBool) + Send + Sync;

pub struct LoopbackServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accept_loop: Option<JoinHandle<()>>,
    accept_loop_done: Receiver<()>,
}

impl LoopbackServer {
    /// Listens on 127.0.0.1:`port` (0 picks a free one) and answers with `respond`.
    pub fn start(port: u16, name: &str, respond: Arc<Respond>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let (done_sender, accept_loop_done) = mpsc::channel();
        let stop_seen_by_loop = Arc::clone(&stop);
        let accept_loop = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                for connection in listener.incoming() {
                    if stop_seen_by_loop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(connection) = connection else { continue };
                    let (respond, stop) = (Arc::clone(&respond), Arc::clone(&stop_seen_by_loop));
                    // Connections are independent; a slow one must not block others.
                    let _ = std::thread::Builder::new()
                        .name("loopback-connection".into())
                        .spawn(move || serve(connection, &*respond, &stop));
                }
                let _ = done_sender.send(());
            })?;
        Ok(LoopbackServer {
            port,
            stop,
            accept_loop: Some(accept_loop),
            accept_loop_done,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop blocks in accept(); a connection wakes it to see the flag.
        let _ = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(500),
        );
        if self.accept_loop_done.recv_timeout(STOP_TIMEOUT).is_ok() {
            if let Some(handle) = self.accept_loop.take() {
                let _ = handle.join();
            }
        }
    }
}

fn serve(mut connection: TcpStream, respond: &Respond, stopping: &AtomicBool) {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let message = match read_message(&mut connection, deadline, BodyWithoutLength::Empty) {
        Ok(message) => message,
        Err(_) => {
            // The wake-up connection from Drop, or a client that sent garbage.
            let _ = connection.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            return;
        }
    };
    let mut parts = message.start_line.split(' ');
    let request = SeenRequest {
        method: parts.next().unwrap_or_default().to_owned(),
        path: parts.next().unwrap_or_default().to_owned(),
        headers: message.headers,
        body: message.body,
    };
    respond(request, &mut connection, stopping);
}

/// Writes a complete response with `content-length` and `connection: close`.
pub fn write_response(
    connection: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let _ = connection.write_all(head.as_bytes());
    let _ = connection.write_all(body);
    let _ = connection.shutdown(std::net::Shutdown::Write);
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
