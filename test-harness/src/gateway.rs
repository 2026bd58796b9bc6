//! The end-to-end fixture: the shipped quickstart config rendered with free ports, the built
//! module and a given plugin configuration, an Envoy running it, and an echo upstream behind
//! it. Methods panic with Envoy's log tail, because they exist to make tests short.

use crate::echo::EchoUpstream;
use crate::envoy::{scratch_dir, Envoy, ACCESS_LOG_FILE};
use crate::http::{build_request, try_send, Response, DEFAULT_TIMEOUT};
use crate::paths::{try_envoy_bin, try_wasm_path, workspace_root};
use crate::ports::free_ports;
use crate::template::{render_gateway_config, render_template, QuickstartPorts, ECDS, QUICKSTART};
use serde_json::Value;
use std::cell::Cell;
use std::path::{Path, PathBuf};
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
    /// Text replaced in the rendered configuration, each found at least once: a variant of a
    /// shipped template for one test.
    pub edits: Vec<(&'static str, &'static str)>,
    pub workers: u32,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            template: QUICKSTART,
            extra: Vec::new(),
            edits: Vec::new(),
            workers: 1,
        }
    }
}

impl GatewayOptions {
    /// The shipped ECDS setup: chaperone's configuration in a watched file, so
    /// [`Gateway::reconfigure`] can replace it while Envoy runs.
    pub fn ecds() -> Self {
        GatewayOptions {
            template: ECDS,
            ..GatewayOptions::default()
        }
    }
}

/// The watched ECDS resource file of a gateway started with [`GatewayOptions::ecds`].
struct EcdsFile {
    path: PathBuf,
    wasm: PathBuf,
    version: Cell<u32>,
}

impl EcdsFile {
    /// Writes version `version` of the resource with this plugin configuration: into a new
    /// file first, then renamed over the watched one (Envoy reacts to the move).
    fn write(&self, plugin_config: &str) -> Result<(), String> {
        let version = self.version.get() + 1;
        self.version.set(version);
        let template_path = workspace_root().join("envoy-config/ecds-chaperone.yaml");
        let template = std::fs::read_to_string(&template_path)
            .map_err(|e| format!("{}: {e}", template_path.display()))?;
        let quoted = serde_json::to_string(plugin_config).map_err(|e| e.to_string())?;
        let resource = render_template(
            &template,
            &[
                ("VERSION", format!("v{version}")),
                ("WASM_PATH", self.wasm.display().to_string()),
                ("PLUGIN_CONFIG", quoted),
            ],
        )?;
        let staging = self.path.with_extension(format!("v{version}"));
        std::fs::write(&staging, resource).map_err(|e| format!("{}: {e}", staging.display()))?;
        std::fs::rename(&staging, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

pub struct Gateway {
    pub envoy: Envoy,
    pub upstream: EchoUpstream,
    /// The listener chaperone guards.
    pub port: u16,
    ecds: Option<EcdsFile>,
}

/// The first version of the watched ECDS file, in `dir`.
fn ecds_file(dir: &Path, wasm: &Path, plugin_config: &str) -> Result<EcdsFile, String> {
    let file = EcdsFile {
        path: dir.join("chaperone-ecds.yaml"),
        wasm: wasm.to_path_buf(),
        version: Cell::new(0),
    };
    file.write(plugin_config)?;
    Ok(file)
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
            let dir = scratch_dir("envoy")?;
            let mut extra = options.extra.clone();
            extra.push((
                "ACCESS_LOG_PATH",
                dir.join(ACCESS_LOG_FILE).display().to_string(),
            ));
            let ecds = (options.template == ECDS)
                .then(|| ecds_file(&dir, &wasm, plugin_config))
                .transpose()?;
            if let Some(file) = &ecds {
                extra.push(("ECDS_PATH", file.path.display().to_string()));
            }
            let mut yaml = render_gateway_config(
                &workspace_root(),
                options.template,
                QuickstartPorts {
                    listen,
                    admin,
                    upstream: upstream.port(),
                },
                &extra,
                &wasm,
                plugin_config,
            )?;
            for (from, to) in &options.edits {
                if !yaml.contains(from) {
                    return Err(format!("{}: no `{from}` to replace", options.template));
                }
                yaml = yaml.replace(from, to);
            }
            match Envoy::start_in(&envoy_bin, &dir, &yaml, admin, options.workers) {
                Ok(mut envoy) => {
                    envoy.remove_dir_on_drop();
                    return Ok(Gateway {
                        envoy,
                        upstream,
                        port: listen,
                        ecds,
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

    /// Replaces chaperone's configuration while Envoy runs (ECDS gateways only), and waits
    /// (bounded) until Envoy has accepted or rejected it. Returns whether it was accepted.
    pub fn reconfigure(&self, plugin_config: &str) -> bool {
        let Some(file) = &self.ecds else {
            panic!("reconfigure needs a gateway started with GatewayOptions::ecds()");
        };
        let stat = |outcome: &str| {
            self.counter(&format!(
                "extension_config_discovery.http_filter.chaperone.{outcome}"
            ))
        };
        let (accepted, rejected) = (stat("update_success"), stat("update_rejected"));
        file.write(plugin_config)
            .unwrap_or_else(|message| panic!("{message}"));
        let deadline = std::time::Instant::now() + RECORD_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if stat("update_success") > accepted {
                return true;
            }
            if stat("update_rejected") > rejected {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "Envoy neither accepted nor rejected the new configuration within {} s:\n{}",
            RECORD_TIMEOUT.as_secs(),
            self.envoy.log_tail(30)
        );
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

    /// The body of an admin endpoint (`/stats`, `/stats/prometheus`); empty if unreachable.
    pub fn admin_text(&self, path: &str) -> String {
        let request = build_request("GET", path, self.envoy.admin_port(), &[]);
        try_send(self.envoy.admin_port(), &request, DEFAULT_TIMEOUT)
            .map(|response| response.body_text())
            .unwrap_or_default()
    }

    /// The value of counter `name` in Envoy's admin `/stats` (custom wasm metrics are
    /// `wasmcustom.<name>`); 0 when it is not there yet.
    pub fn counter(&self, name: &str) -> u64 {
        self.admin_text("/stats")
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
