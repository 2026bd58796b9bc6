//! `make bench`: one run, one Envoy worker, wrk on loopback, the same request for every setup:
//! bare Envoy, Envoy's native jwt_authn + RBAC, Envoy + chaperone. Prints requests/s, p50, p99
//! and ratios. Every setup answers with a direct response, so upstream cost is the same.

use chaperone_test_harness::{free_port, http_request, render_template, EnvoyProcess};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const ISSUER: &str = "https://idp.bench.example";
const AUDIENCE: &str = "agents-api";
const KID: &str = "bench-es256";
const PATH: &str = "/tickets/42";

struct Setup {
    name: &'static str,
    template: &'static str,
    /// Whether a request without a token must be rejected (it must, for the auth setups).
    authenticates: bool,
}

const SETUPS: [Setup; 3] = [
    Setup {
        name: "bare Envoy (direct response)",
        template: "bare.yaml",
        authenticates: false,
    },
    Setup {
        name: "jwt_authn (cache on) + RBAC",
        template: "jwt_authn_rbac.yaml",
        authenticates: true,
    },
    Setup {
        name: "chaperone (ES256, example bundle)",
        template: "chaperone.yaml",
        authenticates: true,
    },
];

struct Measurement {
    requests_per_s: f64,
    p50_us: f64,
    p99_us: f64,
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace")?
        .to_path_buf();
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let work = root.join("build/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let cli = root.join("target/release/chaperone");
    let envoy =
        std::env::var_os("ENVOY_BIN").map_or_else(|| root.join(".venv/bin/envoy"), PathBuf::from);
    let wasm = std::env::var_os("CHAPERONE_WASM")
        .map_or_else(|| root.join("dist/chaperone.wasm"), PathBuf::from);

    let work_text = work.display().to_string();
    cli_output(
        &cli,
        &[
            "token", "keygen", "--alg", "ES256", "--kid", KID, "--out", &work_text,
        ],
    )?;
    let jwks = std::fs::read_to_string(work.join("jwks.json")).map_err(|e| e.to_string())?;
    let jwks_value: serde_json::Value = serde_json::from_str(&jwks).map_err(|e| e.to_string())?;
    let base = serde_json::json!({
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks_value}],
        "policy": {"decision_path": "chaperone/authz/decision"},
    });
    std::fs::write(work.join("base.json"), base.to_string()).map_err(|e| e.to_string())?;
    let bundle = root.join("policies/agent-authz").display().to_string();
    let plugin_config = cli_output(
        &cli,
        &[
            "bundle",
            &bundle,
            "--into",
            &format!("{work_text}/base.json"),
        ],
    )?;
    let key = format!("{work_text}/{KID}.key.pem");
    let token = cli_output(
        &cli,
        &[
            "token",
            "mint",
            "--key",
            &key,
            "--alg",
            "ES256",
            "--kid",
            KID,
            "--iss",
            ISSUER,
            "--aud",
            AUDIENCE,
            "--sub",
            "support-bot",
            "--owner",
            "alice@example.com",
            "--ttl",
            "3600",
        ],
    )?;
    let token = token.trim().to_owned();

    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let mut results = Vec::new();
    for setup in &SETUPS {
        let (listen, admin) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
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
                ("WASM_PATH", wasm.display().to_string()),
                ("PLUGIN_CONFIG", quote(&plugin_config)),
            ],
        )?;
        let dir = work.join(setup.template.trim_end_matches(".yaml"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let process = EnvoyProcess::start(&envoy, &config_path, admin, &dir)?;
        check_behaviour(setup, listen, &token)?;
        eprintln!("measuring {} for {seconds} s ...", setup.name);
        let _warm_up = wrk(listen, &token, 3)?;
        let measurement = wrk(listen, &token, seconds)?;
        drop(process);
        results.push(measurement);
    }
    print_table(&results, &wasm, seconds);
    Ok(())
}

fn cli_output(cli: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(cli)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e} (run `make cli`)", cli.display()))?;
    if !output.status.success() {
        return Err(format!(
            "chaperone {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

/// The benchmark must measure the allow path, never an error path.
fn check_behaviour(setup: &Setup, port: u16, token: &str) -> Result<(), String> {
    let request = |auth: Option<&str>| -> Result<String, String> {
        let header = auth
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let raw =
            format!("GET {PATH} HTTP/1.1\r\nhost: bench\r\n{header}connection: close\r\n\r\n");
        let response = http_request(port, raw.as_bytes()).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned())
    };
    let allowed = request(Some(token))?;
    if !allowed.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{}: the benchmark request got `{allowed}`",
            setup.name
        ));
    }
    if setup.authenticates {
        let anonymous = request(None)?;
        if !anonymous.starts_with("HTTP/1.1 401") {
            return Err(format!(
                "{}: a request without a token got `{anonymous}`",
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
    })
}

/// wrk prints latencies as `123.45us`, `1.23ms` or `1.02s`.
fn micros(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1_000.0)
    } else {
        (value.strip_suffix('s')?, 1_000_000.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

fn print_table(results: &[Measurement], wasm: &Path, seconds: u32) {
    let bare = results.first().map_or(1.0, |m| m.requests_per_s);
    let native = results.get(1).map_or(1.0, |m| m.requests_per_s);
    println!("| setup | req/s | p50 | p99 | req/s vs bare | req/s vs jwt_authn+RBAC |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (setup, m) in SETUPS.iter().zip(results) {
        println!(
            "| {} | {:.0} | {:.0} us | {:.0} us | {:.2} | {:.2} |",
            setup.name,
            m.requests_per_s,
            m.p50_us,
            m.p99_us,
            m.requests_per_s / bare,
            m.requests_per_s / native
        );
    }
    let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
    println!("\nwrk -t1 -c8 -d{seconds}s --latency, Envoy --concurrency 1, GET {PATH} with one ES256 agent token");
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
    }
}
