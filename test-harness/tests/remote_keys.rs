//! End-to-end: keys fetched from the identity provider (`remote_jwks`), through a real Envoy
//! (the shipped `envoy-config/remote-jwks.yaml`) from a key server in the harness that can
//! rotate keys, fail, stall, redirect, send junk and go away. Fetch counts are read from the
//! key server itself; every wait is bounded.

use chaperone_test_harness::template::REMOTE_JWKS;
use chaperone_test_harness::{jwks, AgentKey, Answer, Gateway, GatewayOptions, ScriptedServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

mod support;
use support::*;

const JWKS_PATH: &str = "/.well-known/jwks.json";
const SUCCESS: &str = "wasmcustom.chaperone_jwks_fetch_total_result=success";
const FAILURE: &str = "wasmcustom.chaperone_jwks_fetch_total_result=failure";

/// The tickets configuration with this issuer's keys fetched from the key server.
fn remote_config(remote_extra: Value) -> Value {
    let mut remote = json!({"http_uri": {"uri": format!("http://idp.e2e.test{JWKS_PATH}"),
                                         "cluster": "idp_jwks", "timeout_ms": 1000}});
    for (name, value) in remote_extra.as_object().expect("an object") {
        remote[name] = value.clone();
    }
    json!({"issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "remote_jwks": remote}],
           "policy": tickets_policy()})
}

fn start(server: &ScriptedServer, config: &Value, workers: u32) -> Gateway {
    let options = GatewayOptions {
        template: REMOTE_JWKS,
        extra: vec![("JWKS_PORT", server.port().to_string())],
        workers,
        ..GatewayOptions::default()
    };
    Gateway::start_with(&options, &config.to_string())
}

fn serve(server: &ScriptedServer, keys: &[&AgentKey]) {
    server.set(JWKS_PATH, Answer::json(jwks(keys)));
}

fn status_of(gateway: &Gateway, token: &str) -> u16 {
    gateway.with_token("GET", "/tickets/1", token).status
}

#[test]
fn requests_before_the_first_key_set_get_503_keys_unavailable_then_keys_arrive() {
    let server = ScriptedServer::start().unwrap();
    server.set(JWKS_PATH, Answer::Stall);
    let key = AgentKey::es256("k1");
    let gateway = start(&server, &remote_config(json!({})), 1);
    let token = key.mint(&claims());

    let response = gateway.with_token("GET", "/tickets/1", &token);
    let record = assert_denied(&gateway, &response, 503, "keys_unavailable");
    assert!(
        response.header("www-authenticate").is_none(),
        "not a token problem"
    );
    assert_eq!(record["agent"], Value::Null);
    assert_upstream_not_reached(&gateway);

    // The provider answers at last: the stalled fetch times out (1 s), the retry succeeds.
    server
        .wait_for_count(JWKS_PATH, 1, Duration::from_secs(5))
        .unwrap();
    serve(&server, &[&key]);
    wait_until(Duration::from_secs(10), "keys fetched", || {
        status_of(&gateway, &token) == 200
    });
    let response = gateway.with_token("GET", "/tickets/1", &token);
    assert_allowed(
        &gateway,
        &response,
        &key,
        &claims_of(&token),
        "GET",
        "/tickets/1",
    );
    assert!(server.count(JWKS_PATH) >= 2, "stalled fetch, then a retry");
    assert!(
        gateway.counter(FAILURE) >= 1,
        "the stalled fetch counts as a failure"
    );
    assert_eq!(gateway.counter(SUCCESS), 1);
    let sent = &server.requests()[0];
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.header_strings("host"), ["idp.e2e.test"]);
}

#[test]
fn one_fetch_serves_every_worker_of_the_gateway() {
    let server = ScriptedServer::start().unwrap();
    let key = AgentKey::es256("k1");
    serve(&server, &[&key]);
    let gateway = start(&server, &remote_config(json!({})), 2);
    wait_until(Duration::from_secs(10), "keys fetched", || {
        status_of(&gateway, &key.mint(&claims())) == 200
    });
    // Connections spread over both workers; each verifies tokens with the shared key set.
    for _ in 0..20 {
        assert_eq!(status_of(&gateway, &key.mint(&claims())), 200);
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        server.count(JWKS_PATH),
        1,
        "one fetch for the whole gateway, not one per worker"
    );
}

#[test]
fn rotated_keys_are_picked_up_without_a_restart_and_removed_keys_stop_working() {
    let server = ScriptedServer::start().unwrap();
    let old = AgentKey::es256("old");
    let new = AgentKey::es256("new");
    serve(&server, &[&old]);
    let gateway = start(&server, &remote_config(json!({"cooldown_seconds": 1})), 1);
    let old_token = old.mint(&claims());
    wait_until(Duration::from_secs(10), "keys fetched", || {
        status_of(&gateway, &old_token) == 200
    });
    std::thread::sleep(Duration::from_millis(1200)); // past the cooldown of the first fetch

    // The provider rotates: publishes the new key and drops the old one.
    serve(&server, &[&new]);
    let new_token = new.mint(&claims());
    // The first request with the new kid triggers the refetch; the agent's retry succeeds.
    wait_until(Duration::from_secs(5), "new kid accepted", || {
        status_of(&gateway, &new_token) == 200
    });
    assert_eq!(server.count(JWKS_PATH), 2, "initial fetch and one refetch");
    // The old token was verified before and remembered; its key is gone, so it is not.
    let response = gateway.with_token("GET", "/tickets/1", &old_token);
    assert_token_rejected(&gateway, &response, "key_unknown", &old_token);
}

#[test]
fn a_flood_of_unknown_kids_refetches_once_per_cooldown() {
    let server = ScriptedServer::start().unwrap();
    let key = AgentKey::es256("k1");
    serve(&server, &[&key]);
    let gateway = start(&server, &remote_config(json!({"cooldown_seconds": 3})), 1);
    wait_until(Duration::from_secs(10), "keys fetched", || {
        status_of(&gateway, &key.mint(&claims())) == 200
    });
    std::thread::sleep(Duration::from_millis(3200)); // the first fetch's cooldown is over

    let port = gateway.port;
    let flooders: Vec<_> = (0..4)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..25 {
                    let stranger = AgentKey::es256(&format!("random-{thread}-{i}"));
                    let bearer = format!("Bearer {}", stranger.mint(&claims()));
                    let raw = chaperone_test_harness::http::build_request(
                        "GET",
                        "/tickets/1",
                        port,
                        &[("authorization", bearer.as_bytes())],
                    );
                    statuses.push(chaperone_test_harness::send(port, &raw).status);
                }
                statuses
            })
        })
        .collect();
    for flooder in flooders {
        let statuses = flooder.join().unwrap();
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    }
    std::thread::sleep(Duration::from_millis(500)); // let a triggered fetch land
    assert_eq!(
        server.count(JWKS_PATH),
        2,
        "the initial fetch and one refetch for 100 unknown kids"
    );
    assert_eq!(status_of(&gateway, &key.mint(&claims())), 200);
}

#[test]
fn during_an_outage_the_last_good_keys_serve_until_max_stale_then_503() {
    let mut server = ScriptedServer::start().unwrap();
    let key = AgentKey::es256("k1");
    serve(&server, &[&key]);
    let config = remote_config(json!({"cache_duration_seconds": 1, "max_stale_seconds": 3}));
    let gateway = start(&server, &config, 1);
    let cached = key.mint(&claims());
    wait_until(Duration::from_secs(10), "keys fetched", || {
        status_of(&gateway, &cached) == 200
    });
    let first_allowed = Instant::now();
    // The provider goes away: connections are refused from now on.
    server.go_away();
    // Keys were fetched before `first_allowed`, so they hold until at least 4 s after it;
    // check well inside that, with fresh tokens (verified) and a remembered one.
    while first_allowed.elapsed() < Duration::from_millis(2500) {
        assert_eq!(status_of(&gateway, &key.mint(&claims())), 200);
        assert_eq!(status_of(&gateway, &cached), 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gateway.counter(FAILURE) >= 1, "refreshes failed meanwhile");
    // Then the bound passes and nothing from that issuer is accepted, remembered or not.
    wait_until(Duration::from_secs(10), "keys expired", || {
        status_of(&gateway, &cached) == 503
    });
    let response = gateway.with_token("GET", "/tickets/1", &key.mint(&claims()));
    assert_denied(&gateway, &response, 503, "keys_unavailable");
    wait_until(Duration::from_secs(2), "the expiry is logged", || {
        gateway
            .envoy
            .log_text()
            .contains("expired (max_stale_seconds passed")
    });
}

#[test]
fn bad_answers_never_replace_good_keys_and_redirects_are_not_followed() {
    let server = ScriptedServer::start().unwrap();
    let key = AgentKey::es256("k1");
    serve(&server, &[&key]);
    let config = remote_config(json!({"cache_duration_seconds": 1, "max_bytes": 1024}));
    let gateway = start(&server, &config, 1);
    let token = key.mint(&claims());
    wait_until(Duration::from_secs(10), "keys fetched", || {
        status_of(&gateway, &token) == 200
    });
    // Same kid, another key: if a bad answer carrying it were installed, the token would fail.
    let other = AgentKey::es256("k1");
    let mut oversized = jwks(&[&other]);
    oversized["padding"] = json!("x".repeat(4096));
    // Good answers between the bad ones all keep `key`, so the check never depends on when
    // each worker adopts what another fetched.
    let spare = AgentKey::es256("k2");
    let bad_answers = [
        ("redirect", Answer::Redirect("/moved".into())),
        ("oversized", Answer::json(oversized)),
        (
            "not JSON",
            Answer::Raw {
                status: 200,
                content_type: "text/html",
                body: b"<html>".to_vec(),
            },
        ),
        ("no keys", Answer::json(json!({"keys": []}))),
        (
            "empty",
            Answer::Raw {
                status: 200,
                content_type: "application/json",
                body: Vec::new(),
            },
        ),
        ("server error", Answer::status(500)),
        ("hang up", Answer::Hang),
    ];
    for (what, answer) in bad_answers {
        let before = server.count(JWKS_PATH);
        let failures = gateway.counter(FAILURE);
        server.set(JWKS_PATH, answer);
        server
            .wait_for_count(JWKS_PATH, before + 1, Duration::from_secs(10))
            .unwrap();
        wait_until(
            Duration::from_secs(5),
            &format!("{what} counted as a failure"),
            || gateway.counter(FAILURE) > failures,
        );
        let response = gateway.with_token("GET", "/tickets/1", &token);
        assert_eq!(
            response.status,
            200,
            "{what} replaced the keys: {}",
            response.body_text()
        );
        // A good answer again resets the retry backoff before the next bad one.
        serve(&server, &[&key, &spare]);
        let fetched = gateway.counter(SUCCESS);
        wait_until(Duration::from_secs(10), "good answer fetched", || {
            gateway.counter(SUCCESS) > fetched
        });
    }
    assert_eq!(server.count("/moved"), 0, "a redirect was followed");
    assert_eq!(status_of(&gateway, &token), 200);
}

#[test]
fn openid_discovery_finds_the_key_set() {
    let server = ScriptedServer::start().unwrap();
    let key = AgentKey::es256("k1");
    server.set(
        "/.well-known/openid-configuration",
        Answer::json(json!({"issuer": ISSUER, "jwks_uri": "http://idp.e2e.test/keys/current"})),
    );
    server.set("/keys/current", Answer::json(jwks(&[&key])));
    let config = remote_config(json!({
        "http_uri": {"uri": "http://idp.e2e.test/.well-known/openid-configuration",
                     "cluster": "idp_jwks", "timeout_ms": 1000},
        "openid_discovery": true}));
    let gateway = start(&server, &config, 1);
    wait_until(
        Duration::from_secs(10),
        "keys found through discovery",
        || status_of(&gateway, &key.mint(&claims())) == 200,
    );
    assert_eq!(server.count("/keys/current"), 1);
}

#[test]
fn an_unknown_cluster_fails_closed_and_says_which_setting_to_fix() {
    let server = ScriptedServer::start().unwrap();
    let key = AgentKey::es256("k1");
    serve(&server, &[&key]);
    let config = remote_config(json!({
        "http_uri": {"uri": "http://idp.e2e.test/jwks", "cluster": "no_such_cluster"}}));
    let gateway = start(&server, &config, 1);
    let response = gateway.with_token("GET", "/tickets/1", &key.mint(&claims()));
    assert_denied(&gateway, &response, 503, "keys_unavailable");
    wait_until(
        Duration::from_secs(5),
        "the refused dispatch is logged",
        || {
            gateway
                .envoy
                .log_text()
                .contains("remote_jwks.http_uri.cluster")
        },
    );
    assert_eq!(server.count("/jwks"), 0);
}

/// The claims inside a token minted by the harness (for `assert_allowed`).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = chaperone_test_harness::tokens::base64url_decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
