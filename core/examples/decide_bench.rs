#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is right
//! Per-request cost of `decide`, by stage, with the shipped bundle: the cached-token path every
//! request after the first takes, and first-seen tokens per signature algorithm. Built natively
//! and for `wasm32-wasip1` (run under Node's WASI, which is V8: the runtime Envoy embeds), so
//! the figures tell what the plugin pays inside the gateway. `make bench` runs both.
//!
//! The policy is read from standard input, as `chaperone bundle` prints it:
//!
//! `chaperone bundle policies/agent-authz | cargo run --release -p chaperone-core --example decide_bench [-- ITERATIONS [cached|no-scale]]`
//! (`cached`: the steady state only, for profiling; `no-scale`: without the registry sizes).

use chaperone_core::encoding::{base64url_decode, base64url_encode};
use chaperone_core::jwks::{admit_key_set, Algorithm};
use chaperone_core::{decide, decide_timed, load, Loaded, RequestFacts, Runtime};
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const ISSUER: &str = "https://idp.bench.test";

/// Registry sizes for the scale figures: issue 8 asks for a flat cost from 10 to 100,000
/// registered agents and a 10,000-agent reload under a second.
const REGISTRY_SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

/// A policy that allows everything, for what chaperone costs around any policy.
const ALLOW_ALL: &str =
    "package chaperone.authz\n\ndecision := {\"allowed\": true, \"reason\": \"floor\", \"rule\": \"floor\"}\n";

/// The allocator, counting live bytes: what a configuration occupies on the heap. In wasm it
/// is the plugin's (talc), natively the system's.
struct Counting;

#[cfg(target_family = "wasm")]
static BACKING: chaperone_core::small_alloc::SmallAlloc<talc::wasm::WasmDynamicTalc> =
    chaperone_core::small_alloc::SmallAlloc::new(talc::wasm::new_wasm_dynamic_allocator());
#[cfg(not(target_family = "wasm"))]
static BACKING: std::alloc::System = std::alloc::System;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { BACKING.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { BACKING.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { BACKING.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let mut policy = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut policy).expect("a policy on stdin");
    let policy: Value =
        serde_json::from_str(&policy).expect("the policy object of `chaperone bundle`");
    run(iterations, policy);
}

fn run(iterations: u32, policy: Value) {
    let es = ES256KeyPair::generate().with_key_id("es");
    let rs = RS256KeyPair::generate(2048)
        .expect("RSA key")
        .with_key_id("rs");
    let ed = Ed25519KeyPair::generate().with_key_id("ed");
    let loaded = configuration(&es, &rs, &ed, policy.clone(), json!({}));
    let evaluating = configuration(&es, &rs, &ed, policy.clone(), evaluate_every_request());
    let now = Clock::now_since_epoch().as_secs();

    let claims = |sub: &str| {
        let mut claims = Claims::create(Duration::from_secs(600))
            .with_issuer(ISSUER)
            .with_audience("agents-api")
            .with_subject(sub);
        claims.issued_at = Some(Duration::from_secs(now - 5));
        claims
    };
    let es_token = es.sign(claims("support-bot")).expect("sign");
    println!(
        "chaperone decide, {} (per request; median of {iterations})",
        target()
    );

    // Steady state: the token was seen before, and so was the request: the bundle's answer
    // comes from memory (its `cache_seconds`).
    let mut runtime = Runtime::new(&loaded, 1).with_secret_key([7; 16]);
    let remembered = repeated(iterations, &loaded, &mut runtime, &es_token, "GET", now);
    assert!(runtime.cache_stats.decision_hits > 0);
    println!("  cached ES256 token, allowed, answer remembered {remembered:>5.1} us");
    // The same with every request evaluated, as before verdicts were remembered.
    let mut runtime = Runtime::new(&evaluating, 1);
    let cached = repeated(iterations, &evaluating, &mut runtime, &es_token, "GET", now);
    println!("  cached ES256 token, allowed         {cached:>9.1} us");
    println!(
        "    by stage: {}",
        stages(iterations, &evaluating, &mut runtime, &es_token, now)
    );
    let denied = repeated(
        iterations,
        &evaluating,
        &mut runtime,
        &es_token,
        "DELETE",
        now,
    );
    println!("  cached ES256 token, policy denial   {denied:>9.1} us");
    // The same configuration with other policies in place of the bundle's modules.
    let with_policy = |source: &str| {
        let mut replaced = policy.clone();
        replaced["modules"] = json!({"replaced.rego": source});
        let loaded = configuration(&es, &rs, &ed, replaced, json!({}));
        let mut runtime = Runtime::new(&loaded, 1);
        let first = decide(
            &loaded,
            &mut runtime,
            &facts(&es_token, "GET", "/tickets/42", now),
        );
        assert!(first.allowed, "{source}: {}", first.reason.code());
        repeated(iterations, &loaded, &mut runtime, &es_token, "GET", now)
    };
    // A policy that allows everything: what chaperone costs around any policy (token,
    // registry, input, record), the floor of the rows above.
    let floor = with_policy(ALLOW_ALL);
    println!("  cached ES256 token, allow-all policy {floor:>8.1} us");
    {
        let mut replaced = policy.clone();
        replaced["modules"] = json!({"replaced.rego": ALLOW_ALL});
        let loaded = configuration(&es, &rs, &ed, replaced, json!({}));
        let mut runtime = Runtime::new(&loaded, 1);
        println!(
            "    by stage: {}",
            stages(iterations, &loaded, &mut runtime, &es_token, now)
        );
    }
    // One regex.match with a Unicode class, and one glob.match: each pattern compiled once
    // per configuration and its matcher kept (core/src/opa_builtins.rs).
    let regex = with_policy(
        "package chaperone.authz\n\ndecision := {\"allowed\": true, \"reason\": \"digits\", \"rule\": \"regex\"} if regex.match(`^\\d+$`, input.parsed_path[1])\n",
    );
    println!("  cached ES256 token, one regex.match  {regex:>9.1} us");
    let glob = with_policy(
        "package chaperone.authz\n\ndecision := {\"allowed\": true, \"reason\": \"tickets\", \"rule\": \"glob\"} if glob.match(\"/tickets/*\", [\"/\"], input.attributes.request.http.path)\n",
    );
    println!("  cached ES256 token, one glob.match   {glob:>9.1} us");
    // A forged token (another key under the configured kid), refused once by its signature
    // and from then on from memory.
    let forged = ES256KeyPair::generate()
        .with_key_id("es")
        .sign(claims("support-bot"))
        .expect("sign");
    let refused = repeated(iterations, &loaded, &mut runtime, &forged, "GET", now);
    println!("  forged ES256 token, refused again   {refused:>9.1} us");
    let mode = std::env::args().nth(2);
    if mode.as_deref() == Some("cached") {
        return; // profiling the steady state alone
    }
    if mode.as_deref() != Some("no-scale") {
        scale(iterations, &es, &rs, &ed, &policy, &es_token, now);
        tokens_in_use(iterations, &es, &rs, &ed, &policy, now);
    }

    // First sight: a fresh token every time (signature verified), cache off; and the
    // signature check of the same tokens alone (issue 8's targets are on that).
    let jwks = config_json(&es, &rs, &ed, json!({}), json!({}))["issuers"][0]["local_jwks"].clone();
    let first_sight = |label: &str, algorithm: Algorithm, mint: &dyn Fn(u32) -> String| {
        let rounds = (iterations / 10).max(20);
        // One token per call, warm-up calls included.
        let tokens: Vec<String> = (0..rounds + rounds / 10 + 1).map(mint).collect();
        let mut index = 0usize;
        let decided = measure(rounds, |_| {
            let mut runtime = Runtime::new(&loaded, 1);
            index += 1;
            decide(
                &loaded,
                &mut runtime,
                &facts(&tokens[index - 1], "GET", "/tickets/42", now),
            )
        });
        let key = admit_key_set(&jwks, &[algorithm], "bench")
            .expect("the bench keys")
            .remove(0);
        let signed: Vec<(&str, Vec<u8>)> = tokens
            .iter()
            .map(|token| {
                let (input, signature) = token.rsplit_once('.').expect("a JWS");
                let signature = base64url_decode(signature.as_bytes()).expect("base64url");
                (input, signature)
            })
            .collect();
        let mut index = 0usize;
        let verified = measure(rounds, |_| {
            index += 1;
            let (input, signature) = &signed[index - 1];
            assert!(key.verify(input.as_bytes(), signature));
        });
        println!("  first-seen {label:<25}{decided:>9.1} us (signature alone {verified:.1} us)");
    };
    first_sight("ES256 token", Algorithm::ES256, &|i| {
        es.sign(claims("support-bot").with_jwt_id(i.to_string()))
            .expect("sign")
    });
    first_sight("RS256 token (2048)", Algorithm::RS256, &|i| {
        rs.sign(claims("support-bot").with_jwt_id(i.to_string()))
            .expect("sign")
    });
    first_sight("EdDSA token", Algorithm::EdDSA, &|i| {
        ed.sign(claims("support-bot").with_jwt_id(i.to_string()))
            .expect("sign")
    });
}

/// The bundle with its registry grown to each of `REGISTRY_SIZES` (copies of `support-bot`
/// under other names and owners): the configuration's load time (what a reload costs the
/// VM), the heap it occupies, and the cached-token allow.
#[allow(clippy::too_many_arguments)]
fn scale(
    iterations: u32,
    es: &ES256KeyPair,
    rs: &RS256KeyPair,
    ed: &Ed25519KeyPair,
    policy: &Value,
    token: &str,
    now: u64,
) {
    println!("  registry size: load (ms), heap after load (MiB), cached allow (us)");
    for size in REGISTRY_SIZES {
        let text = config_json(
            es,
            rs,
            ed,
            with_registry_of(policy, size),
            evaluate_every_request(),
        )
        .to_string();
        let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
        let started = Instant::now();
        let loaded = load(text.as_bytes()).expect("the grown configuration loads");
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let heap_mib = mib(LIVE_BYTES
            .load(Ordering::Relaxed)
            .saturating_sub(heap_before));
        drop(text);
        let mut runtime = Runtime::new(&loaded, 1);
        let allowed = repeated(iterations, &loaded, &mut runtime, token, "GET", now);
        println!("  {size:>13} {load_ms:>9.1} {heap_mib:>9.1} {allowed:>9.1}");
    }
}

/// Many agents calling at once, each with its own (EdDSA) token, taken in turn: with the
/// default `limits.max_cached_tokens` every request verifies a signature; with room for
/// them all, each is verified once. Also what the filled cache occupies per token.
fn tokens_in_use(
    iterations: u32,
    es: &ES256KeyPair,
    rs: &RS256KeyPair,
    ed: &Ed25519KeyPair,
    policy: &Value,
    now: u64,
) {
    const AGENTS: usize = 4_000;
    let policy = with_registry_of(policy, AGENTS);
    let tokens: Vec<String> = (0..AGENTS)
        .map(|i| {
            let mut claims = Claims::create(Duration::from_secs(600))
                .with_issuer(ISSUER)
                .with_audience("agents-api")
                .with_subject(scale_agent(i));
            claims.issued_at = Some(Duration::from_secs(now - 5));
            ed.sign(claims).expect("sign")
        })
        .collect();
    println!("  {AGENTS} agents' tokens in turn: max_cached_tokens, allowed (us), heap per cached token (KiB)");
    for capacity in [1024, 8192] {
        let mut limits = evaluate_every_request();
        limits["max_cached_tokens"] = json!(capacity);
        let config = config_json(es, rs, ed, policy.clone(), limits).to_string();
        let loaded = load(config.as_bytes()).expect("the configuration loads");
        let mut runtime = Runtime::new(&loaded, 1);
        let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
        for token in &tokens {
            decide(
                &loaded,
                &mut runtime,
                &facts(token, "GET", "/tickets/42", now),
            );
        }
        let cached = runtime.cache.len().max(1);
        let per_token_kib = LIVE_BYTES
            .load(Ordering::Relaxed)
            .saturating_sub(heap_before) as f64
            / 1024.0
            / cached as f64;
        let mut turn = 0;
        let allowed = measure(iterations, |_| {
            turn = (turn + 1) % AGENTS;
            decide(
                &loaded,
                &mut runtime,
                &facts(&tokens[turn], "GET", "/tickets/42", now),
            )
        });
        println!("  {capacity:>13} {allowed:>9.1} {per_token_kib:>9.2}");
    }
}

/// The bundle with its registry grown to `size` agents: copies of `support-bot` under other
/// names (`scale_agent(i)`) and owners.
fn with_registry_of(policy: &Value, size: usize) -> Value {
    let mut grown = policy.clone();
    let agents = grown["data"]["chaperone"]["registry"]["agents"]
        .as_object_mut()
        .expect("the bundle's registry");
    let template = agents["support-bot"].clone();
    for i in 0..size.saturating_sub(agents.len()) {
        let mut agent = template.clone();
        agent["owner"] = json!(format!("owner-{i}@example.com"));
        agents.insert(scale_agent(i), agent);
    }
    grown
}

fn scale_agent(i: usize) -> String {
    format!("scale-agent-{i:06}")
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / 1048576.0
}

fn target() -> &'static str {
    if cfg!(target_arch = "wasm32") {
        "wasm32 (run it under V8 to see the plugin's cost)"
    } else {
        "native"
    }
}

/// Median microseconds of deciding `METHOD /tickets/42` with `token`, again and again on
/// one runtime (after the first time, from its caches).
fn repeated(
    iterations: u32,
    loaded: &Loaded,
    runtime: &mut Runtime,
    token: &str,
    method: &str,
    now: u64,
) -> f64 {
    measure(iterations, |_| {
        decide(loaded, runtime, &facts(token, method, "/tickets/42", now))
    })
}

/// The cached-token allow by stage, from the decision's own timers (`decide_timed`, as the
/// plugin times its records): the token (cache lookup, registry, grants), the policy
/// evaluation, and the rest (request line, input, record); medians in us. A run apart from
/// the row's figure, which stays free of the timers' cost.
fn stages(
    iterations: u32,
    loaded: &Loaded,
    runtime: &mut Runtime,
    token: &str,
    now: u64,
) -> String {
    let epoch = Instant::now();
    let clock = || epoch.elapsed().as_nanos() as u64;
    let mut timers: Vec<[u64; 3]> = (0..iterations)
        .map(|_| {
            let request = facts(token, "GET", "/tickets/42", now);
            let started = clock();
            let mut decision = decide_timed(loaded, runtime, &request, started, &clock);
            decision.record.metrics.finish(started, clock());
            assert!(decision.allowed);
            let metrics = &decision.record.metrics;
            [
                metrics.timer_token_ns,
                metrics.timer_rego_query_eval_ns,
                metrics
                    .timer_total_ns
                    .saturating_sub(metrics.timer_token_ns + metrics.timer_rego_query_eval_ns),
            ]
        })
        .collect();
    let mut median = |stage: usize| {
        timers.sort_by_key(|t| t[stage]);
        timers[timers.len() / 2][stage] as f64 / 1e3
    };
    let (token, policy, rest) = (median(0), median(1), median(2));
    format!("token {token:.1}, policy {policy:.1}, the rest {rest:.1} us")
}

/// Median microseconds of `iterations` runs of `f`, after a warm-up.
fn measure<T>(iterations: u32, mut f: impl FnMut(u32) -> T) -> f64 {
    for i in 0..(iterations / 10).max(1) {
        std::hint::black_box(f(i));
    }
    let mut samples: Vec<f64> = (0..iterations)
        .map(|i| {
            let started = Instant::now();
            std::hint::black_box(f(i));
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn facts(token: &str, method: &str, path: &str, now: u64) -> RequestFacts {
    RequestFacts {
        headers: vec![
            (b":method".to_vec(), method.as_bytes().to_vec()),
            (b":path".to_vec(), path.as_bytes().to_vec()),
            (b":authority".to_vec(), b"gateway".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b"user-agent".to_vec(), b"agent-sdk/1.0".to_vec()),
            (
                b"x-request-id".to_vec(),
                b"5f1c2a9e-1d3b-4c6a-9e8f-0a1b2c3d4e5f".to_vec(),
            ),
            (
                b"authorization".to_vec(),
                format!("Bearer {token}").into_bytes(),
            ),
        ],
        decision_id: "bench".to_owned(),
        now_ns: now * 1_000_000_000,
        ..RequestFacts::default()
    }
}

fn configuration(
    es: &ES256KeyPair,
    rs: &RS256KeyPair,
    ed: &Ed25519KeyPair,
    policy: Value,
    limits: Value,
) -> Loaded {
    load(
        config_json(es, rs, ed, policy, limits)
            .to_string()
            .as_bytes(),
    )
    .expect("the bench configuration loads")
}

/// `limits` under which no answer is remembered: the figures of the policy's evaluation
/// (and comparable with sections written before answers were remembered).
fn evaluate_every_request() -> Value {
    json!({"max_cached_decisions": 0})
}

/// The plugin configuration: one issuer with the three keys, the bundle, the registry on,
/// and these `limits`.
fn config_json(
    es: &ES256KeyPair,
    rs: &RS256KeyPair,
    ed: &Ed25519KeyPair,
    mut policy: Value,
    limits: Value,
) -> Value {
    let point = es.public_key().public_key().to_bytes_uncompressed();
    let rsa = rs.public_key().to_components();
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "es", "x": base64url_encode(&point[1..33]), "y": base64url_encode(&point[33..65])},
        {"kty": "RSA", "kid": "rs", "n": base64url_encode(&rsa.n), "e": base64url_encode(&rsa.e)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": base64url_encode(&ed.public_key().to_bytes())},
    ]});
    policy["decision_path"] = json!("chaperone/authz/decision");
    json!({
        "issuers": [{"issuer": ISSUER, "audiences": ["agents-api"], "local_jwks": jwks}],
        "policy": policy,
        "registry": {},
        "limits": limits,
    })
}
