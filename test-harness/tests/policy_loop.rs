//! End-to-end: the policy author's loop against a real Envoy. A bundle packed by the CLI goes
//! live through ECDS on the next request and a broken one is refused while the previous keeps
//! serving; `chaperone eval` decides exactly as the plugin did for the same requests; and
//! `chaperone replay` finds the decisions a candidate bundle would flip in a log the gateway
//! wrote; builtins whose answers depend on how their crates were built answer alike in both;
//! a policy reads the connection's peers as OPA-Envoy's input has them.

use chaperone_test_harness::envoy::scratch_dir;
use chaperone_test_harness::http::{build_request, send_in_parts};
use chaperone_test_harness::template::MTLS;
use chaperone_test_harness::{
    cli_path, free_ports, get, jwks, workspace_root, AgentKey, Envoy, Gateway, GatewayOptions,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod support;
use support::*;

/// A minimal bundle: tickets may be read; deleting is what the versions disagree about.
fn write_bundle(dir: &Path, revision: &str, deletes: bool, broken: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(".manifest"),
        json!({"revision": revision, "roots": ["chaperone"], "metadata": {"name": "loop"}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("data.json"),
        json!({"chaperone": {"deletes": deletes}}).to_string(),
    )
    .unwrap();
    let rego = if broken {
        "package chaperone.authz\n\ndecision := {\n"
    } else {
        r#"package chaperone.authz

# Remembered for five minutes: a new configuration must forget it all the same.
default decision := {"allowed": false, "reason": "not_permitted", "rule": "default_deny", "cache_seconds": 300}

decision := {"allowed": true, "reason": "ticket_read", "rule": "tickets.read"} if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "tickets"
}

decision := {"allowed": true, "reason": "ticket_delete", "rule": "tickets.delete"} if {
	input.attributes.request.http.method == "DELETE"
	input.parsed_path[0] == "tickets"
	data.chaperone.deletes
}
"#
    };
    std::fs::write(dir.join("authz.rego"), rego).unwrap();
}

fn cli(args: &[&str]) -> Output {
    Command::new(cli_path()).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The configuration with `bundle` packed in by `chaperone bundle --into`.
fn packed(work: &Path, key: &AgentKey, bundle: &Path) -> String {
    let base = json!({"issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks(&[key])}],
                      "policy": {"decision_path": DECISION_PATH}});
    let base_path = work.join("base.json");
    std::fs::write(&base_path, base.to_string()).unwrap();
    let out = cli(&[
        "bundle",
        bundle.to_str().unwrap(),
        "--into",
        base_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn a_new_bundle_decides_the_next_request_and_a_broken_one_is_refused() {
    let work = Work(scratch_dir("policy-loop").unwrap());
    let key = AgentKey::es256("es-1");
    let (v1, v2, broken) = (work.0.join("v1"), work.0.join("v2"), work.0.join("broken"));
    write_bundle(&v1, "r1", false, false);
    write_bundle(&v2, "r2", true, false);
    write_bundle(&broken, "r3", true, true);
    let gateway = Gateway::start_with(&GatewayOptions::ecds(), &packed(&work.0, &key, &v1));
    let pid = gateway.envoy.pid();
    let token = key.mint(&claims());

    for round in 0..2 {
        let response = gateway.with_token("DELETE", "/tickets/1", &token);
        let record = assert_denied(&gateway, &response, 403, "not_permitted");
        assert_eq!(record["bundles"]["loop"]["revision"], "r1");
        // The second time from memory, as the bundle's cache_seconds allows.
        assert_eq!(record["flags"] == json!(["decision_cached"]), round == 1);
    }

    assert!(
        gateway.reconfigure(&packed(&work.0, &key, &v2)),
        "r2 accepted"
    );
    // r2 allows what r1's remembered answer denied: the new configuration starts with none.
    let response = gateway.with_token("DELETE", "/tickets/1", &token);
    assert_eq!(response.status, 200, "{}", response.body_text());
    let id = response.header_str("x-chaperone-decision-id").unwrap();
    let record = gateway.record(&id);
    assert_eq!(
        (
            record["rule"].as_str(),
            record["bundles"]["loop"]["revision"].as_str()
        ),
        (Some("tickets.delete"), Some("r2"))
    );

    // `chaperone bundle` already refuses to pack a broken bundle into an ECDS resource; a
    // configuration that slips through anyway is refused by the plugin and Envoy keeps r2.
    let out = cli(&["check", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "check catches it first");
    let mut config: Value = serde_json::from_str(&packed(&work.0, &key, &v2)).unwrap();
    config["policy"]["revision"] = json!("r3");
    config["policy"]["modules"]["authz.rego"] = json!("package chaperone.authz\n\ndecision := {\n");
    assert!(!gateway.reconfigure(&config.to_string()), "r3 rejected");
    let response = gateway.with_token("DELETE", "/tickets/1", &token);
    assert_eq!(response.status, 200, "r2 still serving");
    let record = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
    assert_eq!(record["bundles"]["loop"]["revision"], "r2");
    assert_eq!(gateway.envoy.pid(), pid, "no restart");
    assert!(
        gateway
            .envoy
            .log_text()
            .contains("policy.modules[authz.rego]"),
        "the rejection names the module"
    );
}

#[test]
fn eval_decides_exactly_as_the_plugin_did() {
    let work = Work(scratch_dir("eval-parity").unwrap());
    let key = AgentKey::es256("es-1");
    // The shipped bundle, with its registry enforced.
    let mut config: Value = serde_json::from_str(&packed(
        &work.0,
        &key,
        &workspace_root().join("policies/agent-authz"),
    ))
    .unwrap();
    config["registry"] = json!({});
    let (config_path, gateway) = saved_and_started(&work.0, &config.to_string());
    let token = key.mint(&claims());
    let stranger = AgentKey::es256("es-1").mint(&claims());

    for (method, path, token) in [
        ("GET", "/tickets/42?expand=comments", token.as_str()),
        ("POST", "/tickets/42/comments", token.as_str()),
        ("DELETE", "/tickets/42", token.as_str()),
        ("GET", "/admin", token.as_str()),
        ("GET", "/tickets/42", stranger.as_str()),
    ] {
        let response = gateway.with_token(method, path, token);
        let plugin = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
        // The bundle does not read the connection's peers, so the host was not asked.
        assert_eq!(plugin["input"]["attributes"].get("source"), None);
        // The same request for eval: every header the plugin saw (the input keeps them, the
        // token aside), the same authority and the same instant.
        let mut args: Vec<String> = vec![
            "eval".into(),
            "--config".into(),
            config_path.display().to_string(),
            "--token".into(),
            token.into(),
            "--request".into(),
            format!("{method} {path}"),
            "--host".into(),
            plugin["request"]["host"].as_str().unwrap().into(),
            "--at".into(),
            plugin["timestamp"].as_str().unwrap().into(),
            "--compact".into(),
        ];
        let seen = plugin["input"]["attributes"]["request"]["http"]["headers"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, value) in &seen {
            args.push("--header".into());
            args.push(format!("{name}: {}", value.as_str().unwrap()));
        }
        if seen.is_empty() {
            // Denied before the policy: no input recorded; x-request-id is still in the record.
            if let Some(id) = plugin["request"]["id"].as_str() {
                args.push("--header".into());
                args.push(format!("x-request-id: {id}"));
            }
        }
        let out = Command::new(cli_path()).args(&args).output().unwrap();
        assert_eq!(
            out.status.success(),
            response.status == 200,
            "{method} {path}: {}",
            text(&out.stderr)
        );
        let offline: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        let same = |record: &Value| {
            let mut record = record.clone();
            let object = record.as_object_mut().unwrap();
            // Per run or per VM, not per decision.
            for field in ["decision_id", "seq", "labels", "metrics"] {
                object.remove(field);
            }
            record
        };
        assert_eq!(same(&offline), same(&plugin), "{method} {path}");
    }
}

/// A configuration, as JSON text, trusting `key`, with one policy module and its data.
fn one_module_config(key: &AgentKey, module: &str, data: Value) -> String {
    json!({
        "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks(&[key])}],
        "policy": {"decision_path": DECISION_PATH, "name": "one-module", "revision": "r1",
                   "modules": {"authz.rego": module}, "data": data}
    })
    .to_string()
}

/// Writes a configuration where `chaperone eval` reads it and starts a gateway with it.
fn saved_and_started(work: &Path, config_text: &str) -> (PathBuf, Gateway) {
    let config_path = work.join("config.json");
    std::fs::write(&config_path, config_text).unwrap();
    (config_path, Gateway::start(config_text))
}

/// `chaperone eval` of `GET path` with `token` and `extra` arguments: whether the request
/// would go upstream, and the record.
fn eval_get(config_path: &Path, token: &str, path: &str, extra: &[&str]) -> (bool, Value) {
    let request = format!("GET {path}");
    let mut args = vec![
        "eval",
        "--config",
        config_path.to_str().unwrap(),
        "--token",
        token,
    ];
    args.extend(["--request", &request, "--compact"]);
    args.extend(extra);
    let out = cli(&args);
    let record = serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|_| panic!("{path}: {}", text(&out.stderr)));
    (out.status.success(), record)
}

/// Each case is a path, `/cases/<name>`, allowed when its check holds.
const BUILTIN_CASES_POLICY: &str = r#"package chaperone.authz

default decision := {"allowed": false, "reason": "not_held", "rule": "default_deny"}

decision := {"allowed": true, "reason": "held", "rule": input.parsed_path[1]} if holds(input.parsed_path[1])

holds("digits") if regex.match(`^\d+$`, "2026")
holds("case_folding") if regex.match(`(?i)^agent$`, "AGENT")
holds("letters") if regex.match(`^\pL+$`, "équipe")
holds("words") if regex.match(`^\w+\s\w+$`, "support bot")
holds("word_boundary") if regex.match(`\bbot\b`, "support bot")
holds("ascii_digits") if not regex.match(`^\d+$`, "١٢٣")
holds("glob") if glob.match("agents.*.read", ["."], "agents.équipe.read")
holds("glob_colon") if {
    glob.match("tickets:*", [":"], "tickets:read")
    not glob.match("tickets:*", [":"], "tickets:admin:write")
}
holds("glob_syntax") if {
    not glob.match("[^a]*", ["."], "bob")
    not glob.match("/api/**/x", ["/"], "/api/x")
    glob.match("a**b", ["."], "a.x.b")
}
holds("count_empty") if strings.count("abc", "") == 4
holds("replace_one_pass") if strings.replace_n({"%2e": ".", "..": ""}, "%2e%2e/admin") == "../admin"
holds("nearest_float") if data.chaperone.numbers.read < data.chaperone.numbers.bound
"#;

/// What `regex.*` and `glob.match` answer, and the numbers read from a configuration, depend
/// on crate features: Unicode classes and case folding, floats parsed to the nearest value.
/// The CLI's other dependencies turn them on; the plugin must answer as `chaperone test` and
/// `eval` do, and as OPA does: every case holds. Five are answers chaperone gives itself
/// (core/src/opa_builtins.rs): `ascii_digits` (RE2's `\d` is ASCII; regorus's is Unicode),
/// `glob_colon` and `glob_syntax` (OPA's glob rules, not globset's: a `:` delimiter stops `*`,
/// `[^a]` is not a negation, `/**/` does not match `/`, `**` crosses delimiters),
/// `count_empty` (regorus's `strings.count` panicked, aborting the VM, so every later case
/// failed too) and `replace_one_pass` (Go's replacer; regorus replaced pair after pair).
#[test]
fn builtins_answer_in_the_plugin_as_in_the_cli() {
    let work = Work(scratch_dir("builtin-parity").unwrap());
    let key = AgentKey::es256("es-1");
    // 3.6705911238380268e-7 is below 3.670591123838027e-7, but a fast float parser reads it
    // above. Written by hand: a JSON writer would print the number it parsed.
    let config_text = one_module_config(
        &key,
        BUILTIN_CASES_POLICY,
        json!({"chaperone": {"numbers": {"read": "READ", "bound": "BOUND"}}}),
    )
    .replace(r#""READ""#, "3.6705911238380268e-7")
    .replace(r#""BOUND""#, "3.670591123838027e-7");
    let (config_path, gateway) = saved_and_started(&work.0, &config_text);
    let token = key.mint(&claims());

    // Twice: the second time the patterns come from the cache of compiled ones.
    let cases = [
        "digits",
        "case_folding",
        "letters",
        "words",
        "word_boundary",
        "ascii_digits",
        "glob",
        "glob_colon",
        "glob_syntax",
        "count_empty",
        "replace_one_pass",
        "nearest_float",
        "unknown",
    ];
    for case in cases.iter().chain(cases.iter()) {
        let path = format!("/cases/{case}");
        let response = gateway.with_token("GET", &path, &token);
        let plugin = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
        let (offline_allowed, offline) = eval_get(&config_path, &token, &path, &[]);
        let held = *case != "unknown";
        assert_eq!(
            (response.status, plugin["reason"].as_str()),
            (
                if held { 200 } else { 403 },
                Some(if held { "held" } else { "not_held" })
            ),
            "{case} in the plugin: {}",
            response.body_text()
        );
        assert_eq!(
            (offline_allowed, offline["reason"].as_str()),
            (held, plugin["reason"].as_str()),
            "{case} in `chaperone eval`"
        );
    }
}

#[test]
fn replay_finds_the_flips_in_a_log_the_gateway_wrote() {
    let work = Work(scratch_dir("replay").unwrap());
    let key = AgentKey::es256("es-1");
    let (v1, v2) = (work.0.join("v1"), work.0.join("v2"));
    write_bundle(&v1, "r1", false, false);
    write_bundle(&v2, "r2", true, false);
    let gateway = Gateway::start(&packed(&work.0, &key, &v1));
    let token = key.mint(&claims());
    for (method, path) in [
        ("GET", "/tickets/1"),
        ("DELETE", "/tickets/1"),
        ("DELETE", "/tickets/2"),
        ("PUT", "/tickets/3"),
    ] {
        gateway.with_token(method, path, &token);
    }
    gateway.request("GET", "/tickets/1", &[]);
    let ids: Vec<String> = gateway
        .envoy
        .decision_records()
        .unwrap()
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);
    let log = gateway.envoy.log_path();
    let out = cli(&[
        "replay",
        "--records",
        log.to_str().unwrap(),
        "--bundle",
        v2.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "flips: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["records"].as_u64(),
            report["replayed"].as_u64(),
            report["not_replayable"].as_u64()
        ),
        (Some(5), Some(4), Some(1))
    );
    assert_eq!(report["flips"], 2, "{report}");
    let group = &report["groups"][0];
    assert_eq!(
        (
            group["agent"].as_str(),
            group["direction"].as_str(),
            group["rule_before"].as_str(),
            group["rule_after"].as_str()
        ),
        (
            Some(AGENT),
            Some("deny -> allow"),
            Some("default_deny"),
            Some("tickets.delete")
        )
    );
    let flipped: Vec<&str> = group["decision_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        flipped,
        [ids[1].as_str(), ids[2].as_str()],
        "exactly the two deletes"
    );
}

/// Allowed when the client's address is in the network the path names, on the loopback.
const PEERS_POLICY: &str = r#"package chaperone.authz

import rego.v1

default decision := {"allowed": false, "reason": "outside_network", "rule": "peers"}

decision := {"allowed": true, "reason": "inside_network", "rule": "peers"} if {
	net.cidr_contains(data.networks[input.parsed_path[0]], input.attributes.source.address.socketAddress.address)
	input.attributes.destination.address.socketAddress.address == "127.0.0.1"
}
"#;

/// OPA-Envoy policies allow by network: `input.attributes.source` and `.destination` are the
/// connection's ends as Envoy saw them, read from the host because the policy reads them,
/// kept in the record's input, and given to `chaperone eval` by `--source`/`--destination`.
#[test]
fn a_policy_reads_the_connections_peers_as_opa_envoy_gives_them() {
    let work = Work(scratch_dir("peers").unwrap());
    let key = AgentKey::es256("es-1");
    let config_text = one_module_config(
        &key,
        PEERS_POLICY,
        json!({"networks": {"loopback": "127.0.0.0/8", "private": "10.0.0.0/8"}}),
    );
    let (config_path, gateway) = saved_and_started(&work.0, &config_text);
    let token = key.mint(&claims());

    for (path, status, reason) in [
        ("/loopback", 200, "inside_network"),
        ("/private", 403, "outside_network"),
    ] {
        let response = gateway.with_token("GET", path, &token);
        let record = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
        assert_eq!(
            (response.status, record["reason"].as_str()),
            (status, Some(reason)),
            "{path}: {}",
            response.body_text()
        );
        let attributes = &record["input"]["attributes"];
        let source = &attributes["source"]["address"]["socketAddress"];
        let destination = &attributes["destination"]["address"]["socketAddress"];
        assert_eq!(source["address"], "127.0.0.1", "{attributes}");
        assert!(
            source["portValue"].as_u64().is_some_and(|p| p > 0),
            "{attributes}"
        );
        assert_eq!(
            destination,
            &json!({"address": "127.0.0.1", "portValue": gateway.port}),
            "{attributes}"
        );
        // A plain connection names neither end.
        assert_eq!(
            (
                attributes["source"].get("principal"),
                attributes["destination"].get("principal")
            ),
            (None, None),
            "{attributes}"
        );

        let destination_address = format!("127.0.0.1:{}", gateway.port);
        let offline = |source_address: &str| {
            let peers = [
                "--source",
                source_address,
                "--destination",
                &destination_address,
            ];
            eval_get(&config_path, &token, path, &peers)
        };
        let seen = format!("127.0.0.1:{}", source["portValue"]);
        let (allowed, offline_record) = offline(&seen);
        assert_eq!(allowed, status == 200, "{path}");
        assert_eq!(
            offline_record["input"]["attributes"]["source"],
            attributes["source"]
        );
        assert_eq!(
            offline_record["input"]["attributes"]["destination"],
            attributes["destination"]
        );
        // Without a source, the network check has nothing to hold for, and the record says
        // the policy read a peer it did not get. The gateway's records do not say so.
        let (allowed, without) = eval_get(&config_path, &token, path, &[]);
        assert!(!allowed, "{path} without a source");
        assert_eq!(without["flags"], json!(["peer_unavailable"]));
        assert_eq!(record.get("flags"), None, "{record}");
        let (allowed, _) = offline("[2001:db8::1]:443");
        assert!(!allowed, "{path} from outside");
    }
    // A client claiming another address in x-forwarded-for is still where it connects from:
    // the templates set `use_remote_address` (without it, Envoy would take the header's).
    let bearer = format!("Bearer {token}");
    let spoofed = gateway.request(
        "GET",
        "/private",
        &[
            ("authorization", bearer.as_bytes()),
            ("x-forwarded-for", b"10.1.2.3"),
        ],
    );
    let record = gateway.record(&spoofed.header_str("x-chaperone-decision-id").unwrap());
    assert_eq!(
        (
            spoofed.status,
            &record["input"]["attributes"]["source"]["address"]["socketAddress"]["address"]
        ),
        (403, &json!("127.0.0.1"))
    );
    let out = cli(&[
        "eval",
        "--config",
        config_path.to_str().unwrap(),
        "--request",
        "GET /x",
        "--source",
        "localhost:80",
    ]);
    assert!(
        text(&out.stderr).contains("--source `localhost:80`"),
        "{}",
        text(&out.stderr)
    );
}

/// The gateway's own identity, in the certificate its mTLS listener presents.
const GATEWAY_SPIFFE_ID: &str = "spiffe://example.org/ns/edge/sa/gateway";

/// Allowed when the client certificate names the workload the path names, at this gateway.
const PRINCIPALS_POLICY: &str = r#"package chaperone.authz

import rego.v1

default decision := {"allowed": false, "reason": "unknown_workload", "rule": "workloads"}

decision := {"allowed": true, "reason": "known_workload", "rule": "workloads"} if {
	input.attributes.source.principal == data.workloads[input.parsed_path[0]]
	input.attributes.destination.principal == "spiffe://example.org/ns/edge/sa/gateway"
}
"#;

/// A certificate and its key, as PEM files in `dir` named `<name>.crt` and `<name>.key`.
struct PemFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// A test CA, made afresh, that signs the certificates of one test.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl TestCa {
    fn new(dir: &Path) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "chaperone test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        std::fs::write(dir.join("ca.crt"), issuer.pem()).unwrap();
        TestCa {
            issuer,
            dir: dir.to_path_buf(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A leaf certificate with these subject alternative names and subject attributes.
    fn sign(
        &self,
        name: &str,
        sans: Vec<rcgen::SanType>,
        subject: &[(rcgen::DnType, &str)],
    ) -> PemFiles {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = PemFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

fn uri(text: &str) -> rcgen::SanType {
    rcgen::SanType::URI(text.try_into().unwrap())
}

fn dns(text: &str) -> rcgen::SanType {
    rcgen::SanType::DnsName(text.try_into().unwrap())
}

/// One kind of client the client Envoy plays: requests under `/<name>/` go to the gateway on
/// `gateway` over TLS, presenting `certificate` when there is one.
struct TlsClient<'a> {
    name: &'a str,
    gateway: u16,
    certificate: Option<&'a PemFiles>,
}

/// An Envoy that plays the clients: plain HTTP in on `listen`, and a route per client.
fn client_envoy_config(listen: u16, admin: u16, clients: &[TlsClient]) -> String {
    let routes: String = clients
        .iter()
        .map(|client| {
            let name = client.name;
            format!(
                "              - {{match: {{prefix: \"/{name}/\"}}, route: {{cluster: {name}}}}}\n"
            )
        })
        .collect();
    let clusters: String = clients
        .iter()
        .map(|client| {
            let certificates = client.certificate.map_or(String::new(), |files| {
                format!(
                    "          tls_certificates: [{{certificate_chain: {{filename: {}}}, private_key: {{filename: {}}}}}]\n",
                    files.cert.display(),
                    files.key.display()
                )
            });
            format!(
                r#"  - name: {name}
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {gateway}}}}}}}}}]}}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
{certificates}          alpn_protocols: [http/1.1]
"#,
                name = client.name,
                gateway = client.gateway,
            )
        })
        .collect();
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: clients
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: clients
          route_config:
            virtual_hosts:
            - name: clients
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{clusters}"#
    )
}

/// The client Envoy on free ports (again, if another process took one first): its listener's.
fn start_client_envoy(clients: &[TlsClient]) -> (Envoy, u16) {
    let mut last_error = String::new();
    for _ in 0..3 {
        let ports = free_ports(2).unwrap();
        match Envoy::start(&client_envoy_config(ports[0], ports[1], clients), ports[1]) {
            Ok(envoy) => return (envoy, ports[0]),
            Err(error) if error.contains("Address already in use") => last_error = error,
            Err(error) => panic!("{error}"),
        }
    }
    panic!("{last_error}")
}

/// OPA-Envoy policies allow by workload identity: behind mutual TLS (the shipped
/// `envoy-config/mtls.yaml`), `input.attributes.source.principal` is the client certificate's
/// first URI SAN, else its first DNS SAN, else its subject, and `destination.principal` the
/// gateway's own, as Envoy's ext_authz gives them; kept in the record, and given to
/// `chaperone eval` by `--source-principal`/`--destination-principal`. A client without a
/// certificate (where the listener lets one in) has no principal.
#[test]
fn a_policy_reads_the_tls_principals_as_opa_envoy_gives_them() {
    let work = Work(scratch_dir("principals").unwrap());
    let ca = TestCa::new(&work.0);
    let server = ca.sign(
        "gateway",
        vec![uri(GATEWAY_SPIFFE_ID), dns("localhost")],
        &[(rcgen::DnType::CommonName, "gateway")],
    );
    let bot_id = "spiffe://example.org/ns/agents/sa/support-bot";
    let by_uri = ca.sign(
        "by-uri",
        vec![
            dns("support-bot.agents.example.org"),
            uri(bot_id),
            uri("spiffe://example.org/second"),
        ],
        &[(rcgen::DnType::CommonName, "support-bot")],
    );
    let by_dns = ca.sign(
        "by-dns",
        vec![
            dns("deploy-bot.agents.example.org"),
            dns("second.example.org"),
        ],
        &[(rcgen::DnType::CommonName, "deploy-bot")],
    );
    let by_subject = ca.sign(
        "by-subject",
        Vec::new(),
        &[
            (rcgen::DnType::OrganizationName, "Example Agents"),
            (rcgen::DnType::CommonName, "report-bot"),
        ],
    );

    let key = AgentKey::es256("es-1");
    let subject = "CN=report-bot,O=Example Agents";
    let config_text = one_module_config(
        &key,
        PRINCIPALS_POLICY,
        json!({"workloads": {
            "uri": bot_id,
            "dns": "deploy-bot.agents.example.org",
            "subject": subject,
            "other": "spiffe://example.org/ns/agents/sa/other-bot",
        }}),
    );
    let config_path = work.0.join("config.json");
    std::fs::write(&config_path, &config_text).unwrap();
    let pem = |path: &PathBuf| path.display().to_string();
    let strict = GatewayOptions {
        template: MTLS,
        extra: vec![
            ("SERVER_CERT_PATH", pem(&server.cert)),
            ("SERVER_KEY_PATH", pem(&server.key)),
            ("CLIENT_CA_PATH", pem(&ca.cert_path())),
        ],
        ..GatewayOptions::default()
    };
    let gateway = Gateway::start_with(&strict, &config_text);
    // The same listener letting clients in without a certificate (checked when there is one).
    let lenient = GatewayOptions {
        edits: vec![(
            "require_client_certificate: true",
            "require_client_certificate: false",
        )],
        ..strict.clone()
    };
    let lenient_gateway = Gateway::start_with(&lenient, &config_text);
    let client = |name, certificate| TlsClient {
        name,
        gateway: gateway.port,
        certificate: Some(certificate),
    };
    let (clients, port) = start_client_envoy(&[
        client("uri", &by_uri),
        client("dns", &by_dns),
        client("subject", &by_subject),
        client("other", &by_uri),
        TlsClient {
            name: "anonymous",
            gateway: lenient_gateway.port,
            certificate: None,
        },
    ]);
    let token = key.mint(&claims());
    let bearer = format!("Bearer {token}");

    for (path, status, principal) in [
        ("/uri/tickets", 200, Some(bot_id)),
        ("/dns/tickets", 200, Some("deploy-bot.agents.example.org")),
        ("/subject/tickets", 200, Some(subject)),
        ("/other/tickets", 403, Some(bot_id)),
        ("/anonymous/tickets", 403, None),
    ] {
        let response = get(port, "GET", path, &[("authorization", bearer.as_bytes())]);
        let Some(decision_id) = response.header_str("x-chaperone-decision-id") else {
            panic!(
                "{path}: {} {}\n{}",
                response.status,
                response.body_text(),
                clients.log_tail(20)
            );
        };
        let decided_by = if principal.is_some() {
            &gateway
        } else {
            &lenient_gateway
        };
        let record = decided_by.record(&decision_id);
        let attributes = &record["input"]["attributes"];
        assert_eq!(
            (response.status, attributes["source"]["principal"].as_str()),
            (status, principal),
            "{path}: {attributes}"
        );
        assert_eq!(
            attributes["destination"]["principal"], GATEWAY_SPIFFE_ID,
            "{attributes}"
        );
        assert_eq!(
            attributes["source"]["address"]["socketAddress"]["address"], "127.0.0.1",
            "{attributes}"
        );

        let mut peers = vec!["--destination-principal", GATEWAY_SPIFFE_ID];
        if let Some(principal) = principal {
            peers.extend(["--source-principal", principal]);
        }
        let (allowed, offline) = eval_get(&config_path, &token, path, &peers);
        assert_eq!(allowed, status == 200, "{path}");
        assert_eq!(
            offline["input"]["attributes"]["source"].get("principal"),
            attributes["source"].get("principal")
        );
        assert_eq!(
            offline["input"]["attributes"]["destination"],
            json!({"principal": GATEWAY_SPIFFE_ID})
        );
    }
}

/// An MCP server's tools by the JSON-RPC body of each call: an agent may call the tools its
/// entry in `data.tools` names; uploads go through whatever their body; a body longer than
/// the policy is given is refused where the policy needs it.
const MCP_POLICY: &str = r#"package chaperone.authz

import rego.v1

default decision := {"allowed": false, "reason": "tool_not_allowed", "rule": "mcp.tools"}

decision := {"allowed": true, "reason": "upload", "rule": "uploads"} if {
	input.parsed_path[0] == "uploads"
} else := {"allowed": false, "http_status": 413, "reason": "body_too_large", "rule": "mcp.size"} if {
	input.truncated_body
} else := {"allowed": true, "reason": "tool_allowed", "rule": "mcp.tools"} if {
	input.parsed_path == ["mcp"]
	input.parsed_body.method == "tools/call"
	input.parsed_body.params.name in data.tools[input.agent.id]
}
"#;

/// The quickstart's router, with Envoy's buffer filter before it (README, "Request bodies").
const BUFFER_THEN_ROUTER: &str = "          - name: envoy.filters.http.buffer
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1048576
          - name: envoy.filters.http.router
";

/// The head of `POST /mcp` with this bearer value and a JSON body of `length` bytes.
fn json_post_head(port: u16, bearer: &str, length: usize) -> Vec<u8> {
    let length = length.to_string();
    build_request(
        "POST",
        "/mcp",
        port,
        &[
            ("authorization", bearer.as_bytes()),
            ("content-type", b"application/json"),
            ("content-length", length.as_bytes()),
        ],
    )
}

/// A JSON-RPC `tools/call` of `tool` with these arguments.
fn tool_call(tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
    .to_string()
}

/// With `limits.max_request_body_bytes`, a policy that reads the body gets it, as OPA-Envoy's
/// `input.parsed_body`, `input.truncated_body` and `input.attributes.request.http.body`: the
/// gateway holds the request until the body is in (or more of it than the policy is given),
/// decides, and the upstream gets the body whole.
#[test]
fn a_policy_reads_the_request_body_as_opa_envoy_gives_it() {
    const LIMIT: usize = 1024;
    let work = Work(scratch_dir("request-body").unwrap());
    let key = AgentKey::es256("es-1");
    let mut config: Value = serde_json::from_str(&one_module_config(
        &key,
        MCP_POLICY,
        json!({"tools": {AGENT: ["search", "read_file"]}}),
    ))
    .unwrap();
    config["limits"] = json!({"max_request_body_bytes": LIMIT});
    let config_text = config.to_string();
    let config_path = work.0.join("config.json");
    std::fs::write(&config_path, &config_text).unwrap();
    // As README, "Request bodies", asks: Envoy's buffer filter after chaperone holds the
    // request back from the router until chaperone has decided on its body.
    let options = GatewayOptions {
        edits: vec![(
            "          - name: envoy.filters.http.router\n",
            BUFFER_THEN_ROUTER,
        )],
        ..GatewayOptions::default()
    };
    let gateway = Gateway::start_with(&options, &config_text);
    let token = key.mint(&claims());
    let bearer = format!("Bearer {token}");
    let post = |path: &str, content_type: &str, body: &[u8]| {
        let length = body.len().to_string();
        let mut raw = build_request(
            "POST",
            path,
            gateway.port,
            &[
                ("authorization", bearer.as_bytes()),
                ("content-type", content_type.as_bytes()),
                ("content-length", length.as_bytes()),
                ("x-chaperone-owner", b"mallory@example.com"),
            ],
        );
        raw.extend_from_slice(body);
        gateway.send(&raw)
    };

    // A token in the call's arguments is masked in the record, as anywhere else.
    let search = tool_call("search", json!({"query": "open tickets", "token": token}));
    let response = post("/mcp", "application/json", search.as_bytes());
    assert_eq!(response.status, 200, "{}", response.body_text());
    let upstream = gateway.upstream.requests();
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.body,
        search.as_bytes(),
        "the upstream gets the body whole"
    );
    assert_eq!(seen.header_strings("x-chaperone-agent-id"), [AGENT]);
    assert_eq!(
        seen.header_strings("x-chaperone-owner"),
        [OWNER],
        "not the client's"
    );
    assert!(
        seen.header_values("authorization").is_empty(),
        "the token stays behind"
    );
    let record = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
    let input = &record["input"];
    assert_eq!(
        (
            &input["parsed_body"]["params"]["name"],
            &input["truncated_body"]
        ),
        (&json!("search"), &json!(false)),
        "{input}"
    );
    let logged = record.to_string();
    assert!(!logged.contains(&token), "{logged}");
    assert_eq!(
        input["parsed_body"]["params"]["arguments"]["token"],
        "[REDACTED-JWT]"
    );

    // A tool the agent may not call; the same call offline.
    let delete = tool_call("delete_repo", json!({"repo": "payments"}));
    let upstream_before = gateway.upstream.request_count();
    let response = post("/mcp", "application/json; charset=utf-8", delete.as_bytes());
    let record = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
    assert_eq!(
        (response.status, record["reason"].as_str()),
        (403, Some("tool_not_allowed"))
    );
    assert_eq!(
        gateway.upstream.request_count(),
        upstream_before,
        "nothing reaches the upstream"
    );
    for (body, allowed) in [(&search, true), (&delete, false)] {
        let out = cli(&[
            "eval",
            "--config",
            config_path.to_str().unwrap(),
            "--token",
            &token,
            "--request",
            "POST /mcp",
            "--header",
            "content-type: application/json",
            "--body",
            body,
            "--compact",
        ]);
        assert_eq!(out.status.success(), allowed, "{}", text(&out.stderr));
    }

    // Sent in pieces: the decision waits for the last one.
    let call = tool_call("read_file", json!({"path": "README.md"}));
    let (first, rest) = call.as_bytes().split_at(call.len() / 2);
    let mut head = build_request(
        "POST",
        "/mcp",
        gateway.port,
        &[
            ("authorization", bearer.as_bytes()),
            ("content-type", b"application/json"),
            ("transfer-encoding", b"chunked"),
        ],
    );
    let chunk = |bytes: &[u8]| {
        let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
        framed.extend_from_slice(bytes);
        framed.extend_from_slice(b"\r\n");
        framed
    };
    head.extend(chunk(first));
    let mut tail = chunk(rest);
    tail.extend_from_slice(b"0\r\n\r\n");
    let response = send_in_parts(
        gateway.port,
        &[&head, &tail],
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert_eq!(
        gateway.upstream.requests().last().unwrap().body,
        call.as_bytes()
    );

    // Longer than the policy is given: decided on the first LIMIT bytes, marked truncated,
    // never parsed. The policy refuses it on /mcp and lets an upload through, whose upstream
    // still gets every byte.
    let long_call = tool_call("search", json!({"query": "x".repeat(4 * LIMIT)}));
    let upstream_before = gateway.upstream.request_count();
    let response = post("/mcp", "application/json", long_call.as_bytes());
    let record = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
    assert_eq!(
        (response.status, &record["input"]["truncated_body"]),
        (413, &json!(true))
    );
    assert_eq!(gateway.upstream.request_count(), upstream_before);
    assert_eq!(record["input"].get("parsed_body"), None);
    assert_eq!(
        record["input"]["attributes"]["request"]["http"]["body"]
            .as_str()
            .map(str::len),
        Some(LIMIT)
    );
    let upload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let response = post("/uploads/blob", "application/octet-stream", &upload);
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert_eq!(gateway.upstream.requests().last().unwrap().body, upload);

    // No body: nothing to parse.
    let response = gateway.with_token("GET", "/mcp", &token);
    assert_eq!(response.status, 403);

    // Declared JSON that is not one JSON document: refused, as OPA-Envoy refuses it, rather
    // than left for a rule to read otherwise than the upstream's parser.
    for junk in [
        format!("{search}{search}"),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        r#"{"method": "tools/call", "n": 1e400}"#.to_owned(),
    ] {
        let response = post("/mcp", "application/json", junk.as_bytes());
        assert_eq!(
            (response.status, response.json()["reason"].as_str()),
            (400, Some("request_body_invalid"))
        );
    }
    // A client that goes away before its body is in: the request gets its record.
    {
        use std::io::Write;
        let head = json_post_head(gateway.port, &bearer, 100);
        let mut client = std::net::TcpStream::connect(("127.0.0.1", gateway.port)).unwrap();
        client.write_all(&head).unwrap();
        client.write_all(b"{\"method\":").unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let abandoned = loop {
        let records = gateway.envoy.decision_records().unwrap();
        if let Some(record) = records
            .into_iter()
            .find(|r| r["reason"] == "request_body_incomplete")
        {
            break record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record for the abandoned request"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(abandoned["result"]["allowed"], false);
    drop(gateway);

    // Without the buffer filter the router may answer on the headers alone (here a direct
    // response): that answer is replaced, never served for a request not yet decided.
    let early = GatewayOptions {
        edits: vec![(
            "                route: {cluster: upstream}\n",
            "                direct_response: {status: 200, body: {inline_string: \"served on headers\"}}\n",
        )],
        ..GatewayOptions::default()
    };
    let gateway = Gateway::start_with(&early, &config_text);
    let delete = tool_call("delete_repo", json!({"repo": "payments"}));
    let head = json_post_head(gateway.port, &bearer, delete.len());
    let response = send_in_parts(
        gateway.port,
        &[&head, delete.as_bytes()],
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        (
            response.status,
            response.body_text().contains("served on headers")
        ),
        (500, false),
        "{}",
        response.body_text()
    );
    let record = gateway.record(&response.header_str("x-chaperone-decision-id").unwrap());
    assert_eq!(record["reason"], "answered_before_decision");
}
