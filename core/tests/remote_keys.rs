#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Remote key sets without a network: several VMs (`Runtime`s) sharing one `MemoryStore`
//! play the roles the host adapter plays with proxy shared data and `dispatch_http_call`.

use chaperone_core::encoding::base64url_encode;
use chaperone_core::remote::{FetchRequest, FetchResponse, KeyEvent, MemoryStore, Step};
use chaperone_core::{decide, load, Loaded, Reason, RequestFacts, Runtime};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.test";
const T0: u64 = 1_800_000_000_000; // ms

fn es256_jwk(key: &ES256KeyPair, kid: &str) -> Value {
    let point = key.public_key().public_key().to_bytes_uncompressed();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
           "x": base64url_encode(&point[1..33]), "y": base64url_encode(&point[33..65])})
}

fn config(remote: Value) -> Loaded {
    let config = json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["api"], "remote_jwks": remote}],
        "policy": {"modules": {"p.rego": "package p\nallow if input.agent.id != \"\"\n"},
                   "decision_path": "p/allow"},
    });
    load(config.to_string().as_bytes()).unwrap()
}

fn remote() -> Value {
    json!({"http_uri": {"uri": "https://idp.test/jwks", "cluster": "idp"},
           "cache_duration_seconds": 600, "cooldown_seconds": 30, "max_stale_seconds": 60})
}

fn ok(body: &Value) -> FetchResponse {
    FetchResponse {
        status: Some(200),
        headers: vec![],
        body: Some(body.to_string().into_bytes()),
    }
}

/// `ok`, with `Cache-Control: max-age` (seconds).
fn ok_with_max_age(body: &Value, seconds: &str) -> FetchResponse {
    FetchResponse {
        headers: vec![(
            b"Cache-Control".to_vec(),
            format!("public, max-age={seconds}").into_bytes(),
        )],
        ..ok(body)
    }
}

fn token(key: &ES256KeyPair, kid: &str) -> String {
    let claims = Claims::create(Duration::from_secs(300))
        .with_issuer(ISSUER)
        .with_audience("api")
        .with_subject("bot");
    let mut claims = claims;
    claims.issued_at = Some(Duration::from_secs(T0 / 1000 - 10));
    claims.expires_at = Some(Duration::from_secs(T0 / 1000 + 300));
    ES256KeyPair::from_bytes(&key.to_bytes())
        .unwrap()
        .with_key_id(kid)
        .sign(claims)
        .unwrap()
}

fn request(token: &str, now_ms: u64) -> RequestFacts {
    RequestFacts {
        headers: vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), b"/x".to_vec()),
            (b":authority".to_vec(), b"gw".to_vec()),
            (
                b"authorization".to_vec(),
                format!("Bearer {token}").into_bytes(),
            ),
        ],
        decision_id: "d".into(),
        now_ns: now_ms * 1_000_000,
        ..RequestFacts::default()
    }
}

/// The first fetch of a fresh store: the first tick creates the shared entry, the next one
/// takes the lease.
fn first_fetch(vm: &mut Runtime, store: &MemoryStore, now_ms: u64) -> Vec<FetchRequest> {
    assert!(vm.tick(store, now_ms).requests.is_empty());
    vm.tick(store, now_ms).requests
}

/// A VM of `loaded` whose first key set was fetched at `T0` with `answer`; and the last call
/// token used (the next calls number on from it).
fn fetched(loaded: &Loaded, store: &MemoryStore, answer: FetchResponse) -> (Runtime, u32) {
    let mut vm = Runtime::new(loaded, 1);
    let mut token_id = 0;
    let first = first_fetch(&mut vm, store, T0);
    complete(&mut vm, store, first, &mut token_id, T0, &|_| {
        answer.clone()
    });
    (vm, token_id)
}

/// Dispatches every request of `work` as the host would, answering with `answer`.
fn complete(
    runtime: &mut Runtime,
    store: &MemoryStore,
    requests: Vec<FetchRequest>,
    token: &mut u32,
    now_ms: u64,
    answer: &dyn Fn(&FetchRequest) -> FetchResponse,
) -> Vec<KeyEvent> {
    let mut events = Vec::new();
    let mut pending = requests;
    while let Some(request) = pending.pop() {
        *token += 1;
        runtime.keys.dispatched(&request, *token);
        let work = runtime.on_key_response(*token, &answer(&request), store, now_ms);
        events.extend(work.events);
        pending.extend(work.requests);
    }
    events
}

#[test]
fn one_fetch_serves_every_vm_and_requests_wait_for_nothing_after() {
    let loaded = config(remote());
    let store = MemoryStore::default();
    let key = ES256KeyPair::generate();
    let jwks = json!({"keys": [es256_jwk(&key, "k1")]});
    let mut vms: Vec<Runtime> = (1..=4).map(|n| Runtime::new(&loaded, n)).collect();
    let good = token(&key, "k1");

    // Before any fetch: 503 keys_unavailable, not a 401.
    let d = decide(&loaded, &mut vms[0], &request(&good, T0));
    assert_eq!((d.status, d.reason), (503, Reason::KeysUnavailable));

    // Every VM ticks; exactly one takes the lease and asks for the fetch.
    // (Two rounds: the first tick only creates the shared entry the lease is taken on.)
    let mut requests: Vec<(usize, FetchRequest)> = Vec::new();
    for round in 0..2 {
        for (i, vm) in vms.iter_mut().enumerate() {
            for r in vm.tick(&store, T0 + round).requests {
                requests.push((i, r));
            }
        }
    }
    assert_eq!(requests.len(), 1, "single flight across VMs");
    let (fetcher, fetch) = requests.pop().unwrap();
    assert_eq!(fetch.upstream, "idp");
    assert!(fetch
        .headers
        .contains(&(":authority".to_owned(), "idp.test".to_owned())));
    assert!(fetch
        .headers
        .contains(&(":path".to_owned(), "/jwks".to_owned())));
    // While it is in flight, nobody else starts one.
    for vm in vms.iter_mut() {
        assert!(vm.tick(&store, T0 + 100).requests.is_empty());
    }
    let mut token_id = 0;
    let events = complete(
        &mut vms[fetcher],
        &store,
        vec![fetch],
        &mut token_id,
        T0 + 200,
        &|_| ok(&jwks),
    );
    assert!(
        matches!(
            &events[..],
            [KeyEvent::Fetched {
                keys: 1,
                changed: true,
                ..
            }]
        ),
        "{events:?}"
    );

    // The others adopt the stored set on their next tick, without fetching.
    for (i, vm) in vms.iter_mut().enumerate() {
        let work = vm.tick(&store, T0 + 300);
        assert!(work.requests.is_empty());
        if i != fetcher {
            assert!(
                matches!(&work.events[..], [KeyEvent::Adopted { keys: 1, .. }]),
                "{:?}",
                work.events
            );
        }
        let d = decide(&loaded, vm, &request(&good, T0 + 300));
        assert!(d.allowed, "vm {i}: {:?}", d.reason);
    }
}

#[test]
fn unknown_kids_refetch_at_most_once_per_cooldown() {
    let loaded = config(remote());
    let store = MemoryStore::default();
    let old = ES256KeyPair::generate();
    let new = ES256KeyPair::generate();
    let jwks_old = json!({"keys": [es256_jwk(&old, "old")]});
    let (mut vm, mut token_id) = fetched(&loaded, &store, ok(&jwks_old));

    // The provider rotates; a flood of tokens with unknown kids arrives.
    let rotated = token(&new, "new");
    let mut refetches = 0;
    for step in 0..100u64 {
        // Ten seconds of traffic, starting once the first fetch is out of its cooldown.
        let now = T0 + 31_000 + step * 100;
        let junk = token(&new, &format!("random-{step}"));
        let d = decide(&loaded, &mut vm, &request(&junk, now));
        assert_eq!(d.reason, Reason::KeyUnknown);
        let requests = vm.tick(&store, now).requests;
        refetches += requests.len();
        let jwks_new = json!({"keys": [es256_jwk(&old, "old"), es256_jwk(&new, "new")]});
        complete(&mut vm, &store, requests, &mut token_id, now, &|_| {
            ok(&jwks_new)
        });
    }
    assert_eq!(refetches, 1, "one refetch for the whole flood");
    // The rotated key now verifies.
    assert!(decide(&loaded, &mut vm, &request(&rotated, T0 + 42_000)).allowed);
    // After the cooldown another unknown kid may refetch again.
    let d = decide(
        &loaded,
        &mut vm,
        &request(&token(&new, "later"), T0 + 70_000),
    );
    assert_eq!(d.reason, Reason::KeyUnknown);
    assert_eq!(vm.tick(&store, T0 + 70_000).requests.len(), 1);
}

#[test]
fn failures_keep_the_last_good_keys_until_the_stale_bound_then_503() {
    let loaded = config(
        json!({"http_uri": {"uri": "https://idp.test/jwks", "cluster": "idp"},
                               "cache_duration_seconds": 10, "max_stale_seconds": 20}),
    );
    let store = MemoryStore::default();
    let key = ES256KeyPair::generate();
    let good = token(&key, "k1");
    let jwks = json!({"keys": [es256_jwk(&key, "k1")]});
    let (mut vm, mut token_id) = fetched(&loaded, &store, ok(&jwks));
    assert!(decide(&loaded, &mut vm, &request(&good, T0)).allowed);

    // From the refresh on, every answer is bad in a different way; none replaces the keys.
    let bad_answers: Vec<FetchResponse> = vec![
        FetchResponse {
            status: None,
            headers: vec![(b":dispatch_status".to_vec(), b"timeout".to_vec())],
            body: None,
        },
        FetchResponse {
            status: Some(503),
            headers: vec![],
            body: Some(b"down".to_vec()),
        },
        FetchResponse {
            status: Some(302),
            headers: vec![(b"location".to_vec(), b"https://evil.test/jwks".to_vec())],
            body: Some(vec![]),
        },
        FetchResponse {
            status: Some(200),
            headers: vec![],
            body: None,
        },
        FetchResponse {
            status: Some(200),
            headers: vec![],
            body: Some(b"<html>".to_vec()),
        },
        FetchResponse {
            status: Some(200),
            headers: vec![],
            body: Some(b"{\"keys\": []}".to_vec()),
        },
        FetchResponse {
            status: Some(200),
            headers: vec![],
            body: Some(vec![]),
        },
    ];
    let mut now = T0 + 10_000;
    let mut failures = Vec::new();
    let mut answers = bad_answers.into_iter();
    while now < T0 + 29_000 {
        let requests = vm.tick(&store, now).requests;
        if !requests.is_empty() {
            let answer = answers.next().unwrap_or(FetchResponse {
                status: Some(500),
                ..Default::default()
            });
            failures.extend(complete(
                &mut vm,
                &store,
                requests,
                &mut token_id,
                now,
                &|_| answer.clone(),
            ));
        }
        assert!(
            decide(&loaded, &mut vm, &request(&good, now)).allowed,
            "last good keys at +{}ms",
            now - T0
        );
        now += 250;
    }
    let errors: Vec<String> = failures
        .iter()
        .map(|e| match e {
            KeyEvent::FetchFailed {
                error,
                keys_until_ms,
                ..
            } => {
                assert_eq!(*keys_until_ms, Some(T0 + 30_000));
                error.clone()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // Backoff 1 s, 2 s, 4 s, 8 s: five attempts in the 19 s window.
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].contains("timeout"), "{errors:?}");
    assert!(errors[1].contains("503"), "{errors:?}");
    assert!(errors[2].contains("302"), "{errors:?}");
    assert!(errors[3].contains("max_bytes"), "{errors:?}");
    assert!(errors[4].contains("not JSON"), "{errors:?}");

    // Past fetched + cache_duration + max_stale the keys are no longer trusted, cached or not,
    // and the tick that notices says so, once.
    let d = decide(&loaded, &mut vm, &request(&good, T0 + 30_000));
    assert_eq!((d.status, d.reason), (503, Reason::KeysUnavailable));
    let expired = |events: &[KeyEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, KeyEvent::Expired { .. }))
            .count()
    };
    assert_eq!(expired(&vm.tick(&store, T0 + 30_000).events), 1);
    assert_eq!(expired(&vm.tick(&store, T0 + 30_250).events), 0);
}

#[test]
fn max_age_shortens_the_refresh_within_bounds() {
    let loaded = config(remote());
    let store = MemoryStore::default();
    let key = ES256KeyPair::generate();
    let jwks = json!({"keys": [es256_jwk(&key, "k1")]});
    let (mut vm, mut token_id) = fetched(&loaded, &store, ok_with_max_age(&jwks, "120"));
    assert!(vm.tick(&store, T0 + 119_000).requests.is_empty());
    let again = vm.tick(&store, T0 + 120_000).requests;
    assert_eq!(
        again.len(),
        1,
        "max-age 120 s brings the refresh forward from 600 s"
    );
    // max-age 1 s is clamped to 30 s; 86400 s to the configured 600 s.
    complete(&mut vm, &store, again, &mut token_id, T0 + 120_000, &|_| {
        ok_with_max_age(&jwks, "1")
    });
    assert!(vm.tick(&store, T0 + 149_000).requests.is_empty());
    let third = vm.tick(&store, T0 + 150_000).requests;
    assert_eq!(third.len(), 1);
    complete(&mut vm, &store, third, &mut token_id, T0 + 150_000, &|_| {
        ok_with_max_age(&jwks, "86400")
    });
    assert!(vm.tick(&store, T0 + 749_000).requests.is_empty());
    assert_eq!(vm.tick(&store, T0 + 750_000).requests.len(), 1);
}

#[test]
fn remote_sets_drop_unusable_keys_and_keep_the_rest() {
    let loaded = config(remote());
    let store = MemoryStore::default();
    let good = ES256KeyPair::generate();
    let twin = ES256KeyPair::generate();
    let mut enc = es256_jwk(&ES256KeyPair::generate(), "enc");
    enc["use"] = json!("enc");
    let mut wrong_curve = es256_jwk(&ES256KeyPair::generate(), "curve");
    wrong_curve["crv"] = json!("P-384");
    let jwks = json!({"keys": [
        es256_jwk(&good, "good"),
        enc,
        wrong_curve,
        es256_jwk(&twin, "dup"),
        es256_jwk(&ES256KeyPair::generate(), "dup"),
        {"kty": "oct", "kid": "secret", "k": base64url_encode(&[7u8; 64])},
    ]});
    let mut vm = Runtime::new(&loaded, 1);
    let mut token_id = 0;
    let first = first_fetch(&mut vm, &store, T0);
    let events = complete(&mut vm, &store, first, &mut token_id, T0, &|_| ok(&jwks));
    let KeyEvent::Fetched { keys, rejected, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*keys, 1, "{rejected:?}");
    assert_eq!(rejected.len(), 4, "{rejected:?}"); // enc, curve, two dups; oct is dropped separately
    let all = format!("{rejected:?}");
    for needle in ["use", "curve", "duplicate kid `dup`"] {
        assert!(all.contains(needle), "{needle}: {all}");
    }
    assert!(decide(&loaded, &mut vm, &request(&token(&good, "good"), T0)).allowed);
    assert_eq!(
        decide(&loaded, &mut vm, &request(&token(&twin, "dup"), T0)).reason,
        Reason::KeyUnknown
    );
}

#[test]
fn openid_discovery_follows_jwks_uri_on_the_same_origin_only() {
    let loaded = config(
        json!({"http_uri": {"uri": "https://idp.test/.well-known/openid-configuration", "cluster": "idp"},
                               "openid_discovery": true}),
    );
    let key = ES256KeyPair::generate();
    let jwks = json!({"keys": [es256_jwk(&key, "k1")]});
    for (discovery, expect_keys) in [
        (
            json!({"issuer": ISSUER, "jwks_uri": "https://idp.test/keys?v=2"}),
            true,
        ),
        (
            json!({"issuer": ISSUER, "jwks_uri": "https://evil.test/keys"}),
            false,
        ),
        (
            json!({"issuer": "https://other.test", "jwks_uri": "https://idp.test/keys"}),
            false,
        ),
        (json!({"issuer": ISSUER}), false),
    ] {
        let store = MemoryStore::default();
        let mut vm = Runtime::new(&loaded, 1);
        let mut token_id = 0;
        let first = first_fetch(&mut vm, &store, T0);
        assert_eq!(first[0].step, Step::Discovery);
        let events = complete(
            &mut vm,
            &store,
            first,
            &mut token_id,
            T0,
            &|r| match &r.step {
                Step::Discovery => ok(&discovery),
                Step::Jwks { path } => {
                    assert_eq!(path, "/keys?v=2");
                    ok(&jwks)
                }
            },
        );
        let fetched = matches!(events.last(), Some(KeyEvent::Fetched { .. }));
        assert_eq!(fetched, expect_keys, "{discovery}: {events:?}");
    }
}

#[test]
fn a_config_update_reuses_keys_already_fetched() {
    let store = MemoryStore::default();
    let key = ES256KeyPair::generate();
    let jwks = json!({"keys": [es256_jwk(&key, "k1")]});
    let loaded = config(remote());
    // The old configuration's VM fetched the keys into the gateway's store.
    fetched(&loaded, &store, ok(&jwks));

    // Same issuer and URI in the new configuration: the first tick installs, no fetch.
    let updated = config(remote());
    let mut fresh = Runtime::new(&updated, 1);
    let work = fresh.tick(&store, T0 + 1_000);
    assert!(work.requests.is_empty());
    assert!(
        decide(
            &updated,
            &mut fresh,
            &request(&token(&key, "k1"), T0 + 1_000)
        )
        .allowed
    );
}

#[test]
fn remote_configuration_errors_name_the_field() {
    let cases = [
        (
            json!({"http_uri": {"uri": "idp.test/jwks"}}),
            "issuers[0].remote_jwks.http_uri.uri",
        ),
        (
            json!({"http_uri": {"uri": "https://idp.test/jwks", "cluster": " "}}),
            "issuers[0].remote_jwks.http_uri.cluster",
        ),
        (
            json!({"http_uri": {"uri": "https://idp.test/jwks", "timeout_ms": 0}}),
            "issuers[0].remote_jwks.http_uri.timeout_ms",
        ),
        (
            json!({"http_uri": {"uri": "https://idp.test/jwks"}, "max_bytes": 10}),
            "issuers[0].remote_jwks.max_bytes",
        ),
        (
            json!({"http_uri": {"uri": "https://idp.test/jwks"}, "cooldown_seconds": 0}),
            "issuers[0].remote_jwks.cooldown_seconds",
        ),
    ];
    for (remote, field) in cases {
        let config = json!({"issuers": [{"issuer": ISSUER, "audiences": ["api"], "remote_jwks": remote}],
                            "policy": {"modules": {"p.rego": "package p\nallow := true\n"}, "decision_path": "p/allow"}});
        let error = load(config.to_string().as_bytes()).err().unwrap();
        assert_eq!(error.field, field, "{error}");
    }
    let both = json!({"issuers": [{"issuer": ISSUER, "audiences": ["api"], "local_jwks": {"keys": []},
                                   "remote_jwks": {"http_uri": {"uri": "https://idp.test/jwks"}}}],
                      "policy": {"modules": {"p.rego": "package p\nallow := true\n"}, "decision_path": "p/allow"}});
    assert!(load(both.to_string().as_bytes())
        .err()
        .unwrap()
        .message
        .contains("not both"));
}

#[test]
fn a_refused_signature_is_remembered_until_the_issuers_keys_change() {
    let loaded = config(remote());
    let store = MemoryStore::default();
    let published = ES256KeyPair::generate();
    let signer = ES256KeyPair::generate();
    let before = json!({"keys": [es256_jwk(&published, "k")]});
    let (mut vm, mut token_id) = fetched(&loaded, &store, ok(&before));

    // Signed by a key the provider does not publish under that kid (yet).
    let forged = token(&signer, "k");
    for round in 0..3 {
        let d = decide(&loaded, &mut vm, &request(&forged, T0 + 1_000 + round));
        assert_eq!(d.reason, Reason::SignatureInvalid);
    }
    let stats = std::mem::take(&mut vm.cache_stats);
    assert_eq!(
        (stats.misses, stats.rejected),
        (0, 2),
        "checked once, refused twice from memory"
    );

    // The provider's set changes (a refetch, here after an unknown kid): what was refused
    // under the old keys is checked again, and now verifies.
    let now = T0 + 31_000;
    let d = decide(&loaded, &mut vm, &request(&token(&signer, "other"), now));
    assert_eq!(d.reason, Reason::KeyUnknown);
    let requests = vm.tick(&store, now).requests;
    assert_eq!(requests.len(), 1);
    let after = json!({"keys": [es256_jwk(&signer, "k")]});
    complete(&mut vm, &store, requests, &mut token_id, now, &|_| {
        ok(&after)
    });
    assert!(decide(&loaded, &mut vm, &request(&forged, now + 1)).allowed);
    assert_eq!(vm.cache_stats.rejected, 0);
}

#[test]
fn a_refresh_bringing_the_same_document_keeps_the_keys_without_admitting_them_again() {
    let loaded = config(remote());
    let store = MemoryStore::default();
    let key = ES256KeyPair::generate();
    let mut enc = es256_jwk(&ES256KeyPair::generate(), "enc");
    enc["use"] = json!("enc");
    let jwks = json!({"keys": [es256_jwk(&key, "k1"), enc]});
    // max-age 60 s: the refresh comes while the token is still valid.
    let (mut vm, mut token_id) = fetched(&loaded, &store, ok_with_max_age(&jwks, "60"));
    let signed = token(&key, "k1");
    assert!(decide(&loaded, &mut vm, &request(&signed, T0)).allowed);

    // The refresh, a minute on: the same bytes. Nothing is admitted again (no P-256 tables
    // rebuilt, no dropped entries reported again) and verified tokens stay verified.
    let now = T0 + 60_000;
    let refresh = vm.tick(&store, now).requests;
    assert_eq!(refresh.len(), 1);
    let events = complete(&mut vm, &store, refresh, &mut token_id, now, &|_| {
        ok_with_max_age(&jwks, "60")
    });
    assert_eq!(
        events,
        vec![KeyEvent::Fetched {
            issuer: "https://idp.test".into(),
            keys: 1,
            changed: false,
            rejected: vec![],
        }]
    );
    vm.cache_stats = Default::default();
    assert!(decide(&loaded, &mut vm, &request(&signed, now + 1)).allowed);
    assert_eq!(vm.cache_stats.misses, 0, "the verified token was kept");

    // A changed document is admitted, with what it drops.
    let rotated =
        json!({"keys": [es256_jwk(&ES256KeyPair::generate(), "k2"), es256_jwk(&key, "k1")]});
    let later = now + 60_000;
    let refresh = vm.tick(&store, later).requests;
    let events = complete(&mut vm, &store, refresh, &mut token_id, later, &|_| {
        ok(&rotated)
    });
    let [KeyEvent::Fetched { keys, changed, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!((*keys, *changed), (2, true));
}

#[test]
fn a_late_answer_with_the_document_another_vm_installed_since_is_installed_here_too() {
    let loaded = config(remote());
    let store = MemoryStore::default();
    let (old_key, new_key) = (ES256KeyPair::generate(), ES256KeyPair::generate());
    let before = json!({"keys": [es256_jwk(&old_key, "old")]});
    let after = json!({"keys": [es256_jwk(&new_key, "new")]});
    // VM a fetches the first set (fresh for a minute); VM b adopts it.
    let (mut vm_a, mut token_id) = fetched(&loaded, &store, ok_with_max_age(&before, "60"));
    let mut vm_b = Runtime::new(&loaded, 2);
    assert!(vm_b.tick(&store, T0).requests.is_empty());
    assert!(decide(&loaded, &mut vm_b, &request(&token(&old_key, "old"), T0)).allowed);

    // At the refresh VM b takes the lease, and its answer is slow to come.
    let refresh_at = T0 + 60_000;
    let slow = vm_b.tick(&store, refresh_at).requests;
    assert_eq!(slow.len(), 1);
    token_id += 1;
    let slow_call = token_id;
    vm_b.keys.dispatched(&slow[0], slow_call);

    // Its lease runs out; VM a fetches the provider's new set and stores it.
    let later = refresh_at + 10_000;
    let refresh = vm_a.tick(&store, later).requests;
    assert_eq!(refresh.len(), 1);
    complete(&mut vm_a, &store, refresh, &mut token_id, later, &|_| {
        ok_with_max_age(&after, "60")
    });

    // VM b's answer arrives with that same new document: the stored copy is newer than what
    // VM b installed, so it is not "unchanged" for VM b, which installs it.
    vm_b.on_key_response(slow_call, &ok_with_max_age(&after, "60"), &store, later);
    let signed_now = token(&new_key, "new");
    assert!(decide(&loaded, &mut vm_b, &request(&signed_now, later)).allowed);
}
