//! `make bench`: one run, one Envoy worker, wrk on loopback, the same request for every setup:
//! bare Envoy, Envoy's native jwt_authn + RBAC, a Wasm filter that only reads the request
//! headers (`floor-filter`: what any such filter pays), the same filter making the host calls
//! chaperone makes for an allowed request (the host's side of chaperone's work), Envoy +
//! chaperone with ES256, RS256
//! and EdDSA agent tokens (the shipped bundle, 1,000 registered agents, registry enforced, records on,
//! verdicts remembered as the bundle allows), once more with ES256 and every verdict evaluated,
//! and once with ES256 and the records via the access log instead of Envoy's log.
//! Prints requests/s, p50, p99, ratios and Envoy's resident memory after the load. Every setup
//! answers with a direct response, so upstream cost is the same.

use chaperone_test_harness::cli::{mint_support_bot_token, run_cli, TokenSpec};
use chaperone_test_harness::paths::{try_envoy_bin, try_wasm_path, workspace_root};
use chaperone_test_harness::{free_ports, render_template, try_send, Envoy};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

const ISSUER: &str = "https://idp.bench.example";
const AUDIENCE: &str = "agents-api";
const PATH: &str = "/tickets/42";
/// Agents in the registry besides the shipped examples: the scale issue 8 names.
const REGISTERED_AGENTS: usize = 1000;

/// The signing algorithms of the agent tokens, with the `kid` of each benchmark key.
const ALGORITHMS: [(&str, &str); 3] = [
    ("ES256", "bench-es256"),
    ("RS256", "bench-rs256"),
    ("EdDSA", "bench-eddsa"),
];

/// The Wasm module a setup loads through `chaperone.yaml`.
#[derive(Clone, Copy, PartialEq)]
enum Module {
    None,
    Chaperone,
    Floor,
    /// `floor-filter` configured with [`CHAPERONE_HOST_CALLS`].
    FloorWithHostCalls,
}

/// The host calls chaperone makes for the benchmark's allowed request besides reading the
/// header pairs, configured as the access-log setup (`host_log` off), as `filter-host.mjs`
/// (run by `make bench`) counts them, and fails when they differ:
/// the clock, the record's key fields its access log reads as filter state, the agent
/// token's header taken off, the identity headers and the response's decision id, the
/// decision and cache counters and the duration histogram.
const CHAPERONE_HOST_CALLS: &str = "clock=4 properties=8 request_headers=4 \
     removed_request_headers=1 response_headers=1 counters=3 histograms=1";

/// The record's key fields the access-log setup's log reads, and so the ones its
/// `decision_log.key_fields` names, as a deployment would (floor-filter's `NAMES` sets the
/// same, for the floor's access log).
const ACCESS_LOG_FIELDS: [&str; 8] = [
    "decision_id",
    "decision",
    "reason",
    "rule",
    "agent_id",
    "owner",
    "policy_revision",
    "seq",
];

struct Setup {
    name: &'static str,
    template: &'static str,
    module: Module,
    /// The algorithm of the token wrk sends (an index into [`ALGORITHMS`]).
    algorithm: usize,
    /// Whether a request without a token must be rejected (it must, for the auth setups).
    authenticates: bool,
    /// Records via the access log: their key fields in a JSON access log (filter state), only
    /// those it reads set, and `decision_log.host_log` off; the harness checks the log got
    /// them after the load. The floor writes the same log, of the same filter state.
    access_log: bool,
    /// chaperone remembers verdicts as the bundle allows (`cache_seconds`); otherwise it
    /// evaluates every request (`limits.max_cached_decisions: 0`). The harness checks which
    /// it was after the load.
    remembers: bool,
}

const SETUPS: [Setup; 10] = [
    Setup {
        name: "bare Envoy (direct response)",
        template: "bare.yaml",
        module: Module::None,
        algorithm: 0,
        authenticates: false,
        access_log: false,
        remembers: false,
    },
    Setup {
        name: "jwt_authn (ES256, cache on) + RBAC",
        template: "jwt_authn_rbac.yaml",
        module: Module::None,
        algorithm: 0,
        authenticates: true,
        access_log: false,
        remembers: false,
    },
    Setup {
        name: "Wasm floor (reads the headers, no decision)",
        template: "chaperone.yaml",
        module: Module::Floor,
        algorithm: 0,
        authenticates: false,
        access_log: false,
        remembers: false,
    },
    Setup {
        name: "Wasm floor + chaperone's host calls, no decision",
        template: "chaperone.yaml",
        module: Module::FloorWithHostCalls,
        algorithm: 0,
        authenticates: false,
        access_log: false,
        remembers: false,
    },
    Setup {
        name: "Wasm floor + chaperone's host calls + access log, no decision",
        template: "chaperone.yaml",
        module: Module::FloorWithHostCalls,
        algorithm: 0,
        authenticates: false,
        access_log: true,
        remembers: false,
    },
    Setup {
        name: "chaperone (ES256)",
        template: "chaperone.yaml",
        module: Module::Chaperone,
        algorithm: 0,
        authenticates: true,
        access_log: false,
        remembers: true,
    },
    Setup {
        name: "chaperone (ES256), every verdict evaluated",
        template: "chaperone.yaml",
        module: Module::Chaperone,
        algorithm: 0,
        authenticates: true,
        access_log: false,
        remembers: false,
    },
    Setup {
        name: "chaperone (RS256)",
        template: "chaperone.yaml",
        module: Module::Chaperone,
        algorithm: 1,
        authenticates: true,
        access_log: false,
        remembers: true,
    },
    Setup {
        name: "chaperone (EdDSA)",
        template: "chaperone.yaml",
        module: Module::Chaperone,
        algorithm: 2,
        authenticates: true,
        access_log: false,
        remembers: true,
    },
    Setup {
        name: "chaperone (ES256), records via access log",
        template: "chaperone.yaml",
        module: Module::Chaperone,
        algorithm: 0,
        authenticates: true,
        access_log: true,
        remembers: true,
    },
];

struct Measurement {
    requests_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// Envoy's resident set after the load, in KiB (`VmRSS`).
    rss_kib: Option<u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let load_before = std::fs::read_to_string("/proc/loadavg").ok().map(|text| {
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    });
    let root = workspace_root();
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let work = root.join("build/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let cli = root.join("target/release/chaperone");
    let envoy = try_envoy_bin()?;
    let wasm = try_wasm_path()?;
    let floor = root.join("target/wasm32-wasip1/release/chaperone_floor_filter.wasm");
    if !floor.is_file() {
        return Err(format!(
            "{} is missing: `make bench` builds it (cargo build --release -p chaperone-floor-filter --target wasm32-wasip1)",
            floor.display()
        ));
    }

    let work_text = work.display().to_string();
    for (alg, kid) in ALGORITHMS {
        run_cli(
            &cli,
            &[
                "token", "keygen", "--alg", alg, "--kid", kid, "--out", &work_text,
            ],
        )?;
    }
    let jwks = std::fs::read_to_string(work.join("jwks.json")).map_err(|e| e.to_string())?;
    let jwks_value: serde_json::Value = serde_json::from_str(&jwks).map_err(|e| e.to_string())?;
    let base = serde_json::json!({
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks_value}],
        "registry": {},
        "policy": {"decision_path": "chaperone/authz/decision"},
    });
    std::fs::write(work.join("base.json"), base.to_string()).map_err(|e| e.to_string())?;
    let bundle = root.join("policies/agent-authz").display().to_string();
    let packed = run_cli(
        &cli,
        &[
            "bundle",
            &bundle,
            "--into",
            &format!("{work_text}/base.json"),
        ],
    )?;
    let plugin_config = with_registered_agents(&packed, REGISTERED_AGENTS)?;
    let access_log_plugin_config = with_field(
        &plugin_config,
        "decision_log",
        serde_json::json!({"host_log": false, "key_fields": ACCESS_LOG_FIELDS}),
    )?;
    let evaluating_plugin_config = with_field(
        &plugin_config,
        "limits",
        serde_json::json!({"max_cached_decisions": 0}),
    )?;
    let mut tokens = Vec::new();
    for (alg, kid) in ALGORITHMS {
        let key_path = format!("{work_text}/{kid}.key.pem");
        let spec = TokenSpec {
            key_path: &key_path,
            alg,
            kid,
            issuer: ISSUER,
            audience: AUDIENCE,
        };
        tokens.push(mint_support_bot_token(&cli, &spec)?);
    }

    // For the filter's rows in V8 (test-harness/bench/filter-host.mjs, run by `make bench`
    // after this): the same configurations and ES256 token, and the host calls the floor row
    // repeats, which it checks against the calls chaperone makes.
    std::fs::write(work.join("plugin.json"), &plugin_config).map_err(|e| e.to_string())?;
    std::fs::write(
        work.join("plugin-access-log.json"),
        &access_log_plugin_config,
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(work.join("token-es256"), &tokens[0]).map_err(|e| e.to_string())?;
    std::fs::write(work.join("host-calls"), CHAPERONE_HOST_CALLS).map_err(|e| e.to_string())?;

    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let mut results = Vec::new();
    for setup in &SETUPS {
        let ports = free_ports(2).map_err(|e| e.to_string())?;
        let (listen, admin) = (ports[0], ports[1]);
        let dir = work.join(setup.template.trim_end_matches(".yaml"));
        let module = match setup.module {
            Module::Floor | Module::FloorWithHostCalls => &floor,
            Module::None | Module::Chaperone => &wasm,
        };
        let host_calls = CHAPERONE_HOST_CALLS.to_owned();
        let access_log_path = dir.join("access.log");
        let access_log = if setup.access_log {
            file_access_log(&access_log_path)
        } else {
            "[]".to_owned()
        };
        let plugin = if setup.module == Module::FloorWithHostCalls {
            &host_calls
        } else if setup.access_log {
            &access_log_plugin_config
        } else if setup.module == Module::Chaperone && !setup.remembers {
            &evaluating_plugin_config
        } else {
            &plugin_config
        };
        let template =
            std::fs::read_to_string(root.join("test-harness/bench").join(setup.template))
                .map_err(|e| e.to_string())?;
        let config = render_template(
            &template,
            &[
                ("ADMIN_PORT", admin.to_string()),
                ("LISTEN_PORT", listen.to_string()),
                ("ISSUER", quote(ISSUER)),
                ("AUDIENCE", quote(AUDIENCE)),
                ("JWKS", quote(&jwks)),
                ("WASM_PATH", module.display().to_string()),
                ("PLUGIN_CONFIG", quote(plugin)),
                ("ACCESS_LOG", access_log),
            ],
        )?;
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // Setups share a directory: each checks only the lines it wrote.
        if setup.access_log {
            std::fs::write(&access_log_path, "").map_err(|e| e.to_string())?;
        }
        let process = Envoy::start_in(&envoy, &dir, &config, admin, 1)?;
        let token = &tokens[setup.algorithm];
        check_behaviour(setup, listen, token)?;
        eprintln!("measuring {} for {seconds} s ...", setup.name);
        let _warm_up = wrk(listen, token, 3)?;
        let mut measurement = wrk(listen, token, seconds)?;
        measurement.rss_kib = resident_kib(process.pid());
        if setup.module == Module::Chaperone {
            check_remembered(setup, admin)?;
        }
        if setup.module == Module::FloorWithHostCalls {
            check_floor_calls(setup, admin)?;
        }
        drop(process);
        if setup.access_log {
            let lines = std::fs::read_to_string(&access_log_path).unwrap_or_default();
            // The floor sets every field the log reads (floor-filter's `NAMES`), to a value
            // of its own.
            let logged = match setup.module {
                Module::FloorWithHostCalls => {
                    !lines.is_empty()
                        && ACCESS_LOG_FIELDS
                            .iter()
                            .all(|field| !lines.contains(&format!("\"{field}\":null")))
                }
                _ => lines.contains("\"decision\":\"allow\""),
            };
            if !logged {
                return Err(format!(
                    "{}: the access log lacks the records' key fields",
                    setup.name
                ));
            }
        }
        results.push(measurement);
    }
    print_table(
        &results,
        &wasm,
        &envoy_version(&envoy),
        load_before.as_deref(),
        seconds,
    );
    Ok(())
}

/// The packed configuration with `count` more agents in the registry, each owned and with
/// the support bot's permissions, so the benchmark looks agents up among many.
fn with_registered_agents(packed: &str, count: usize) -> Result<String, String> {
    let mut config: serde_json::Value = serde_json::from_str(packed).map_err(|e| e.to_string())?;
    let agents = config
        .pointer_mut("/policy/data/chaperone/registry/agents")
        .and_then(serde_json::Value::as_object_mut)
        .ok_or("the bundle has no chaperone.registry.agents")?;
    let template = agents
        .get("support-bot")
        .cloned()
        .ok_or("the bundle has no support-bot")?;
    for index in 0..count {
        let mut agent = template.clone();
        agent["owner"] = serde_json::json!(format!("owner-{index:04}@example.com"));
        agents.insert(format!("bench-agent-{index:04}"), agent);
    }
    Ok(config.to_string())
}

/// The configuration with one top-level field replaced: `decision_log` with `host_log` off
/// (records only where the access log reads them, filter state, and only the fields it
/// reads), or `limits` with no verdict remembered (every request evaluates the policy).
fn with_field(config: &str, name: &str, value: serde_json::Value) -> Result<String, String> {
    let mut config: serde_json::Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    config[name] = value;
    Ok(config.to_string())
}

/// After the load: remembered verdicts answered requests exactly when the setup says they
/// should (Envoy's counter of `chaperone_decision_cache_total{result="hit"}`).
fn check_remembered(setup: &Setup, admin: u16) -> Result<(), String> {
    let hits = counter(admin, "chaperone_decision_cache_total_result=hit")?;
    if (hits > 0) != setup.remembers {
        return Err(format!(
            "{}: {hits} requests answered by remembered verdicts",
            setup.name
        ));
    }
    Ok(())
}

/// After the load: the floor made its host calls (its first counter counted requests), so
/// its configuration was read and the row measures what it says.
fn check_floor_calls(setup: &Setup, admin: u16) -> Result<(), String> {
    if counter(admin, "floor_counter_0")? == 0 {
        return Err(format!("{}: the floor made no host calls", setup.name));
    }
    Ok(())
}

/// A counter's value from Envoy's admin `/stats`; 0 when it is not there.
fn counter(admin: u16, name: &str) -> Result<u64, String> {
    // The filter is a regular expression in a query string: the name up to any `=`.
    let filter = name.split('=').next().unwrap_or(name);
    let raw =
        format!("GET /stats?filter={filter} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    let stats = try_send(admin, raw.as_bytes(), Duration::from_secs(10))?;
    Ok(String::from_utf8_lossy(&stats.body)
        .lines()
        .find(|line| line.contains(name))
        .and_then(|line| line.rsplit(": ").next())
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0))
}

/// A JSON access log at `path` with the records' key fields (filter state), as Envoy's
/// `access_log` list in flow style.
fn file_access_log(path: &Path) -> String {
    let field = |name: &str| format!("%FILTER_STATE(wasm.chaperone.{name}:PLAIN)%");
    let mut format = serde_json::json!({
        "time": "%START_TIME%",
        "status": "%RESPONSE_CODE%",
        "request_id": "%REQ(X-REQUEST-ID)%",
    });
    for name in ACCESS_LOG_FIELDS {
        format[name] = serde_json::json!(field(name));
    }
    serde_json::json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(),
            "log_format": {"json_format": format},
        },
    }])
    .to_string()
}

/// `VmRSS` of a process, in KiB.
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The benchmark must measure the allow path, never an error path.
fn check_behaviour(setup: &Setup, port: u16, token: &str) -> Result<(), String> {
    let status = |auth: Option<&str>| -> Result<u16, String> {
        let header = auth
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let raw =
            format!("GET {PATH} HTTP/1.1\r\nhost: bench\r\n{header}connection: close\r\n\r\n");
        Ok(try_send(port, raw.as_bytes(), Duration::from_secs(10))?.status)
    };
    let allowed = status(Some(token))?;
    if allowed != 200 {
        return Err(format!(
            "{}: the benchmark request got status {allowed}",
            setup.name
        ));
    }
    if setup.authenticates {
        let anonymous = status(None)?;
        if anonymous != 401 {
            return Err(format!(
                "{}: a request without a token got status {anonymous}",
                setup.name
            ));
        }
    }
    Ok(())
}

fn wrk(port: u16, token: &str, seconds: u32) -> Result<Measurement, String> {
    let output = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{seconds}s"), "--latency", "-H"])
        .arg(format!("authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{port}{PATH}"))
        .output()
        .map_err(|e| format!("wrk: {e} (make bench installs it)"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk reported errors:\n{text}"));
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<Measurement> {
    let value_after = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    Some(Measurement {
        requests_per_s: value_after("Requests/sec:")?.parse().ok()?,
        p50_us: micros(value_after("50%")?)?,
        p99_us: micros(value_after("99%")?)?,
        rss_kib: None,
    })
}

/// wrk prints latencies as `123.45us`, `1.23ms`, `1.02s`, and (never here, one hopes) `1.50m`
/// or `1.00h`.
fn micros(value: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 5] = [
        ("us", 1.0),
        ("ms", 1e3),
        ("s", 1e6),
        ("m", 60e6),
        ("h", 3600e6),
    ];
    UNITS.iter().find_map(|(unit, scale)| {
        let number = value.strip_suffix(unit)?.trim();
        Some(number.parse::<f64>().ok()? * scale)
    })
}

/// What `envoy --version` reports after `version:` (`<commit>/1.40.0/Clean/RELEASE/BoringSSL`).
fn envoy_version(envoy: &Path) -> String {
    Command::new(envoy)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // The line starts with the binary's path, which says nothing about the build.
            text.split_once("version:")
                .map(|(_, version)| version.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn print_table(
    results: &[Measurement],
    wasm: &Path,
    envoy_version: &str,
    load_before: Option<&str>,
    seconds: u32,
) {
    let bare = results.first().map_or(1.0, |m| m.requests_per_s);
    let native = results.get(1).map_or(1.0, |m| m.requests_per_s);
    let bare_rss = results.first().and_then(|m| m.rss_kib);
    println!("| setup | req/s | p50 | p99 | req/s vs bare | req/s vs jwt_authn+RBAC | Envoy RSS | RSS vs bare |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (setup, m) in SETUPS.iter().zip(results) {
        let rss = m.rss_kib.map_or("?".to_owned(), |kib| {
            format!("{:.1} MiB", kib as f64 / 1024.0)
        });
        let rss_ratio = match (m.rss_kib, bare_rss) {
            (Some(kib), Some(bare)) if bare > 0 => format!("{:.2}", kib as f64 / bare as f64),
            _ => "?".to_owned(),
        };
        println!(
            "| {} | {:.0} | {:.0} us | {:.0} us | {:.2} | {:.2} | {rss} | {rss_ratio} |",
            setup.name,
            m.requests_per_s,
            m.p50_us,
            m.p99_us,
            m.requests_per_s / bare,
            m.requests_per_s / native
        );
    }
    let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
    println!();
    println!("command: make bench (BENCH_SECONDS={seconds})");
    println!(
        "per setup: envoy -c <setup>.yaml --concurrency 1, then wrk -t1 -c8 -d3s (warm-up) and"
    );
    println!("  wrk -t1 -c8 -d{seconds}s --latency -H 'authorization: Bearer <token>' http://127.0.0.1:<port>{PATH}");
    println!("chaperone: policies/agent-authz with {REGISTERED_AGENTS} more registered agents, registry enforced, records on, answers remembered as the bundle allows (cache_seconds) unless the row says otherwise");
    println!("envoy: {envoy_version}");
    // Other work on the machine skews every figure; say how busy it was before we started.
    if let Some(load) = load_before {
        println!("load average before the run (1, 5, 15 min): {load}");
    }
    println!("chaperone.wasm: {size} bytes");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latency_units() {
        let sample = "  Latency Distribution\n     50%  210.00us\n     75%    1.20ms\n     90%    2.00ms\n     99%    1.50s\n  200 requests in 1.00s\nRequests/sec:  12345.67\n";
        let m = parse_wrk(sample).unwrap();
        assert_eq!(
            (m.requests_per_s, m.p50_us, m.p99_us),
            (12345.67, 210.0, 1_500_000.0)
        );
        assert_eq!(micros("1.23ms"), Some(1230.0));
        assert_eq!(micros("2.00m"), Some(120e6));
        assert_eq!(micros("fast"), None);
    }

    #[test]
    fn output_without_latency_lines_is_rejected() {
        assert!(
            parse_wrk("Requests/sec: 10.0\n").is_none(),
            "no latency lines"
        );
    }
}
