//! Host-level fuzzing (security catalogue F07): the built module under a proxy-wasm host in
//! Node's V8 (`test-harness/host/fuzz.mjs`), with hostile requests, odd property values,
//! failing host calls, callbacks out of order and bodies in pieces. What must hold is listed
//! in that file.
//!
//! `CHAPERONE_FUZZ_SEED` and `CHAPERONE_FUZZ_CASES` change the seed (1) and the number of cases
//! (5000); a failure names its seed and case, which replay with the same module.

use chaperone_test_harness::envoy::scratch_dir;
use chaperone_test_harness::paths::try_wasm_path;
use chaperone_test_harness::{workspace_root, AgentKey};
use serde_json::json;
use std::process::Command;

mod support;
use support::*;

/// Tickets may be read from the loopback (or from a peer the gateway gave no address for),
/// unless the gateway's certificate is the blocked one; allowed answers are remembered. The
/// policy reads both peers, so the plugin asks the host for every property it can.
const PEERS_POLICY: &str = r#"package chaperone.authz

import rego.v1

default decision := {"allowed": false, "reason": "not_permitted", "rule": "default_deny"}

decision := {"allowed": true, "reason": "ticket_read", "rule": "tickets.read", "cache_seconds": 30} if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "tickets"
	not from_elsewhere
	not input.attributes.destination.principal == "spiffe://example.org/blocked"
}

from_elsewhere if not net.cidr_contains("127.0.0.0/8", input.attributes.source.address.socketAddress.address)
"#;

/// Tool calls by their JSON-RPC body (allowed answers remembered): the body gateway's policy.
const BODY_POLICY: &str = r#"package chaperone.authz

import rego.v1

default decision := {"allowed": false, "reason": "tool_not_allowed", "rule": "mcp.tools"}

decision := {"allowed": true, "reason": "tool_allowed", "rule": "mcp.tools", "cache_seconds": 30} if {
	input.parsed_body.method == "tools/call"
	input.parsed_body.params.name in {"search", "read_file"}
}
"#;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_module_survives_hostile_requests_and_a_failing_host() {
    let work = Work(scratch_dir("host-fuzz").unwrap());
    let key = AgentKey::es256("es-1");
    let config = json!({
        "issuers": [issuer(&[&key])],
        "policy": {"decision_path": DECISION_PATH, "name": "fuzz", "revision": "r1",
                   "modules": {"peers.rego": PEERS_POLICY}},
    });
    let config_path = work.0.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let body_config = json!({
        "issuers": [issuer(&[&key])],
        "policy": {"decision_path": DECISION_PATH, "name": "fuzz-body", "revision": "r1",
                   "modules": {"tools.rego": BODY_POLICY}},
        "limits": {"max_request_body_bytes": 256},
    });
    let body_config_path = work.0.join("body-config.json");
    std::fs::write(&body_config_path, body_config.to_string()).unwrap();
    let token_path = work.0.join("token");
    std::fs::write(&token_path, key.mint(&claims())).unwrap();
    let module = try_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let seed = env_number("CHAPERONE_FUZZ_SEED", 1).to_string();
    let cases = env_number("CHAPERONE_FUZZ_CASES", 5000).to_string();

    let output = Command::new("node")
        .arg(workspace_root().join("test-harness/host/fuzz.mjs"))
        .args([&module, &config_path, &body_config_path, &token_path])
        .args([&seed, &cases])
        .output()
        .unwrap_or_else(|e| panic!("node (make tools installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
}
