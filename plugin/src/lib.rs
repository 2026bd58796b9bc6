//! chaperone as a proxy-wasm HTTP filter: gathers request facts from the host, asks
//! `chaperone_core::decide`, applies the decision and writes the decision record.
//! Everything that decides lives in `chaperone-core`; this crate only talks to the host.

mod host;
mod keys;

use chaperone_core::decision::DECISION_ID_HEADER;
use chaperone_core::input::HeaderPairs;
use chaperone_core::{decide, Decision, Loaded, RequestFacts, Runtime};
use keys::{GatewayStore, KeyMetrics};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How often a VM with remote key sets checks on them: adopt what another worker fetched,
/// refresh when due, refetch after an unknown `kid`. Cheap when nothing is due.
const KEY_TICK_MS: u32 = 250;

/// Pseudo-headers chaperone reads. Kong synthesises them on lookup rather than listing them
/// among the header pairs, so any that are missing from the pairs are fetched one by one.
const PSEUDO_HEADERS: [&str; 4] = [":method", ":path", ":authority", ":scheme"];

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &format!("chaperone: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ChaperoneRoot::default()) });
}}

/// One per plugin configuration per VM. Until a configuration arrives, requests fail closed.
struct ChaperoneRoot {
    loaded: Rc<Loaded>,
    /// This VM's state for the current configuration (verified tokens, fetched keys),
    /// shared by its requests.
    runtime: Rc<RefCell<Runtime>>,
    /// Record sequence number, shared by every request of this VM.
    seq: Rc<Cell<u64>>,
    store: GatewayStore,
    metrics: Option<KeyMetrics>,
    /// Random per VM: tells this VM's key-fetch leases apart from other workers'.
    vm_nonce: u64,
}

impl Default for ChaperoneRoot {
    fn default() -> Self {
        let mut nonce = [0u8; 8];
        let _ = getrandom::getrandom(&mut nonce);
        let vm_nonce = u64::from_le_bytes(nonce) ^ host::now_ns();
        let loaded = Loaded::Empty;
        Self {
            runtime: Rc::new(RefCell::new(Runtime::new(&loaded, vm_nonce))),
            loaded: Rc::new(loaded),
            seq: Rc::new(Cell::new(0)),
            store: GatewayStore::default(),
            metrics: None,
            vm_nonce,
        }
    }
}

impl ChaperoneRoot {
    /// Runs key work for the current configuration, if any of its issuers is remote.
    fn key_tick(&mut self) {
        let Ok(mut runtime) = self.runtime.try_borrow_mut() else {
            return;
        };
        if runtime.keys.is_empty() {
            return;
        }
        let metrics = self.metrics.get_or_insert_with(KeyMetrics::define);
        let work = runtime.tick(&self.store, host::now_ms());
        keys::carry_out(&mut runtime, &self.store, metrics, work);
    }
}

impl Context for ChaperoneRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Ok(mut runtime) = self.runtime.try_borrow_mut() else {
            return;
        };
        let metrics = self.metrics.get_or_insert_with(KeyMetrics::define);
        keys::on_response(&mut runtime, &self.store, metrics, token_id, body_size);
    }
}

impl RootContext for ChaperoneRoot {
    fn on_configure(&mut self, _configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration() {
            Ok(bytes) => bytes,
            Err(status) => {
                host::log(
                    LogLevel::Error,
                    &format!("chaperone: cannot read configuration: {status:?}"),
                );
                return false;
            }
        };
        match chaperone_core::load(&bytes) {
            Ok(loaded) => {
                let summary = match &loaded {
                    Loaded::Empty => {
                        "empty configuration: every request is denied with 503 policy_unavailable"
                            .to_owned()
                    }
                    Loaded::Ready(c) => format!(
                        "configured: {} issuer(s), policy `{}` revision `{}`, decision path `{}`",
                        c.issuers.len(),
                        c.policy.name,
                        c.policy.revision,
                        c.policy.decision_path
                    ),
                };
                host::log(
                    LogLevel::Info,
                    &format!("chaperone {}: {summary}", env!("CARGO_PKG_VERSION")),
                );
                // Requests already in flight keep the configuration they started with.
                self.runtime = Rc::new(RefCell::new(Runtime::new(&loaded, self.vm_nonce)));
                self.loaded = Rc::new(loaded);
                let has_remote_keys = self
                    .runtime
                    .try_borrow()
                    .is_ok_and(|runtime| !runtime.keys.is_empty());
                let period = if has_remote_keys { KEY_TICK_MS } else { 0 };
                if let Err(error) = host::set_tick_period_ms(period) {
                    host::log(
                        LogLevel::Error,
                        &format!("chaperone: cannot set the key refresh timer: {error}"),
                    );
                    return !has_remote_keys;
                }
                // Fetch (or adopt) keys now rather than at the first tick.
                self.key_tick();
                true
            }
            Err(error) => {
                host::log(
                    LogLevel::Error,
                    &format!("chaperone: configuration rejected: {error}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.key_tick();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ChaperoneFilter {
            loaded: Rc::clone(&self.loaded),
            runtime: Rc::clone(&self.runtime),
            seq: Rc::clone(&self.seq),
            allowed_decision_id: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ChaperoneFilter {
    loaded: Rc<Loaded>,
    runtime: Rc<RefCell<Runtime>>,
    seq: Rc<Cell<u64>>,
    /// Set when the request went upstream, so the response can carry the decision id.
    allowed_decision_id: Option<String>,
}

impl Context for ChaperoneFilter {}

impl HttpContext for ChaperoneFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let started_ns = host::now_ns();
        let facts = RequestFacts {
            headers: read_request_headers(),
            decision_id: new_decision_id(started_ns, self.seq.get()),
            now_ns: started_ns,
        };
        // Callbacks never nest within one VM, so the borrow cannot be held elsewhere; if it
        // somehow were, decide with empty state (fetched keys missing: fail closed) rather
        // than panic.
        let mut decision = match self.runtime.try_borrow_mut() {
            Ok(mut runtime) => decide(&self.loaded, &mut runtime, &facts),
            Err(_) => decide(&self.loaded, &mut Runtime::new(&Loaded::Empty, 0), &facts),
        };
        let action = self.apply(&decision);
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        decision.record.seq = seq;
        decision.record.latency_us = host::now_ns().saturating_sub(started_ns) / 1_000;
        host::log(LogLevel::Info, &decision.record.to_json());
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(decision_id) = &self.allowed_decision_id {
            let _ = host::add_header(
                MapType::HttpResponseHeaders,
                DECISION_ID_HEADER,
                decision_id,
            );
        }
        Action::Continue
    }
}

impl ChaperoneFilter {
    fn apply(&mut self, decision: &Decision) -> Action {
        for name in &decision.strip_headers {
            if host::remove_request_header(name).is_err() {
                // A spoofed identity header we cannot remove must not reach the upstream.
                return self.fail_closed(decision);
            }
        }
        publish_filter_state(decision);
        if !decision.allowed {
            let details = format!("chaperone_{}", decision.reason.code());
            if let Err(status) = host::send_local_response(
                decision.status,
                &details,
                &decision.response_headers,
                &decision.response_body,
            ) {
                host::log(
                    LogLevel::Error,
                    &format!("chaperone: local reply failed: {status:?}"),
                );
            }
            return Action::Pause;
        }
        for (name, value) in &decision.upstream_headers {
            if host::add_header(MapType::HttpRequestHeaders, name, value).is_err() {
                return self.fail_closed(decision);
            }
        }
        self.allowed_decision_id = Some(decision.record.decision_id.clone());
        Action::Continue
    }

    fn fail_closed(&self, decision: &Decision) -> Action {
        host::log(
            LogLevel::Error,
            "chaperone: cannot rewrite request headers; denying",
        );
        let body = format!(
            "{{\"decision_id\":\"{}\",\"reason\":\"internal_error\",\"status\":500}}",
            decision.record.decision_id
        );
        let headers = [("content-type".to_owned(), "application/json".to_owned())];
        let _ =
            host::send_local_response(500, "chaperone_internal_error", &headers, body.as_bytes());
        Action::Pause
    }
}

/// Header pairs as bytes, with pseudo-headers the host did not list fetched individually.
/// A host error yields an empty map: the request then lacks a token and a request line,
/// and is denied.
fn read_request_headers() -> HeaderPairs {
    let mut headers = host::request_headers().unwrap_or_default();
    for name in PSEUDO_HEADERS {
        if !headers.iter().any(|(n, _)| n == name.as_bytes()) {
            if let Ok(Some(value)) = host::request_header(name) {
                headers.push((name.as_bytes().to_vec(), value));
            }
        }
    }
    headers
}

/// Filter state for Envoy access logs: `%FILTER_STATE(wasm.chaperone.decision_id:PLAIN)%`.
fn publish_filter_state(decision: &Decision) {
    let record = &decision.record;
    let verdict: &[u8] = if decision.allowed { b"allow" } else { b"deny" };
    let _ = host::set_property("chaperone.decision_id", record.decision_id.as_bytes());
    let _ = host::set_property("chaperone.decision", verdict);
    let _ = host::set_property("chaperone.reason", record.reason.as_bytes());
    if let Some(agent) = &record.agent {
        let _ = host::set_property("chaperone.agent_id", agent.id.as_bytes());
    }
}

/// A random UUID (version 4). If the host has no randomness, time and sequence keep ids unique
/// within this VM.
fn new_decision_id(now_ns: u64, seq: u64) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&now_ns.to_be_bytes());
        bytes[8..].copy_from_slice(&seq.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
