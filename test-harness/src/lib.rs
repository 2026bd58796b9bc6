//! End-to-end harness: pieces shared by `make run` (the quickstart) and the tests that drive
//! a real Envoy.

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fills `${NAME}` placeholders; a placeholder left unfilled is an error.
pub fn render_template(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    let mut rendered = template.to_owned();
    for (name, value) in values {
        rendered = rendered.replace(&format!("${{{name}}}"), value);
    }
    match rendered.find("${") {
        Some(at) => Err(format!(
            "unfilled placeholder near `{}`",
            &rendered[at..(at + 30).min(rendered.len())]
        )),
        None => Ok(rendered),
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running Envoy, stopped (killed and reaped) on drop. Its log goes through stderr into
/// `log` (written line by line; `--log-path` would buffer), its stdout into `stdout`.
pub struct EnvoyProcess {
    child: Child,
    pub log: PathBuf,
    pub stdout: PathBuf,
}

impl EnvoyProcess {
    /// Starts `envoy -c config` with one worker and waits (at most 60 s) for `/ready`.
    pub fn start(
        envoy: &Path,
        config: &Path,
        admin_port: u16,
        dir: &Path,
    ) -> Result<EnvoyProcess, String> {
        let log = dir.join("envoy.log");
        let stdout = dir.join("envoy.stdout");
        let create = |path: &Path| {
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let child = Command::new(envoy)
            .arg("-c")
            .arg(config)
            .args(["--concurrency", "1", "--base-id", &admin_port.to_string()])
            .stdout(create(&stdout)?)
            .stderr(create(&log)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", envoy.display()))?;
        let mut process = EnvoyProcess { child, log, stdout };
        process.wait_ready(admin_port)?;
        Ok(process)
    }

    fn wait_ready(&mut self, admin_port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "envoy exited during start-up ({status}):\n{}",
                    self.log_tail(40)
                ));
            }
            let ready = http_request(
                admin_port,
                b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n",
            )
            .is_ok_and(|response| response.starts_with(b"HTTP/1.1 200"));
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "envoy not ready within 60 s:\n{}",
            self.log_tail(40)
        ))
    }

    /// Waits for Envoy to exit on its own (for example after Ctrl-C).
    pub fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes to 127.0.0.1:`port` and reads the whole response (the request should say
/// `connection: close`). Raw, so callers can send repeated headers and non-UTF-8 bytes.
pub fn http_request(port: u16, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(raw)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

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

    #[test]
    fn templates_fill_every_placeholder_or_fail() {
        let values = [("A", "1".to_owned()), ("B", "two".to_owned())];
        assert_eq!(
            render_template("${A}-${B}-${A}", &values).unwrap(),
            "1-two-1"
        );
        assert!(render_template("${A} ${C}", &values)
            .unwrap_err()
            .contains("${C}"));
    }

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
