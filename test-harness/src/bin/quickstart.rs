//! `make run`: Envoy on 127.0.0.1:10000 with chaperone, the example bundle, a demo key set
//! generated here, and a loopback upstream that echoes what it received. Ctrl-C stops it all.

use chaperone_test_harness::cli::{mint_support_bot_token, run_cli, TokenSpec};
use chaperone_test_harness::paths::{try_envoy_bin, try_wasm_path, workspace_root};
use chaperone_test_harness::template::QuickstartPorts;
use chaperone_test_harness::{render_quickstart, EchoUpstream, Envoy};
use std::path::Path;
use std::process::ExitCode;

const LISTEN_PORT: u16 = 10000;
const ADMIN_PORT: u16 = 9901;
const UPSTREAM_PORT: u16 = 10001;
const ISSUER: &str = "https://idp.chaperone.example";
const AUDIENCE: &str = "agents-api";
const KID: &str = "demo-es256";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quickstart: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let root = workspace_root();
    let work = root.join("build/quickstart");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let cli = root.join("target/release/chaperone");
    let envoy = try_envoy_bin()?;
    let wasm = try_wasm_path()?;

    // Keys, then the plugin configuration: the issuer's JWKS plus the packed example bundle.
    run_cli(
        &cli,
        &[
            "token",
            "keygen",
            "--alg",
            "ES256",
            "--kid",
            KID,
            "--out",
            &display(&work),
        ],
    )?;
    let jwks: serde_json::Value =
        serde_json::from_slice(&read(&work.join("jwks.json"))?).map_err(|e| e.to_string())?;
    let base = serde_json::json!({
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks}],
        "policy": {"decision_path": "chaperone/authz/decision"},
        "registry": {"data_path": "chaperone/registry"},
    });
    write(&work.join("base.json"), base.to_string().as_bytes())?;
    let config = run_cli(
        &cli,
        &[
            "bundle",
            &display(&root.join("policies/agent-authz")),
            "--into",
            &display(&work.join("base.json")),
        ],
    )?;
    write(&work.join("chaperone.json"), config.as_bytes())?;
    run_cli(&cli, &["check", &display(&work.join("chaperone.json"))])?;

    let envoy_yaml = render_quickstart(
        &root,
        QuickstartPorts {
            listen: LISTEN_PORT,
            admin: ADMIN_PORT,
            upstream: UPSTREAM_PORT,
        },
        &wasm,
        &config,
    )?;

    let _upstream = EchoUpstream::start_on(UPSTREAM_PORT)
        .map_err(|e| format!("upstream port {UPSTREAM_PORT}: {e}"))?;
    // Writes envoy.yaml, envoy.log and envoy.stdout into `work`.
    let mut envoy = Envoy::start_in(&envoy, &work, &envoy_yaml, ADMIN_PORT, 1)
        .map_err(|e| format!("{e}\n(`make run` installs Envoy into .venv)"))?;
    let log = envoy.log_path();
    let access_log = envoy.access_log_path();

    let key = display(&work.join(format!("{KID}.key.pem")));
    let token = mint_support_bot_token(
        &cli,
        &TokenSpec {
            key_path: &key,
            alg: "ES256",
            kid: KID,
            issuer: ISSUER,
            audience: AUDIENCE,
        },
    )?;
    let token = token.as_str();
    let url = format!("http://127.0.0.1:{LISTEN_PORT}/tickets/42");
    println!(
        "\nchaperone is enforcing on 127.0.0.1:{LISTEN_PORT} (agent `support-bot`, owner alice@example.com, token valid 1 h)\n\n\
         allowed (the upstream echoes what it received, identity headers included):\n  \
         curl -s -H 'authorization: Bearer {token}' {url}\n\n\
         denied by policy (403 no_permission):\n  \
         curl -s -X DELETE -H 'authorization: Bearer {token}' {url}\n\n\
         no token (401 token_missing):\n  \
         curl -si {url}\n\n\
         decision records, one JSON line per request:\n  \
         grep -o '{{\"decision_id\".*' {}\n\n\
         access log (JSON, joined to the records by decision_id):\n  \
         tail -f {}\n\n\
         Ctrl-C stops Envoy and the echo upstream.\n",
        display(&log),
        display(&access_log)
    );
    let status = envoy.wait().map_err(|e| e.to_string())?;
    println!("envoy exited: {status}");
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
