//! A raw HTTP/1.1 client over `TcpStream`, and the message parser the echo upstream shares.
//! Raw on purpose: tests send repeated headers, odd casing and non-UTF-8 bytes exactly as
//! written, which a regular client would normalise or refuse.

use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long one exchange may take before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed response. Header names are lower-cased; values are the raw bytes with surrounding
/// whitespace trimmed, in the order received (repeats kept).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_values(name).into_iter().next()
    }

    /// The first value of header `name` as text (lossy UTF-8).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    }

    /// Every value of header `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<&[u8]> {
        values_of(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics showing the status and body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "response body is not JSON ({error}): {} {}",
                self.status,
                self.body_text()
            )
        })
    }
}

/// Sends `raw` to 127.0.0.1:`port` and reads one response, with [`DEFAULT_TIMEOUT`]. Panics
/// on connection errors, time-outs and unparseable responses (this is a test harness: the
/// message says what happened).
pub fn send(port: u16, raw: &[u8]) -> Response {
    try_send(port, raw, DEFAULT_TIMEOUT)
        .unwrap_or_else(|error| panic!("HTTP exchange with 127.0.0.1:{port} failed: {error}"))
}

/// Sends `raw` and reads one response within `timeout`. The request should carry
/// `connection: close`; the response ends at its length, its last chunk, or end of stream.
pub fn try_send(port: u16, raw: &[u8], timeout: Duration) -> Result<Response, String> {
    send_in_parts(port, &[raw], Duration::ZERO, timeout)
}

/// Like [`try_send`], writing `parts` one by one with `pause` between them, so the gateway
/// sees a request arrive in pieces (a body in several reads).
pub fn send_in_parts(
    port: u16,
    parts: &[&[u8]],
    pause: Duration,
    timeout: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            std::thread::sleep(pause);
        }
        stream.write_all(part).map_err(|e| format!("write: {e}"))?;
    }
    // No `expect: 100-continue` is ever sent, so the first message is the final response.
    let message = read_message(&mut stream, deadline, BodyWithoutLength::UntilClose)?;
    Ok(Response {
        status: parse_status(&message.start_line)?,
        headers: message.headers,
        body: message.body,
    })
}

/// A request with `host` (unless given) and `connection: close` added, the given headers
/// written as-is and in order, and no body.
pub fn build_request(method: &str, path: &str, port: u16, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    let has = |wanted: &str| {
        headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
    };
    if !has("host") {
        raw.extend_from_slice(format!("host: 127.0.0.1:{port}\r\n").as_bytes());
    }
    for (name, value) in headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    if !has("connection") {
        raw.extend_from_slice(b"connection: close\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

/// `method path` to 127.0.0.1:`port` with these headers (see [`build_request`]).
pub fn get(port: u16, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Response {
    send(port, &build_request(method, path, port, headers))
}

fn parse_status(start_line: &str) -> Result<u16, String> {
    let mut parts = start_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("not an HTTP/1.x status line: {start_line:?}"));
    }
    code.parse()
        .map_err(|_| format!("bad status code in {start_line:?}"))
}

// ---------------------------------------------------------------------------------------------
// Message parsing shared with the echo upstream

/// What a message with neither `content-length` nor chunked encoding carries: a response runs
/// to the end of the connection, a request has no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyWithoutLength {
    UntilClose,
    Empty,
}

/// Every value of header `name` (case-insensitive) in a parsed header list, in order.
pub(crate) fn values_of<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
        .collect()
}

/// A request or response: its first line (lossy text), headers (names lower-cased) and body
/// (de-chunked).
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub start_line: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Reads one message from `stream` before `deadline`.
pub(crate) fn read_message(
    stream: &mut TcpStream,
    deadline: Instant,
    without_length: BodyWithoutLength,
) -> Result<Message, String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(message) = parse_message(&buffer, false, without_length)? {
            return Ok(message);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!(
                "timed out; received so far: {:?}",
                String::from_utf8_lossy(&buffer)
            ));
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return parse_message(&buffer, true, without_length)?.ok_or_else(|| {
                    format!(
                        "connection closed mid-message; received: {:?}",
                        String::from_utf8_lossy(&buffer)
                    )
                })
            }
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "timed out; received so far: {:?}",
                    String::from_utf8_lossy(&buffer)
                ))
            }
            // A reset after a complete message is still a complete message.
            Err(e) => {
                return parse_message(&buffer, true, without_length)?
                    .ok_or_else(|| format!("read: {e}"))
            }
        }
    }
}

/// Parses a complete message from the start of `buffer`; `Ok(None)` while more bytes are
/// needed. `at_end` says the peer has closed, which completes a body that runs until close.
pub(crate) fn parse_message(
    buffer: &[u8],
    at_end: bool,
    without_length: BodyWithoutLength,
) -> Result<Option<Message>, String> {
    let Some(head_end) = find(buffer, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &buffer[..head_end];
    let rest = &buffer[head_end + 4..];
    let mut lines = head.split(|&byte| byte == b'\n').map(trim_cr);
    let start_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut headers = Vec::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&byte| byte == b':')
            .ok_or_else(|| format!("header line without a colon: {:?}", lossy(line)))?;
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        headers.push((name, trim_spaces(&line[colon + 1..]).to_vec()));
    }
    let value_of = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| lossy(value).to_ascii_lowercase())
    };
    let body = if value_of("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        match dechunk(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(length) = value_of("content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| format!("bad content-length {length:?}"))?;
        if rest.len() < length {
            return Ok(None);
        }
        rest[..length].to_vec()
    } else if without_length == BodyWithoutLength::Empty {
        Vec::new()
    } else if at_end {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Message {
        start_line,
        headers,
        body,
    }))
}

/// Decodes a chunked body; `Ok(None)` until the terminating chunk and trailers are complete.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers (usually none) end with an empty line.
            return Ok(find_trailer_end(rest).map(|_| body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find_trailer_end(rest: &[u8]) -> Option<usize> {
    if rest.starts_with(b"\r\n") {
        Some(2)
    } else {
        find(rest, b"\r\n\r\n").map(|at| at + 4)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_spaces(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |at| at + 1);
    &value[start..end]
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> Message {
        parse_message(raw, true, BodyWithoutLength::UntilClose)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn content_length_bodies_end_at_their_length() {
        let raw = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"x\"\r\ncontent-length: 2\r\n\r\n{}";
        let message = parse_message(raw, false, BodyWithoutLength::UntilClose)
            .unwrap()
            .unwrap();
        assert_eq!(parse_status(&message.start_line).unwrap(), 401);
        assert_eq!(message.headers[0].0, "www-authenticate");
        assert_eq!(message.headers[0].1, b"Bearer realm=\"x\"");
        assert_eq!(message.body, b"{}");
        // One byte short is incomplete, not an error.
        assert!(
            parse_message(&raw[..raw.len() - 1], false, BodyWithoutLength::UntilClose)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n";
        assert_eq!(complete(raw).body, b"Wikipedia ");
        let partial = &raw[..raw.len() - 2];
        assert!(parse_message(partial, false, BodyWithoutLength::UntilClose)
            .unwrap()
            .is_none());
    }

    #[test]
    fn bodies_without_length_run_to_close_for_responses_and_are_empty_for_requests() {
        let raw = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert!(parse_message(raw, false, BodyWithoutLength::UntilClose)
            .unwrap()
            .is_none());
        assert_eq!(complete(raw).body, b"abc");
        let request = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        let message = parse_message(request, false, BodyWithoutLength::Empty)
            .unwrap()
            .unwrap();
        assert!(message.body.is_empty());
    }

    #[test]
    fn repeated_and_non_utf8_header_values_are_kept_byte_for_byte() {
        let raw = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:  \xff\xfe \r\ncontent-length: 0\r\n\r\n";
        let message = complete(raw);
        let response = Response {
            status: 200,
            headers: message.headers,
            body: message.body,
        };
        assert_eq!(response.header_values("X-A"), [&b"1"[..], &b"\xff\xfe"[..]]);
        assert_eq!(response.header("x-a"), Some(&b"1"[..]));
        assert_eq!(response.header_str("missing"), None);
    }

    #[test]
    fn requests_are_built_as_written_with_host_and_close_added_once() {
        let raw = build_request(
            "GET",
            "/p?q=1",
            8080,
            &[("Authorization", b"a"), ("authorization", b"\xc0b")],
        );
        assert_eq!(
            raw,
            b"GET /p?q=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nAuthorization: a\r\nauthorization: \xc0b\r\nconnection: close\r\n\r\n"
        );
        let custom = build_request(
            "GET",
            "/",
            1,
            &[("Host", b"h"), ("Connection", b"keep-alive")],
        );
        assert_eq!(
            custom,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(parse_status("SSH-2.0-OpenSSH").is_err());
        assert!(parse_message(
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            true,
            BodyWithoutLength::UntilClose
        )
        .is_err());
    }
}
