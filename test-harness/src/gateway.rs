//! The end-to-end fixture: the shipped quickstart config rendered with free ports, the built
//! module and a given plugin configuration, an Envoy running it, and an echo upstream behind
//! it. Methods panic with Envoy's log tail, because they exist to make tests short.

use crate::echo::EchoUpstream;
use crate::envoy::{scratch_dir, Envoy};
use crate::http::{build_request, try_send, Response, DEFAULT_TIMEOUT};
use crate::paths::{try_envoy_bin, try_wasm_path, workspace_root};
use crate::ports::free_ports;
use crate::template::{render_gateway_config, QuickstartPorts, QUICKSTART};
use serde_json::Value;
use std::time::Duration;

/// How long a test waits for a decision record or access-log line to appear.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(10);
/// Free ports can be taken by someone else before Envoy binds them; then start again.
const START_ATTEMPTS: usize = 3;

/// Which shipped Envoy configuration to run, with what, and how many workers.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// A file under `envoy-config/` (see `template::QUICKSTART`, `template::REMOTE_JWKS`).
    pub template: &'static str,
    /// Values for placeholders beyond ports, module and configuration (`JWKS_PORT`).
    pub extra: Vec<(&'static str, String)>,
    pub workers: u32,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            template: QUICKSTART,
            extra: Vec::new(),
            workers: 1,
        }
    }
}

pub struct Gateway {
    pub envoy: Envoy,
    pub upstream: EchoUpstream,
    /// The listener chaperone guards.
    pub port: u16,
}

impl Gateway {
    /// Starts Envoy with chaperone configured by `plugin_config` (the JSON text, or "" for an
    /// empty configuration). Panics with the reason and Envoy's log when it cannot.
    pub fn start(plugin_config: &str) -> Gateway {
        Self::start_with(&GatewayOptions::default(), plugin_config)
    }

    /// Like [`Gateway::start`] with another template, placeholders or worker count.
    pub fn start_with(options: &GatewayOptions, plugin_config: &str) -> Gateway {
        Self::try_start(options, plugin_config).unwrap_or_else(|message| panic!("{message}"))
    }

    pub fn try_start(options: &GatewayOptions, plugin_config: &str) -> Result<Gateway, String> {
        let wasm = try_wasm_path()?;
        let envoy_bin = try_envoy_bin()?;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let upstream = EchoUpstream::start().map_err(|e| format!("echo upstream: {e}"))?;
            let ports = free_ports(2).map_err(|e| format!("free ports: {e}"))?;
            let (listen, admin) = (ports[0], ports[1]);
            let yaml = render_gateway_config(
                &workspace_root(),
                options.template,
                QuickstartPorts {
                    listen,
                    admin,
                    upstream: upstream.port(),
                },
                &options.extra,
                &wasm,
                plugin_config,
            )?;
            let dir = scratch_dir("envoy")?;
            match Envoy::start_in(&envoy_bin, &dir, &yaml, admin, options.workers) {
                Ok(mut envoy) => {
                    envoy.remove_dir_on_drop();
                    return Ok(Gateway {
                        envoy,
                        upstream,
                        port: listen,
                    });
                }
                Err(error) if error.contains("Address already in use") => {
                    // Someone took a port between allocation and bind: nothing to inspect.
                    let _ = std::fs::remove_dir_all(&dir);
                    last_error = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }

    /// Sends raw bytes to the guarded listener.
    pub fn send(&self, raw: &[u8]) -> Response {
        try_send(self.port, raw, DEFAULT_TIMEOUT).unwrap_or_else(|error| {
            panic!(
                "request to Envoy failed: {error}\nEnvoy log tail:\n{}",
                self.envoy.log_tail(50)
            )
        })
    }

    /// `method path` with these headers (written as given, repeats and raw bytes included),
    /// plus `host` and `connection: close`.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Response {
        self.send(&build_request(method, path, self.port, headers))
    }

    /// `method path` with `authorization: Bearer <token>`.
    pub fn with_token(&self, method: &str, path: &str, token: &str) -> Response {
        let bearer = format!("Bearer {token}");
        self.request(method, path, &[("authorization", bearer.as_bytes())])
    }

    /// The decision record with this id (waits, bounded, for Envoy to write it).
    pub fn record(&self, decision_id: &str) -> Value {
        self.envoy
            .wait_for_record(decision_id, RECORD_TIMEOUT)
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// The access-log line with this decision id (waits, bounded).
    pub fn access_log_entry(&self, decision_id: &str) -> Value {
        self.envoy
            .wait_for_access_log(decision_id, RECORD_TIMEOUT)
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// The value of counter `name` in Envoy's admin `/stats` (custom wasm metrics are
    /// `wasmcustom.<name>`); 0 when it is not there yet.
    pub fn counter(&self, name: &str) -> u64 {
        let request = build_request("GET", "/stats", self.envoy.admin_port(), &[]);
        let Ok(response) = try_send(self.envoy.admin_port(), &request, DEFAULT_TIMEOUT) else {
            return 0;
        };
        response
            .body_text()
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Envoy's log and access log together, for "this never appears anywhere" checks.
    pub fn all_logs(&self) -> String {
        format!(
            "{}\n{}",
            self.envoy.log_text(),
            self.envoy.access_log_text()
        )
    }
}
