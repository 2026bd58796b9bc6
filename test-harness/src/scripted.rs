//! A scriptable loopback HTTP service: the identity provider serving key sets (and OpenID
//! configurations), or the collector receiving decision records. It answers each path as told
//! and can be told, at any moment, to misbehave the ways real services do: answer errors,
//! stall, redirect, send oversized or malformed bodies, or go away. It keeps every request
//! (bodies included), so tests can assert exactly how often chaperone called and what it sent.

use crate::server::{write_response, LoopbackServer, SeenRequest};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A stalled answer never comes; the connection is let go after this at the latest.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// How the server answers a path.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this JSON document, and a `cache-control` header if given.
    Json {
        body: Value,
        cache_control: Option<String>,
    },
    /// This status and body as given (malformed or oversized documents, errors).
    Raw {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// 302 to this location.
    Redirect(String),
    /// Reads the request and never answers (until the server stops or [`STALL_LIMIT`]).
    Stall,
    /// Closes the connection without a word.
    Hang,
}

impl Answer {
    pub fn json(body: Value) -> Answer {
        Answer::Json {
            body,
            cache_control: None,
        }
    }

    pub fn status(status: u16) -> Answer {
        Answer::Raw {
            status,
            content_type: "text/plain",
            body: format!("status {status}").into_bytes(),
        }
    }
}

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    /// Requests per path, in arrival order.
    seen: Vec<SeenRequest>,
}

pub struct ScriptedServer {
    server: Option<LoopbackServer>,
    state: Arc<Mutex<State>>,
}

impl ScriptedServer {
    /// Listens on a free loopback port; every path answers 404 until set.
    pub fn start() -> std::io::Result<ScriptedServer> {
        let state: Arc<Mutex<State>> = Arc::default();
        let state_of_server = Arc::clone(&state);
        let server = LoopbackServer::start(
            0,
            "scripted-server",
            Arc::new(
                move |request, connection: &mut TcpStream, stopping: &AtomicBool| {
                    let answer = {
                        let mut state = lock(&state_of_server);
                        let path = request.path.clone();
                        state.seen.push(request);
                        state.answers.get(&path).cloned()
                    };
                    respond(answer, connection, stopping);
                },
            ),
        )?;
        Ok(ScriptedServer {
            server: Some(server),
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.as_ref().map_or(0, LoopbackServer::port)
    }

    /// From now on, `path` (with its query, as requested) answers `answer`.
    pub fn set(&self, path: &str, answer: Answer) {
        lock(&self.state).answers.insert(path.to_owned(), answer);
    }

    /// How many requests `path` has received.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.state)
            .seen
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.state).seen.clone()
    }

    /// Waits (bounded) until `path` has received at least `count` requests.
    pub fn wait_for_count(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.count(path);
            if seen >= count {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{path} requested {seen} times, not {count}, within {} ms",
                    timeout.as_millis()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops listening: from now on connections are refused (the provider went away).
    pub fn go_away(&mut self) {
        self.server = None;
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn respond(answer: Option<Answer>, connection: &mut TcpStream, stopping: &AtomicBool) {
    match answer {
        None => write_response(connection, 404, &[], b"not found"),
        Some(Answer::Json {
            body,
            cache_control,
        }) => {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(value) = &cache_control {
                headers.push(("cache-control", value.as_str()));
            }
            write_response(connection, 200, &headers, body.to_string().as_bytes());
        }
        Some(Answer::Raw {
            status,
            content_type,
            body,
        }) => write_response(connection, status, &[("content-type", content_type)], &body),
        Some(Answer::Redirect(location)) => {
            write_response(connection, 302, &[("location", location.as_str())], b"")
        }
        Some(Answer::Stall) => {
            let until = Instant::now() + STALL_LIMIT;
            while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = connection.shutdown(Shutdown::Both);
        }
        Some(Answer::Hang) => {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{build_request, try_send};
    use serde_json::json;

    fn get(server: &ScriptedServer, path: &str) -> Result<crate::http::Response, String> {
        try_send(
            server.port(),
            &build_request("GET", path, server.port(), &[]),
            Duration::from_secs(2),
        )
    }

    #[test]
    fn answers_as_told_and_counts_per_path() {
        let mut server = ScriptedServer::start().unwrap();
        assert_eq!(get(&server, "/jwks").unwrap().status, 404);
        server.set(
            "/jwks",
            Answer::Json {
                body: json!({"keys": []}),
                cache_control: Some("max-age=60".into()),
            },
        );
        let response = get(&server, "/jwks").unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.json(), json!({"keys": []}));
        assert_eq!(
            response.header_str("cache-control").as_deref(),
            Some("max-age=60")
        );
        server.set("/jwks", Answer::Redirect("/elsewhere".into()));
        let response = get(&server, "/jwks").unwrap();
        assert_eq!(
            (response.status, response.header_str("location").as_deref()),
            (302, Some("/elsewhere"))
        );
        server.set("/jwks", Answer::status(503));
        assert_eq!(get(&server, "/jwks").unwrap().status, 503);
        server.set("/jwks", Answer::Hang);
        assert!(get(&server, "/jwks").is_err());
        assert_eq!(server.count("/jwks"), 5);
        assert_eq!(server.count("/elsewhere"), 0);

        let started = Instant::now();
        server.set("/slow", Answer::Stall);
        assert!(get(&server, "/slow").is_err(), "a stall is never answered");
        assert!(started.elapsed() >= Duration::from_secs(2));

        let port = server.port();
        server.go_away();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
