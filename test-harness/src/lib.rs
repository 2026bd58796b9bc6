//! Harness for driving the built `chaperone.wasm` inside a real Envoy: config templates, free
//! loopback ports, an Envoy process guard, an echoing upstream, a raw HTTP/1.1 client, keys and
//! tokens (well-formed and hostile), and decision-record parsing. Shared by the end-to-end tests
//! (`tests/`), `make run` (`bin/quickstart.rs`) and `make bench` (`bin/bench.rs`).
//!
//! Everything talks to 127.0.0.1 only. Every wait is bounded; every process started here is
//! stopped by the guard that started it.

pub mod cli;
pub mod echo;
pub mod envoy;
pub mod gateway;
pub mod http;
pub mod paths;
pub mod ports;
pub mod records;
pub mod scripted;
pub mod server;
pub mod template;
pub mod tokens;

pub use echo::EchoUpstream;
pub use envoy::Envoy;
pub use gateway::{Gateway, GatewayOptions};
pub use http::{get, send, try_send, Response};
pub use paths::{cli_path, envoy_bin, wasm_path, workspace_root};
pub use ports::{free_port, free_ports};
pub use records::decision_records;
pub use scripted::{Answer, ScriptedServer};
pub use server::SeenRequest;
pub use template::{render_gateway_config, render_quickstart, render_template};
pub use tokens::{base64url, jwks, AgentKey};
