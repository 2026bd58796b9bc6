//! The policy author's loop through the real CLI: check a bundle and a configuration, test
//! with coverage (a deliberately failing test included), evaluate requests offline, pack an
//! ECDS resource, and replay recorded decisions against a candidate bundle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ISSUER: &str = "https://idp.test";

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn chaperone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("chaperone-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a directory tree (bundles are small).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A key, a base configuration with the registry, and the shipped bundle packed into it.
fn configured(scratch: &Scratch) -> (String, String) {
    let keys = scratch.path("keys");
    let out = chaperone(&[
        "token", "keygen", "--alg", "ES256", "--kid", "k1", "--out", &keys,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{keys}/jwks.json")).unwrap())
            .unwrap();
    let base = json!({"issuers": [{"issuer": ISSUER, "audiences": ["agents-api"], "local_jwks": jwks}],
                      "policy": {"decision_path": "chaperone/authz/decision"},
                      "registry": {}});
    std::fs::write(scratch.path("base.json"), base.to_string()).unwrap();
    let bundle = workspace().join("policies/agent-authz");
    let packed = chaperone(&[
        "bundle",
        bundle.to_str().unwrap(),
        "--into",
        &scratch.path("base.json"),
    ]);
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    std::fs::write(scratch.path("config.json"), &packed.stdout).unwrap();
    (scratch.path("config.json"), format!("{keys}/k1.key.pem"))
}

fn mint(key: &str, sub: &str) -> String {
    mint_with(key, sub, &["--ttl", "600"])
}

fn mint_with(key: &str, sub: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "token",
        "mint",
        "--key",
        key,
        "--alg",
        "ES256",
        "--kid",
        "k1",
        "--iss",
        ISSUER,
        "--aud",
        "agents-api",
        "--sub",
        sub,
    ];
    args.extend_from_slice(extra);
    let out = chaperone(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// A token's header and payload, as JSON text (so a repeated member shows).
fn parts(token: &str) -> (String, String) {
    let decode = |part: &str| {
        let bytes = chaperone_core::encoding::base64url_decode(part.as_bytes()).unwrap();
        String::from_utf8(bytes).unwrap()
    };
    let mut split = token.split('.');
    (decode(split.next().unwrap()), decode(split.next().unwrap()))
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // A bundle larger than a pipe's buffer, so the write meets the closed end however the
    // two processes are scheduled.
    let scratch = Scratch::new("pipe");
    let bundle = scratch.path("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(format!("{bundle}/p.rego"), "package p\nallow := true\n").unwrap();
    let data = json!({"filler": "x".repeat(256 * 1024)});
    std::fs::write(format!("{bundle}/data.json"), data.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["bundle", &bundle])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn mint_makes_the_tokens_the_reason_codes_need() {
    let scratch = Scratch::new("mint");
    let (config, key) = configured(&scratch);
    // Registered claims given with --claim replace the token's own, once each.
    let token = mint_with(
        &key,
        "support-bot",
        &["--claim", "exp=1000", "--claim", "aud=[\"x\",\"y\"]"],
    );
    let (_, payload) = parts(&token);
    assert_eq!(payload.matches("\"exp\"").count(), 1, "{payload}");
    let claims: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(claims["exp"], 1000);
    let (_, numeric) = parts(&mint_with(&key, "support-bot", &["--claim", "jti=42"]));
    assert!(
        numeric.contains("\"jti\":\"42\""),
        "a string, as typed: {numeric}"
    );
    assert_eq!(claims["aud"].as_array().map(Vec::len), Some(2));
    let (_, record) = eval(&config, &token, "GET /tickets/42", &[]);
    assert_eq!(record["reason"], "token_expired");
    // A negative --ttl: expired that long ago; null leaves a claim out.
    for (extra, reason) in [
        (["--ttl", "-120"], "token_expired"),
        (["--claim", "exp=null"], "claim_invalid"),
    ] {
        let token = mint_with(&key, "support-bot", &extra);
        let (_, record) = eval(&config, &token, "GET /tickets/42", &[]);
        assert_eq!(record["reason"], reason, "{extra:?}");
    }
    // --typ sets the header's typ (transaction tokens need txntoken+jwt).
    let token = mint_with(
        &key,
        "support-bot",
        &["--typ", "txntoken+jwt", "--claim", "txn=T-1"],
    );
    let (header, payload) = parts(&token);
    assert!(header.contains("\"typ\":\"txntoken+jwt\""), "{header}");
    assert!(payload.contains("\"txn\":\"T-1\""), "{payload}");
    let bad = chaperone(&[
        "token", "mint", "--key", &key, "--alg", "ES256", "--kid", "k1", "--iss", ISSUER, "--aud",
        "a", "--sub", "s", "--claim", "iat=soon",
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("--claim iat= must be Unix seconds or null"));
}

fn eval(config: &str, token: &str, request: &str, extra: &[&str]) -> (bool, Value) {
    let mut args = vec![
        "eval",
        "--config",
        config,
        "--token",
        token,
        "--request",
        request,
        "--compact",
    ];
    args.extend_from_slice(extra);
    let out = chaperone(&args);
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 1),
        "{}",
        text(&out.stderr)
    );
    (
        out.status.success(),
        serde_json::from_str(text(&out.stdout).trim()).unwrap(),
    )
}

#[test]
fn check_reports_schema_positions_parser_fields_and_rego_locations() {
    let scratch = Scratch::new("check");
    let (config, _) = configured(&scratch);
    // An Envoy file where chaperone's configuration belongs: refused, with a hint.
    let envoy = workspace().join("envoy-config/quickstart.yaml");
    let out = chaperone(&["check", envoy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("looks like an Envoy or Kong YAML file"),
        "{}",
        text(&out.stderr)
    );
    let out = chaperone(&["check", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (1 issuer(s)"));

    let mut broken: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    broken["issuers"][0]["clock_skew_seconds"] = json!(900);
    std::fs::write(scratch.path("broken.json"), broken.to_string()).unwrap();
    let out = chaperone(&["check", &scratch.path("broken.json")]);
    assert_eq!(out.status.code(), Some(1));
    let errors = text(&out.stderr);
    assert!(errors.contains("issuers[0].clock_skew_seconds"), "{errors}");
    assert!(
        errors.contains("schema: at /issuers/0/clock_skew_seconds"),
        "{errors}"
    );

    std::fs::write(
        scratch.path("syntax.json"),
        "{\"issuers\": [\n  {\"issuer\": }]}",
    )
    .unwrap();
    let out = chaperone(&["check", &scratch.path("syntax.json")]);
    assert!(
        text(&out.stderr).contains("line 2 column"),
        "{}",
        text(&out.stderr)
    );

    // A bundle directory: every module compiles, the decision rule exists.
    let bundle = workspace().join("policies/agent-authz");
    let out = chaperone(&[
        "check",
        bundle.to_str().unwrap(),
        "--decision-path",
        "chaperone/authz/decision",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // What an answer with cache_seconds is keyed on: what the shipped modules read.
    assert!(
        text(&out.stdout).contains(
            "reads input.agent.id, input.agent.purpose, input.attributes.request.http.method, \
             input.grants, input.parsed_path, input.parsed_query (the clock aside)"
        ),
        "{}",
        text(&out.stdout)
    );
    let copy = scratch.0.join("bundle");
    copy_tree(&bundle, &copy);
    std::fs::write(
        copy.join("broken.rego"),
        "package chaperone.broken\n\nallow if {\n",
    )
    .unwrap();
    let out = chaperone(&["check", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("broken.rego:"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_file(copy.join("broken.rego")).unwrap();
    let out = chaperone(&[
        "check",
        copy.to_str().unwrap(),
        "--decision-path",
        "chaperone/authz/decison",
    ]);
    assert_eq!(out.status.code(), Some(1), "a misspelt decision path");
}

#[test]
fn test_with_coverage_and_a_deliberately_failing_test() {
    let scratch = Scratch::new("coverage");
    let copy = scratch.0.join("agent-authz");
    copy_tree(&workspace().join("policies/agent-authz"), &copy);
    let out = chaperone(&["test", copy.to_str().unwrap(), "--coverage"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("coverage (lines the tests evaluated)"),
        "{report}"
    );
    assert!(report.contains('%'), "{report}");

    // One failing test fails the run and says where it is.
    std::fs::write(
        copy.join("deliberately_failing_test.rego"),
        "package chaperone.deliberately_failing_test\n\nimport data.chaperone.authz\n\n\
         test_delete_is_allowed if {\n\tauthz.decision.allowed with input as {\"agent\": {\"id\": \"support-bot\"}, \
         \"attributes\": {\"request\": {\"http\": {\"method\": \"DELETE\", \"path\": \"/tickets/1\"}}}, \
         \"parsed_path\": [\"tickets\", \"1\"], \"now_ns\": 0}\n}\n",
    )
    .unwrap();
    let out = chaperone(&["test", copy.to_str().unwrap()]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL")
            && report.contains("deliberately_failing_test.rego:5 test_delete_is_allowed"),
        "{report}"
    );
}

#[test]
fn eval_prints_the_record_the_plugin_would_write() {
    let scratch = Scratch::new("eval");
    let (config, key) = configured(&scratch);
    let token = mint(&key, "support-bot");
    // In a minute, as RFC 3339: the record's timestamp is the decision time given.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = chaperone_core::record::rfc3339((now_s + 60) * 1_000_000_000);
    let (allowed, record) = eval(
        &config,
        &token,
        "GET /tickets/42",
        &["--header", "x-trace: t-1", "--at", &at],
    );
    assert!(allowed, "{record}");
    assert_eq!(
        record["result"],
        json!({"allowed": true, "http_status": 200})
    );
    assert_eq!(record["agent"]["id"], "support-bot");
    assert_eq!(
        record["agent"]["owner"], "alice@example.com",
        "the registry's owner"
    );
    assert_eq!(record["timestamp"], at.as_str());
    assert_eq!(
        record["input"]["attributes"]["request"]["http"]["headers"]["x-trace"],
        "t-1"
    );
    assert_eq!(record["path"], "chaperone/authz/decision");

    let (allowed, record) = eval(&config, &token, "DELETE /tickets/42", &[]);
    assert!(!allowed);
    assert_eq!(record["reason"], "no_permission");
    let (allowed, record) = eval(&config, "not.a.token", "GET /tickets/42", &[]);
    assert!(!allowed);
    assert_eq!(record["reason"], "token_malformed");
    // A token minted now is not valid an hour before it was issued.
    let (_, record) = eval(&config, &token, "GET /tickets/42", &["--at", "1000000000"]);
    assert_eq!(record["reason"], "token_not_yet_valid");
}

#[test]
fn bundle_packs_an_ecds_resource_envoy_can_watch() {
    let scratch = Scratch::new("ecds");
    // Writes base.json (keys, issuer) into the scratch directory.
    configured(&scratch);
    let bundle = workspace().join("policies/agent-authz");
    // The shipped bundle packed into `base` as an ECDS resource.
    let ecds = |base: &str| {
        let out = chaperone(&[
            "bundle",
            bundle.to_str().unwrap(),
            "--into",
            &scratch.path(base),
            "--ecds",
            "--wasm",
            "/etc/envoy/chaperone.wasm",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let resource = ecds("base.json");
    assert!(
        resource.contains("filename: \"/etc/envoy/chaperone.wasm\""),
        "{resource}"
    );
    // The bundle's revision, then a digest of the whole configuration: a change the
    // revision does not show (a revocation) still gives another version.
    let version = |resource: &str| {
        resource
            .lines()
            .find_map(|l| l.strip_prefix("version_info: "))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap()
    };
    let first = version(&resource);
    assert!(first.starts_with("2026-") && first.contains('+'), "{first}");
    let mut base: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("base.json")).unwrap()).unwrap();
    base["revocations"] = json!({"agents": ["support-bot"]});
    std::fs::write(scratch.path("revoked.json"), base.to_string()).unwrap();
    let second = version(&ecds("revoked.json"));
    assert_ne!(first, second);
    assert_eq!(first.split('+').next(), second.split('+').next());
    assert!(
        !resource.contains("${"),
        "every placeholder filled: {resource}"
    );
    // The configuration inside is exactly what `chaperone check` accepts.
    let line = resource
        .lines()
        .find(|l| l.trim_start().starts_with("value: \""))
        .unwrap();
    let inner: String =
        serde_json::from_str(line.trim_start().trim_start_matches("value: ")).unwrap();
    assert!(chaperone_core_accepts(&inner));
    let out = chaperone(&[
        "bundle",
        bundle.to_str().unwrap(),
        "--ecds",
        "--wasm",
        "x.wasm",
    ]);
    assert_eq!(out.status.code(), Some(2), "--ecds needs --into");
    // A base naming no decision rule falls back to envoy/authz/allow, which this bundle does
    // not declare: packing into it is refused, with or without --ecds.
    let mut base: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("base.json")).unwrap()).unwrap();
    base["policy"] = json!({});
    std::fs::write(scratch.path("no-rule.json"), base.to_string()).unwrap();
    let out = chaperone(&[
        "bundle",
        bundle.to_str().unwrap(),
        "--into",
        &scratch.path("no-rule.json"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("envoy/authz/allow"),
        "{}",
        text(&out.stderr)
    );
}

fn chaperone_core_accepts(config: &str) -> bool {
    let scratch = Scratch::new("ecds-inner");
    std::fs::write(scratch.path("inner.json"), config).unwrap();
    chaperone(&["check", &scratch.path("inner.json")])
        .status
        .success()
}

#[test]
fn replay_reports_the_decisions_a_candidate_bundle_would_flip() {
    let scratch = Scratch::new("replay");
    let (config, key) = configured(&scratch);
    let support = mint(&key, "support-bot");
    // Recorded traffic: two reads, a comment, two deletes, and one unauthenticated request.
    let mut log = String::new();
    for (token, request) in [
        (support.as_str(), "GET /tickets/1"),
        (support.as_str(), "GET /tickets/2"),
        (support.as_str(), "POST /tickets/1/comments"),
        (support.as_str(), "DELETE /tickets/1"),
        (support.as_str(), "DELETE /tickets/2"),
        ("garbage", "GET /tickets/1"),
    ] {
        let (_, record) = eval(&config, token, request, &[]);
        log.push_str(&format!("[info] wasm log chaperone chaperone: {record}\n"));
    }
    std::fs::write(scratch.path("records.log"), &log).unwrap();

    // Candidate: support-bot may now delete tickets, and may no longer comment.
    let candidate = scratch.0.join("candidate");
    copy_tree(&workspace().join("policies/agent-authz"), &candidate);
    let data_path = candidate.join("data.json");
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(&data_path).unwrap()).unwrap();
    let permissions = data
        .pointer_mut("/chaperone/registry/agents/support-bot/permissions")
        .and_then(Value::as_array_mut)
        .expect("support-bot has a permissions list");
    let comment = permissions
        .iter()
        .position(|p| p.to_string().contains("comments"))
        .expect("a comment permission");
    let mut delete = permissions[comment].clone();
    permissions.remove(comment);
    delete["name"] = json!("tickets.delete");
    delete["methods"] = json!(["DELETE"]);
    delete["path"] = if delete["path"].is_array() {
        json!(["tickets", "*"])
    } else {
        json!("/tickets/{id}")
    };
    permissions.push(delete);
    std::fs::write(&data_path, data.to_string()).unwrap();

    let out = chaperone(&[
        "replay",
        "--records",
        &scratch.path("records.log"),
        "--bundle",
        candidate.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "decisions flip: {}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 6);
    assert_eq!(report["replayed"], 5);
    assert_eq!(
        report["not_replayable"], 1,
        "the unauthenticated request never reached the policy"
    );
    assert_eq!(report["flips"], 3, "{report}");
    let groups: Vec<(String, String, u64)> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["agent"].as_str().unwrap().to_owned(),
                g["direction"].as_str().unwrap().to_owned(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        groups.contains(&("support-bot".into(), "deny -> allow".into(), 2)),
        "{report}"
    );
    assert!(
        groups.contains(&("support-bot".into(), "allow -> deny".into(), 1)),
        "{report}"
    );

    let out = chaperone(&[
        "replay",
        "--records",
        &scratch.path("records.log"),
        "--bundle",
        candidate.to_str().unwrap(),
    ]);
    assert!(
        text(&out.stdout).contains("3 decisions would flip"),
        "{}",
        text(&out.stdout)
    );
    // The bundle that decided them flips nothing: exit 0. An allowed decision the host
    // could not carry out (internal_error) is not the policy's to compare with.
    let allowed = log.lines().next().unwrap();
    let (prefix, record) = allowed.split_at(allowed.find('{').unwrap());
    let mut failed: Value = serde_json::from_str(record).unwrap();
    failed["result"] = json!({"allowed": false, "http_status": 500});
    failed["reason"] = json!("internal_error");
    std::fs::write(
        scratch.path("records.log"),
        format!("{log}{prefix}{failed}\n"),
    )
    .unwrap();
    let shipped = workspace().join("policies/agent-authz");
    let out = chaperone(&[
        "replay",
        "--records",
        &scratch.path("records.log"),
        "--bundle",
        shipped.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("0 decisions would flip"));
}

/// `check` says when a policy reads request bodies: that requests with one are held for it,
/// or, with no body allowed, that the policy never gets one.
#[test]
fn check_says_what_reading_the_request_body_means() {
    let scratch = Scratch::new("check-body");
    let (config, _) = configured(&scratch);
    let mut reads_body: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    reads_body["policy"]["modules"] = json!({"tools.rego": "package chaperone.authz\n\nimport rego.v1\n\ndefault decision := false\n\ndecision if input.parsed_body.method == \"tools/list\"\n"});
    reads_body["policy"]["data"] = json!({});
    reads_body.as_object_mut().unwrap().remove("registry");
    for (limit, stdout_says, stderr_says) in [
        (
            0,
            None,
            Some("limits.max_request_body_bytes is 0: it is never given one"),
        ),
        (
            4096,
            Some("reads the request body (up to 4096 bytes)"),
            None,
        ),
    ] {
        reads_body["limits"] = json!({"max_request_body_bytes": limit});
        let path = scratch.path(&format!("body-{limit}.json"));
        std::fs::write(&path, reads_body.to_string()).unwrap();
        let out = chaperone(&["check", &path]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        // The output says `says` when there is something to say, and its `topic` only then.
        let says_only = |output: &str, topic: &str, says: Option<&str>| {
            assert_eq!(output.contains(topic), says.is_some(), "{output}");
            assert!(says.is_none_or(|says| output.contains(says)), "{output}");
        };
        says_only(&text(&out.stdout), "reads the request body", stdout_says);
        says_only(&text(&out.stderr), "warning", stderr_says);
    }
}
