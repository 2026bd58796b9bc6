//! chaperone as a proxy-wasm HTTP filter: gathers request facts from the host, asks
//! `chaperone_core::decide_timed`, applies the decision and writes the decision record.
//! Everything that decides lives in `chaperone-core`; this crate only talks to the host.

mod host;
mod keys;
mod metrics;
mod records;

use chaperone_core::decision::{refuse, DECISION_ID_HEADER};
use chaperone_core::decision_log::KeyField;
use chaperone_core::export::Exporter;
use chaperone_core::input::HeaderPairs;
use chaperone_core::record::DecisionIds;
use chaperone_core::runtime::CacheStats;
use chaperone_core::{
    decide_timed, rewrite_before_body, Decision, HeaderRewrite, Loaded, Peer, Reason, RequestBody,
    RequestFacts, Runtime, SocketAddress,
};
use keys::GatewayStore;
use metrics::{Metrics, DECISION_DURATION};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use records::HostKind;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How often a VM with remote key sets checks on them: adopt what another worker fetched,
/// refresh when due, refetch after an unknown `kid`. Cheap when nothing is due.
const KEY_TICK_MS: u64 = 250;

/// Pseudo-headers chaperone reads. Kong synthesises them on lookup rather than listing them
/// among the header pairs, so any that are missing from the pairs are fetched one by one.
const PSEUDO_HEADERS: [&str; 4] = [":method", ":path", ":authority", ":scheme"];

/// Blocks of up to 512 bytes come from per-size free lists (`small_alloc`), which makes a
/// decision about a fifth faster in V8 than talc alone; the rest from talc rather than
/// wasi-libc's dlmalloc: once a large configuration had been loaded, dlmalloc's heap made each
/// decision 8 to 11 us slower (100,000 registered agents), where talc's stays flat
/// (BENCHMARKS.md, 2026-11-25 (third) and (sixth)).
#[cfg(target_family = "wasm")]
#[global_allocator]
static ALLOCATOR: chaperone_core::small_alloc::SmallAlloc<talc::wasm::WasmDynamicTalc> =
    chaperone_core::small_alloc::SmallAlloc::new(talc::wasm::new_wasm_dynamic_allocator());

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &format!("chaperone: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ChaperoneRoot::default()) });
}}

/// One configuration and the state its requests share in this VM.
struct Active {
    loaded: Loaded,
    /// Verified tokens and fetched keys.
    runtime: RefCell<Runtime>,
    /// Records on their way to the collector, when one is configured.
    exporter: RefCell<Option<Exporter>>,
}

/// What every request of the VM shares, whatever the configuration.
struct Vm {
    /// Record sequence number: one per decision of this VM.
    seq: Cell<u64>,
    /// Random per VM: names the VM in records (`labels.instance`, the sequence's owner) and
    /// tells its key-fetch leases apart from other workers'.
    nonce: u64,
    instance: String,
    /// Decision ids, under a random key drawn once per VM.
    ids: DecisionIds,
    /// The caches' secret key, drawn once per VM (`cache::TokenKey`); `None` when the host
    /// gave no random bytes, and then no policy answer is remembered.
    secret_key: Option<[u8; 16]>,
    kind: Cell<HostKind>,
    metrics: Metrics,
    /// Where workers share fetched key sets.
    store: GatewayStore,
}

/// One per plugin configuration per VM. Until a configuration arrives, requests fail closed.
struct ChaperoneRoot {
    active: Rc<Active>,
    vm: Rc<Vm>,
}

impl Default for ChaperoneRoot {
    fn default() -> Self {
        // Without randomness from the host, the start time still tells VMs apart, and the
        // sequence number keeps decision ids unique within one; but the caches' key would be
        // the nonce every record shows, so no answer is remembered (`with_secret_key`).
        let mut random = [0u8; 40];
        let random_from_host = getrandom::getrandom(&mut random).is_ok();
        if !random_from_host {
            host::log(
                LogLevel::Error,
                "chaperone: the host gave no random bytes; policy answers will not be remembered",
            );
        }
        let now_ns = host::now_ns();
        for (byte, time) in random.iter_mut().zip(now_ns.to_le_bytes().iter().cycle()) {
            *byte ^= time;
        }
        let (nonce, keys) = random.split_at(8);
        let (id_key, secret_key) = keys.split_at(16);
        let nonce = u64::from_le_bytes(nonce.try_into().unwrap_or_default());
        let secret_key: Option<[u8; 16]> = secret_key.try_into().ok().filter(|_| random_from_host);
        Self {
            active: Rc::new(Active {
                runtime: RefCell::new(Runtime::new(&Loaded::Empty, nonce)),
                loaded: Loaded::Empty,
                exporter: RefCell::new(None),
            }),
            vm: Rc::new(Vm {
                seq: Cell::new(0),
                nonce,
                instance: format!("{nonce:016x}"),
                ids: DecisionIds::new(id_key.try_into().unwrap_or_default()),
                secret_key,
                kind: Cell::new(HostKind::Envoy),
                metrics: Metrics::default(),
                store: GatewayStore::default(),
            }),
        }
    }
}

impl ChaperoneRoot {
    /// Periodic work of the current configuration: key sets and record batches.
    fn tick(&mut self) {
        if let Ok(mut runtime) = self.active.runtime.try_borrow_mut() {
            if !runtime.keys.is_empty() {
                let work = runtime.tick(&self.vm.store, host::now_ms());
                keys::carry_out(&mut runtime, &self.vm.store, &self.vm.metrics, work);
            }
        }
        if let Ok(mut exporter) = self.active.exporter.try_borrow_mut() {
            if let Some(exporter) = exporter.as_mut() {
                records::flush(exporter, &self.vm.metrics);
            }
        }
    }

    /// Installs a configuration that loaded: new state, the collector's unsent records carried
    /// over, the timer set for what it needs.
    fn install(&mut self, loaded: Loaded) -> bool {
        let now_ms = host::now_ms();
        let collector = loaded.decision_log().and_then(|log| log.collector.clone());
        let previous = self
            .active
            .exporter
            .try_borrow_mut()
            .ok()
            .and_then(|mut e| e.take());
        let exporter = collector.as_ref().map(|collector| {
            let mut exporter = Exporter::new(collector.clone(), now_ms);
            if let Some(previous) = previous {
                exporter.adopt(previous);
            }
            exporter
        });
        let runtime = Runtime::new(&loaded, self.vm.nonce);
        let runtime = match self.vm.secret_key {
            Some(key) => runtime.with_secret_key(key),
            None => runtime,
        };
        let has_remote_keys = !runtime.keys.is_empty();
        // Requests already in flight keep the configuration they started with.
        self.active = Rc::new(Active {
            loaded,
            runtime: RefCell::new(runtime),
            exporter: RefCell::new(exporter),
        });
        let period = match (&collector, has_remote_keys) {
            (Some(collector), _) => collector.flush_interval_ms.min(KEY_TICK_MS),
            (None, true) => KEY_TICK_MS,
            (None, false) => 0,
        };
        if let Err(error) = host::set_tick_period_ms(u32::try_from(period).unwrap_or(u32::MAX)) {
            host::log(
                LogLevel::Error,
                &format!(
                    "chaperone: cannot set the timer for key sets and record batches: {error}"
                ),
            );
            return period == 0;
        }
        // Adopt keys other workers already fetched now; fetching waits for the first tick
        // (Kong's host takes outbound calls from ticks and requests, not from on_configure).
        if let Ok(mut runtime) = self.active.runtime.try_borrow_mut() {
            let work = runtime.adopt(&self.vm.store);
            keys::carry_out(&mut runtime, &self.vm.store, &self.vm.metrics, work);
        }
        true
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
        if let Ok(mut exporter) = self.active.exporter.try_borrow_mut() {
            if let Some(exporter) = exporter.as_mut() {
                if records::on_response(exporter, &self.vm.metrics, token_id) {
                    return;
                }
            }
        }
        if let Ok(mut runtime) = self.active.runtime.try_borrow_mut() {
            keys::on_response(
                &mut runtime,
                &self.vm.store,
                &self.vm.metrics,
                token_id,
                body_size,
            );
        }
    }
}

impl RootContext for ChaperoneRoot {
    fn on_configure(&mut self, _configuration_size: usize) -> bool {
        let (kind, has_metrics) = HostKind::detect();
        self.vm.kind.set(kind);
        self.vm.metrics.enable(has_metrics);
        let bytes = match host::plugin_configuration() {
            Ok(bytes) => bytes,
            Err(status) => {
                host::log(
                    LogLevel::Error,
                    &format!("chaperone: cannot read configuration: {status}"),
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
                        "configured: {} issuer(s), policy `{}` revision `{}`, decision path `{}`{}",
                        c.issuers.len(),
                        c.policy.name,
                        c.policy.revision,
                        c.policy.decision_path,
                        if c.dry_run { ", dry-run" } else { "" }
                    ),
                };
                host::log(
                    LogLevel::Info,
                    &format!("chaperone {}: {summary}", env!("CARGO_PKG_VERSION")),
                );
                if let Some(warning) = loaded.body_warning() {
                    host::log(LogLevel::Warn, &format!("chaperone: {warning}"));
                }
                self.install(loaded)
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
        self.tick();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ChaperoneFilter {
            active: Rc::clone(&self.active),
            vm: Rc::clone(&self.vm),
            allowed_decision_id: None,
            awaiting_body: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ChaperoneFilter {
    active: Rc<Active>,
    vm: Rc<Vm>,
    /// Set when the request went upstream, so the response can carry the decision id.
    allowed_decision_id: Option<String>,
    /// A request held for its body, which the policy reads.
    awaiting_body: Option<AwaitingBody>,
}

/// A request whose decision waits for its body: what was known at its headers.
struct AwaitingBody {
    facts: RequestFacts,
    seq: u64,
    /// What the token caches did for it at its headers, counted once it is decided.
    token_stats: CacheStats,
    /// The most of the body the policy is given.
    limit: usize,
}

impl Context for ChaperoneFilter {}

impl ChaperoneFilter {
    /// The cache counts since they were last taken.
    fn take_cache_stats(&self) -> CacheStats {
        self.active
            .runtime
            .try_borrow_mut()
            .map(|mut runtime| std::mem::take(&mut runtime.cache_stats))
            .unwrap_or_default()
    }

    /// A request held for its body is counted once: its token lookups from its headers
    /// (`token_stats`), its verdict lookups from its decision with the body, if it had one.
    fn count_held_request(&self, token_stats: CacheStats) {
        let with_body = self.take_cache_stats();
        if let Ok(mut runtime) = self.active.runtime.try_borrow_mut() {
            runtime.cache_stats = CacheStats {
                decision_hits: with_body.decision_hits,
                decision_misses: with_body.decision_misses,
                ..token_stats
            };
        }
    }

    /// A request held for its body that ended without it (the client went away, a timeout):
    /// its record says so.
    fn record_abandoned(&mut self) {
        if let Some(awaiting) = self.awaiting_body.take() {
            let mut decision = refuse(
                &self.active.loaded,
                &awaiting.facts,
                Reason::RequestBodyIncomplete,
            );
            self.count_held_request(awaiting.token_stats);
            self.stamp(&mut decision, awaiting.seq);
            self.publish(&decision);
            self.account(&mut decision, host::now_ns());
        }
    }
}

impl HttpContext for ChaperoneFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = read_request_headers();
        // The request's time, and where the record's timers start: copying the header pairs
        // in is the host's work.
        let started_ns = host::now_ns();
        let seq = self.vm.seq.get().wrapping_add(1);
        self.vm.seq.set(seq);
        let peers = self.active.loaded.peer_reads();
        let facts = RequestFacts {
            headers,
            decision_id: self.vm.ids.id(seq),
            now_ns: started_ns,
            source: self.read_peer(peers.source, "source", &CLIENT_CERTIFICATE),
            // Kong's `destination` is the PROXY protocol's address (the client's, behind a
            // balancer), not the gateway's: left out there.
            destination: self.read_peer(
                peers.destination && self.vm.kind.get() == HostKind::Envoy,
                "destination",
                &GATEWAY_CERTIFICATE,
            ),
            body: None,
        };
        let limit = match self.active.loaded.body_limit() {
            None => return self.finish(facts, started_ns, seq),
            // No body: the policy sees an empty one.
            Some(_) if end_of_stream => {
                let facts = RequestFacts {
                    body: Some(RequestBody::default()),
                    ..facts
                };
                return self.finish(facts, started_ns, seq);
            }
            Some(limit) => limit,
        };
        // The policy reads the body, which a Proxy-Wasm filter gets only once the headers go
        // on: refused now if the headers alone refuse it, else rewritten for the verified
        // agent and decided on with the body (`on_http_request_body`). README, "Request
        // bodies", says what must hold the request back from the upstream meanwhile.
        let first = self.decide(&facts, started_ns);
        let Some(rewrite) = rewrite_before_body(&self.active.loaded, &first, &facts) else {
            return self.conclude(first, started_ns, seq);
        };
        if self.rewrite(&rewrite).is_err() {
            let mut decision = first;
            self.stamp(&mut decision, seq);
            let action = self.fail_closed(&mut decision);
            self.account(&mut decision, started_ns);
            return action;
        }
        // The token caches were asked here; the verdict cache is asked again with the body.
        self.awaiting_body = Some(AwaitingBody {
            facts,
            seq,
            limit,
            token_stats: self.take_cache_stats(),
        });
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.awaiting_body {
            None => Action::Continue,
            // Buffered by the host until the whole body is in, or more than the policy is given.
            Some(awaiting) if !end_of_stream && body_size <= awaiting.limit => Action::Pause,
            Some(_) => self.decide_with_body(body_size),
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end a body whose last part did not say it was the last (gRPC).
        match self.awaiting_body.as_ref().map(|awaiting| awaiting.limit) {
            None => Action::Continue,
            Some(limit) => self.decide_with_body(limit.saturating_add(1)),
        }
    }

    fn on_log(&mut self) {
        self.record_abandoned();
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // The upstream answered a request still held for its body (no buffer filter after
        // chaperone, README "Request bodies"): its answer is not the client's.
        if let Some(awaiting) = self.awaiting_body.take() {
            host::log(
                LogLevel::Error,
                "chaperone: the upstream answered before the policy had the request's body; put \
                 Envoy's buffer filter after chaperone (README, \"Request bodies\")",
            );
            let decision = refuse(
                &self.active.loaded,
                &awaiting.facts,
                Reason::AnsweredBeforeDecision,
            );
            self.count_held_request(awaiting.token_stats);
            return self.conclude(decision, host::now_ns(), awaiting.seq);
        }
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
    /// Decides, applies and accounts for a request.
    fn finish(&mut self, facts: RequestFacts, started_ns: u64, seq: u64) -> Action {
        let decision = self.decide(&facts, started_ns);
        self.conclude(decision, started_ns, seq)
    }

    /// Applies and accounts for a decision.
    fn conclude(&mut self, mut decision: Decision, started_ns: u64, seq: u64) -> Action {
        self.stamp(&mut decision, seq);
        let action = self.apply(&mut decision);
        self.account(&mut decision, started_ns);
        action
    }

    /// What the plugin adds to a record: the request's sequence number and the VM's instance.
    fn stamp(&self, decision: &mut Decision, seq: u64) {
        decision.record.seq = seq;
        decision
            .record
            .labels
            .insert("instance".to_owned(), self.vm.instance.clone());
    }

    /// The headers of a request held for its body, rewritten for its verified agent.
    fn rewrite(&self, rewrite: &HeaderRewrite) -> Result<(), host::HostError> {
        for name in &rewrite.strip {
            host::remove_request_header(name)?;
        }
        for (name, value) in &rewrite.add {
            host::add_header(MapType::HttpRequestHeaders, name, value)?;
        }
        Ok(())
    }

    /// Decides a request held for its body, with as much of the body as the host buffered
    /// (`body_size` bytes, of which the policy gets at most its limit: one more is read to
    /// know the body went on). A body the host cannot give is decided on as absent.
    fn decide_with_body(&mut self, body_size: usize) -> Action {
        let Some(awaiting) = self.awaiting_body.take() else {
            return Action::Continue;
        };
        let body = host::request_body(body_size.min(awaiting.limit.saturating_add(1)))
            .ok()
            .map(|bytes| RequestBody::read(bytes, awaiting.limit));
        let facts = RequestFacts {
            body,
            ..awaiting.facts
        };
        // The headers were rewritten before the body came and cannot change now: a policy's
        // own upstream headers are not added (README, "Request bodies").
        let started_ns = host::now_ns();
        let mut decision = self.decide(&facts, started_ns);
        decision.strip_headers.clear();
        decision.upstream_headers.clear();
        self.count_held_request(awaiting.token_stats);
        self.conclude(decision, started_ns, awaiting.seq)
    }

    /// One end of the connection, asked of the host only when the policy reads it. The
    /// principal comes from Envoy's TLS attributes, which Kong does not have.
    fn read_peer(&self, wanted: bool, side: &str, certificate: &Certificate) -> Peer {
        if !wanted {
            return Peer::default();
        }
        Peer {
            address: read_address(side),
            principal: (self.vm.kind.get() == HostKind::Envoy)
                .then(|| read_principal(certificate))
                .flatten(),
        }
    }

    /// The decision for `facts`, its timers running from `started_ns` (the request's time, or
    /// when its body came in: the upload is the client's time, not chaperone's).
    fn decide(&self, facts: &RequestFacts, started_ns: u64) -> Decision {
        let active = &self.active;
        // With `when_full: deny`, a request whose record cannot be kept is not served.
        let full = active.exporter.try_borrow().is_ok_and(|exporter| {
            exporter
                .as_ref()
                .is_some_and(|e| e.deny_when_full() && !e.has_room())
        });
        if full {
            return refuse(&active.loaded, facts, Reason::DecisionLogUnavailable);
        }
        // Callbacks never nest within one VM, so the borrow cannot be held elsewhere; if it
        // somehow were, decide with empty state (fetched keys missing: fail closed) rather
        // than panic.
        let clock = || host::now_ns();
        match active.runtime.try_borrow_mut() {
            Ok(mut runtime) => {
                // Keys another worker fetched since this VM's last tick count already.
                if runtime.keys.missing_keys(facts.now_ns / 1_000_000) {
                    let work = runtime.adopt(&self.vm.store);
                    keys::carry_out(&mut runtime, &self.vm.store, &self.vm.metrics, work);
                }
                decide_timed(&active.loaded, &mut runtime, facts, started_ns, &clock)
            }
            Err(_) => decide_timed(
                &active.loaded,
                &mut Runtime::new(&Loaded::Empty, 0),
                facts,
                started_ns,
                &clock,
            ),
        }
    }

    fn apply(&mut self, decision: &mut Decision) -> Action {
        for name in &decision.strip_headers {
            if host::remove_request_header(name).is_err() {
                // A spoofed identity header we cannot remove must not reach the upstream.
                return self.fail_closed(decision);
            }
        }
        if decision.allowed {
            for (name, value) in &decision.upstream_headers {
                if host::add_header(MapType::HttpRequestHeaders, name, value).is_err() {
                    return self.fail_closed(decision);
                }
            }
        }
        self.publish(decision);
        if !decision.allowed {
            self.reply(decision);
            return Action::Pause;
        }
        self.allowed_decision_id = Some(decision.record.decision_id.clone());
        Action::Continue
    }

    /// The record's key fields, for the access log.
    fn publish(&self, decision: &Decision) {
        let key_fields = match self.active.loaded.decision_log() {
            Some(log) => log.key_fields.as_slice(),
            None => &KeyField::ALL,
        };
        records::publish(self.vm.kind.get(), decision, key_fields);
    }

    fn reply(&self, decision: &Decision) {
        let details = format!("chaperone_{}", decision.reason.code());
        if let Err(status) = host::send_local_response(
            decision.status,
            &details,
            &decision.response_headers,
            &decision.response_body,
        ) {
            host::log(
                LogLevel::Error,
                &format!("chaperone: local reply failed: {status}"),
            );
        }
    }

    /// Metrics, then the record: to the host log unless `decision_log.host_log` is off, and
    /// to the collector if one is configured. With neither, the record is never serialised.
    fn account(&self, decision: &mut Decision, started_ns: u64) {
        let metrics = &self.vm.metrics;
        decision.record.metrics.finish(started_ns, host::now_ns());
        metrics.count_decision(
            records::outcome(decision),
            &decision.record.reason,
            decision.reason.code(),
        );
        metrics.sample(
            DECISION_DURATION,
            decision.record.metrics.timer_total_ns / 1_000,
        );
        if let Ok(mut runtime) = self.active.runtime.try_borrow_mut() {
            let stats = std::mem::take(&mut runtime.cache_stats);
            metrics.add("chaperone_token_cache_total_result=hit", stats.hits);
            metrics.add("chaperone_token_cache_total_result=miss", stats.misses);
            metrics.add(
                "chaperone_token_cache_total_result=rejected",
                stats.rejected,
            );
            metrics.add(
                "chaperone_decision_cache_total_result=hit",
                stats.decision_hits,
            );
            metrics.add(
                "chaperone_decision_cache_total_result=miss",
                stats.decision_misses,
            );
        }
        let (max_bytes, host_log) = self
            .active
            .loaded
            .decision_log()
            .map_or((usize::MAX, true), |log| {
                (log.max_record_bytes, log.host_log)
            });
        let mut exporter = self.active.exporter.try_borrow_mut().ok();
        let exporter = exporter.as_deref_mut().and_then(Option::as_mut);
        if !host_log && exporter.is_none() {
            return;
        }
        let line = decision.record.to_json_bounded(max_bytes);
        if host_log {
            host::log(LogLevel::Info, &line);
        }
        if let Some(exporter) = exporter {
            let dropped = exporter.push(line, started_ns, &decision.record.decision_id);
            records::count_dropped(metrics, dropped);
        }
    }

    /// The host would not rewrite the request's headers: a 500, recorded as such.
    fn fail_closed(&self, decision: &mut Decision) -> Action {
        host::log(
            LogLevel::Error,
            "chaperone: cannot rewrite request headers; denying",
        );
        decision.fail_internally();
        self.publish(decision);
        self.reply(decision);
        Action::Pause
    }
}

/// One end of the connection (`source` or `destination`): Envoy gives `<side>.address` as
/// `IP:PORT`; Kong gives the bare IP there and the port as `<side>.port`, in text where
/// Envoy's would be an 8-byte integer.
fn read_address(side: &str) -> Option<SocketAddress> {
    let address = host::property(&[side, "address"]).ok().flatten()?;
    let mut peer = SocketAddress::parse(std::str::from_utf8(&address).ok()?)?;
    if peer.port.is_none() {
        peer.port = host::property(&[side, "port"])
            .ok()
            .flatten()
            .and_then(|port| port_of(&port));
    }
    Some(peer)
}

/// The certificate that names one end of a TLS connection, by Envoy's `connection.*`
/// attributes: the client's for `source`, the gateway's own for `destination`.
struct Certificate {
    /// Whether there is one to read: a client certificate presented, or TLS at all.
    present: &'static str,
    /// Its names, in the order Envoy's ext_authz picks a principal from.
    names: [&'static str; 3],
}

const CLIENT_CERTIFICATE: Certificate = Certificate {
    present: "mtls",
    names: [
        "uri_san_peer_certificate",
        "dns_san_peer_certificate",
        "subject_peer_certificate",
    ],
};

const GATEWAY_CERTIFICATE: Certificate = Certificate {
    present: "tls_version",
    names: [
        "uri_san_local_certificate",
        "dns_san_local_certificate",
        "subject_local_certificate",
    ],
};

/// A TLS end's principal as Envoy's ext_authz gives OPA-Envoy: the certificate's first URI SAN
/// (a SPIFFE id under Istio), else its first DNS SAN, else its subject. A name that is not UTF-8
/// gives none rather than falling back to a weaker one.
fn read_principal(certificate: &Certificate) -> Option<String> {
    let present = host::property(&["connection", certificate.present])
        .ok()
        .flatten()
        .is_some_and(|value| value.iter().any(|&byte| byte != 0));
    if !present {
        return None;
    }
    let name = certificate.names.iter().find_map(|name| {
        host::property(&["connection", name])
            .ok()
            .flatten()
            .filter(|value| !value.is_empty())
    })?;
    String::from_utf8(name).ok()
}

/// A port property's value: decimal text (Kong) or a little-endian 8-byte integer (Envoy).
fn port_of(value: &[u8]) -> Option<u16> {
    if let Some(text) = std::str::from_utf8(value)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
    {
        return text.parse().ok();
    }
    let bytes: [u8; 8] = value.try_into().ok()?;
    u16::try_from(u64::from_le_bytes(bytes)).ok()
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

#[cfg(test)]
mod tests {
    use super::port_of;

    #[test]
    fn ports_are_read_as_kong_and_envoy_give_them() {
        assert_eq!(port_of(b"50312"), Some(50312));
        assert_eq!(port_of(&443u64.to_le_bytes()), Some(443));
        for junk in [&b""[..], b"70000", b"-1", b"12a", &70_000u64.to_le_bytes()] {
            assert_eq!(port_of(junk), None, "{junk:?}");
        }
    }
}
