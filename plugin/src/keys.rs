//! Host side of remote key sets: proxy shared data as the gateway-wide store, HTTP calls for
//! the fetches, and logs and counters for what happened. `chaperone_core::remote` decides.

use crate::host::{self, HostError};
use crate::metrics::Metrics;
use chaperone_core::remote::{
    FetchResponse, KeyEvent, KeyWork, MemoryStore, SharedStore, StoreError,
};
use chaperone_core::Runtime;
use proxy_wasm::types::LogLevel;
use std::cell::Cell;

/// Proxy shared data, shared by every VM of the plugin in this gateway process. Where the
/// host has none (Kong without `nginx_wasm_shm_kv`), each VM falls back to its own memory and
/// fetches for itself.
#[derive(Default)]
pub struct GatewayStore {
    local: MemoryStore,
    host_failed: Cell<bool>,
}

impl GatewayStore {
    fn fall_back(&self, error: HostError) {
        if !self.host_failed.replace(true) {
            host::log(
                LogLevel::Warn,
                &format!(
                    "chaperone: proxy shared data unavailable ({error}); each worker fetches \
                     key sets for itself"
                ),
            );
        }
    }
}

impl SharedStore for GatewayStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        if !self.host_failed.get() {
            match host::shared_data(key) {
                Ok(value) => return Ok(value),
                Err(error) => self.fall_back(error),
            }
        }
        self.local.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        if !self.host_failed.get() {
            match host::set_shared_data(key, value, cas) {
                Ok(()) => return Ok(()),
                Err(HostError::CAS_MISMATCH) => return Err(StoreError::CasMismatch),
                Err(error) => self.fall_back(error),
            }
        }
        self.local.set(key, value, cas)
    }
}

const FETCH_SUCCESS: &str = "chaperone_jwks_fetch_total_result=success";
const FETCH_FAILURE: &str = "chaperone_jwks_fetch_total_result=failure";

/// Starts the requested fetches, reports events, and repeats for whatever that produces
/// (a failed dispatch is a failed fetch). Bounded: each round only handles the previous
/// round's requests, and a request never produces more than one follow-up.
pub fn carry_out(runtime: &mut Runtime, store: &GatewayStore, metrics: &Metrics, work: KeyWork) {
    let mut pending = work;
    for _ in 0..8 {
        report(&pending.events, metrics);
        let mut next = KeyWork::default();
        for request in pending.requests {
            match host::dispatch_http_call(
                &request.upstream,
                &request.headers,
                None,
                request.timeout_ms,
            ) {
                Ok(token) => runtime.keys.dispatched(&request, token),
                Err(status) => {
                    let error = format!(
                        "dispatch_http_call to `{}` refused ({status}); on Envoy name a \
                         configured cluster in remote_jwks.http_uri.cluster",
                        request.upstream
                    );
                    let failed =
                        runtime
                            .keys
                            .dispatch_failed(&request, &error, store, host::now_ms());
                    next.events.extend(failed.events);
                    next.requests.extend(failed.requests);
                }
            }
        }
        if next.events.is_empty() && next.requests.is_empty() {
            return;
        }
        pending = next;
    }
}

/// Reads the answer to call `token` if it is a key fetch of `runtime`, and applies it.
pub fn on_response(
    runtime: &mut Runtime,
    store: &GatewayStore,
    metrics: &Metrics,
    token: u32,
    body_size: usize,
) {
    let Some(limit) = runtime.keys.body_limit(token) else {
        return;
    };
    let headers = host::http_call_response_headers().unwrap_or_default();
    let status = host::status_of(&headers);
    // An oversized body is refused without copying it into the VM.
    let body = if body_size > limit {
        None
    } else if body_size == 0 {
        Some(Vec::new())
    } else {
        host::http_call_response_body(body_size).ok()
    };
    let response = FetchResponse {
        status,
        headers,
        body,
    };
    let work = runtime.on_key_response(token, &response, store, host::now_ms());
    carry_out(runtime, store, metrics, work);
}

fn report(events: &[KeyEvent], metrics: &Metrics) {
    for event in events {
        match event {
            KeyEvent::Fetched {
                issuer,
                keys,
                changed,
                rejected,
            } => {
                metrics.count(FETCH_SUCCESS);
                let what = if *changed {
                    "new key set"
                } else {
                    "key set unchanged"
                };
                host::log(
                    LogLevel::Info,
                    &format!("chaperone: keys of `{issuer}` fetched: {what}, {keys} usable key(s)"),
                );
                // Logged once per new document, not on every refresh of the same one.
                if *changed {
                    for reason in rejected {
                        host::log(
                            LogLevel::Warn,
                            &format!("chaperone: keys of `{issuer}`: {reason}"),
                        );
                    }
                }
            }
            KeyEvent::FetchFailed {
                issuer,
                error,
                failures,
                keys_until_ms,
            } => {
                metrics.count(FETCH_FAILURE);
                let consequence = match keys_until_ms {
                    Some(until) => format!(
                        "keeping the last good keys until {}",
                        chaperone_core::record::rfc3339(until * 1_000_000)
                    ),
                    None => "no usable keys: its tokens get 503 keys_unavailable".to_owned(),
                };
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "chaperone: keys of `{issuer}`: fetch failed ({failures} in a row): \
                         {error}; {consequence}"
                    ),
                );
            }
            KeyEvent::Expired { issuer } => host::log(
                LogLevel::Error,
                &format!(
                    "chaperone: keys of `{issuer}` expired (max_stale_seconds passed without a \
                     successful refresh): its tokens get 503 keys_unavailable"
                ),
            ),
            KeyEvent::Adopted { issuer, keys } => host::log(
                LogLevel::Info,
                &format!(
                    "chaperone: keys of `{issuer}` fetched by another worker: {keys} usable key(s)"
                ),
            ),
        }
    }
}
