//! Remote key sets (`remote_jwks`): when to fetch an issuer's keys, how to read the answer,
//! and how the VMs of one gateway share one fetch.
//!
//! The host adapter does the I/O (timers, `dispatch_http_call`, proxy shared data); this
//! module decides. State that must be the same for every VM of a gateway (when the keys were
//! fetched, when they expire, who is fetching now) lives in a [`SharedStore`] under keys
//! derived from the issuer and the URI, so a configuration update that keeps them reuses the
//! keys already fetched. Without shared data each VM keeps its own store and fetches alone.
//!
//! Timeline of one key set, all times from the host clock:
//!
//! ```text
//! fetched ──── refresh_at (cache_duration, or a shorter max-age) ──── expires_at (+ max_stale)
//!              refresh attempts; on failure retry after 1 s, 2 s, ... 30 s    503 keys_unavailable
//! ```

use crate::config::{config_error, ConfigError};
use crate::encoding::parse_json_strict;
use crate::jwks::{admit_remote_key_set, Algorithm, VerifyingKey};
use serde::{Deserialize, Serialize};

/// A `max-age` never schedules refreshes closer together than this (or `cache_duration`).
pub const MIN_REFRESH_MS: u64 = 30_000;
/// Retry delay after a failed fetch: 1 s, doubling, at most this.
pub const MAX_RETRY_MS: u64 = 30_000;
/// A fetch holds the gateway-wide lease this much longer than its own time-out.
const LEASE_MARGIN_MS: u64 = 2_000;

/// Scheme, authority and path of an `http(s)` URI, without user info or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub scheme: String,
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    pub fn parse(uri: &str) -> Result<Self, String> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or("must be an absolute http:// or https:// URI")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme `{scheme}` is not http or https"));
        }
        if rest.contains('#') {
            return Err("must not contain a fragment".to_owned());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let valid_authority = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !valid_authority {
            return Err(format!(
                "authority `{authority}` must be a host name or address with an optional port"
            ));
        }
        if path.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err("path must be printable ASCII without spaces".to_owned());
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(HttpTarget {
            scheme,
            authority: authority.to_ascii_lowercase(),
            path,
        })
    }

    /// `host:port`, with the scheme's default port when the URI has none (Kong's
    /// `dispatch_http_call` wants an explicit port).
    pub fn host_port(&self) -> String {
        let has_port = match self.authority.rfind(']') {
            Some(bracket) => self.authority[bracket..].contains(':'),
            None => self.authority.contains(':'),
        };
        if has_port {
            self.authority.clone()
        } else {
            let port = if self.scheme == "https" { 443 } else { 80 };
            format!("{}:{port}", self.authority)
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// The `dispatch_http_call` upstream for `http_uri`: the Envoy cluster when named, else
/// `host:port` of the URI (Kong).
pub(crate) fn upstream_for(
    cluster: Option<String>,
    target: &HttpTarget,
    field: &str,
) -> Result<String, ConfigError> {
    match cluster {
        Some(cluster) if cluster.trim().is_empty() => Err(config_error(
            format!("{field}.http_uri.cluster"),
            "must not be empty (leave it out on Kong)",
        )),
        Some(cluster) => Ok(cluster),
        None => Ok(target.host_port()),
    }
}

/// `remote_jwks` as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub http_uri: RawHttpUri,
    #[serde(default = "default_cache_duration")]
    pub cache_duration_seconds: u64,
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
    #[serde(default = "default_max_stale")]
    pub max_stale_seconds: u64,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    #[serde(default)]
    pub openid_discovery: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpUri {
    pub uri: String,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_cache_duration() -> u64 {
    600
}
fn default_cooldown() -> u64 {
    30
}
fn default_max_stale() -> u64 {
    3600
}
fn default_max_bytes() -> usize {
    65_536
}
fn default_timeout_ms() -> u64 {
    5_000
}

/// Where and how to fetch one issuer's keys.
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    /// The JWKS document, or with `openid_discovery` the OpenID configuration document
    /// whose `jwks_uri` names it.
    pub target: HttpTarget,
    pub openid_discovery: bool,
    /// The `dispatch_http_call` upstream: an Envoy cluster, or `host:port` (Kong).
    pub upstream: String,
    pub timeout_ms: u64,
    pub cache_duration_ms: u64,
    pub cooldown_ms: u64,
    pub max_stale_ms: u64,
    pub max_bytes: usize,
    pub algorithms: Vec<Algorithm>,
    pub issuer: String,
    /// Shared-data key prefix for this issuer and URI.
    pub store_key: String,
}

impl RemoteJwks {
    pub fn compile(
        raw: RawRemoteJwks,
        issuer: &str,
        algorithms: &[Algorithm],
        field: &str,
    ) -> Result<Self, ConfigError> {
        let target = HttpTarget::parse(&raw.http_uri.uri)
            .map_err(|message| config_error(format!("{field}.http_uri.uri"), message))?;
        let upstream = upstream_for(raw.http_uri.cluster, &target, field)?;
        let bounded = |name: &str, value: u64, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(config_error(
                    format!("{field}.{name}"),
                    format!("must be between {} and {}", range.start(), range.end()),
                ))
            }
        };
        let timeout_ms = bounded("http_uri.timeout_ms", raw.http_uri.timeout_ms, 100..=60_000)?;
        let cache_duration_s = bounded(
            "cache_duration_seconds",
            raw.cache_duration_seconds,
            1..=86_400,
        )?;
        let cooldown_s = bounded("cooldown_seconds", raw.cooldown_seconds, 1..=3_600)?;
        let max_stale_s = bounded("max_stale_seconds", raw.max_stale_seconds, 0..=604_800)?;
        let max_bytes = bounded("max_bytes", raw.max_bytes as u64, 1_024..=1_048_576)? as usize;
        Ok(RemoteJwks {
            store_key: format!("chaperone.jwks|{issuer}|{}", target.url()),
            target,
            openid_discovery: raw.openid_discovery,
            upstream,
            timeout_ms,
            cache_duration_ms: cache_duration_s * 1000,
            cooldown_ms: cooldown_s * 1000,
            max_stale_ms: max_stale_s * 1000,
            max_bytes,
            algorithms: algorithms.to_vec(),
            issuer: issuer.to_owned(),
        })
    }

    fn request(&self, path: &str) -> Vec<(String, String)> {
        vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), path.to_owned()),
            (":authority".to_owned(), self.target.authority.clone()),
            (":scheme".to_owned(), self.target.scheme.clone()),
            ("accept".to_owned(), "application/json".to_owned()),
            (
                "user-agent".to_owned(),
                concat!("chaperone/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
        ]
    }
}

/// Fetch bookkeeping shared by the VMs of a gateway (milliseconds of the host clock).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchState {
    /// Bumped whenever the stored key set document changes.
    pub version: u64,
    pub fetched_at_ms: u64,
    pub refresh_at_ms: u64,
    pub expires_at_ms: u64,
    pub retry_at_ms: u64,
    pub last_attempt_ms: u64,
    pub failures: u32,
    pub last_error: Option<String>,
    /// A fetch is under way until then (single flight across VMs).
    pub lease_until_ms: u64,
    pub lease_holder: u64,
}

impl FetchState {
    fn has_keys(&self) -> bool {
        self.fetched_at_ms > 0
    }

    fn fetch_due(&self, now_ms: u64, refetch_wanted: bool, cooldown_ms: u64) -> bool {
        if self.lease_until_ms > now_ms || now_ms < self.retry_at_ms {
            return false;
        }
        !self.has_keys()
            || now_ms >= self.refresh_at_ms
            || (refetch_wanted && now_ms >= self.last_attempt_ms.saturating_add(cooldown_ms))
    }
}

/// Proxy shared data, or a stand-in with the same compare-and-swap semantics.
pub trait SharedStore {
    /// The value and its version (`cas`), or `None` when the key was never set.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes unless `cas` is non-zero and no longer the key's version.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    CasMismatch,
    Unavailable,
}

/// An in-memory [`SharedStore`]: the fallback when the host has no shared data, and the
/// stand-in for several VMs in tests.
#[derive(Default)]
pub struct MemoryStore {
    entries: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    next_cas: std::cell::Cell<u32>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let entries = self
            .entries
            .try_borrow()
            .map_err(|_| StoreError::Unavailable)?;
        Ok(entries.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut entries = self
            .entries
            .try_borrow_mut()
            .map_err(|_| StoreError::Unavailable)?;
        if let Some((_, current)) = entries.get(key) {
            if cas != 0 && cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        entries.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

/// One step of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Discovery,
    Jwks { path: String },
}

/// An HTTP call the host must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub issuer_index: usize,
    pub step: Step,
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
}

/// The answer to a [`FetchRequest`] as the host saw it.
#[derive(Debug, Clone, Default)]
pub struct FetchResponse {
    /// `None` when the call failed (reset, time-out, no upstream).
    pub status: Option<u16>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// `None` when the body was larger than `max_bytes` and was not read.
    pub body: Option<Vec<u8>>,
}

impl FetchResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// What happened, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyEvent {
    /// A fetch by this VM succeeded; `changed` when the document differs from the last one.
    Fetched {
        issuer: String,
        keys: usize,
        changed: bool,
        rejected: Vec<String>,
    },
    /// A fetch by this VM failed; the previous keys (if any) stay until `keys_until_ms`.
    FetchFailed {
        issuer: String,
        error: String,
        failures: u32,
        keys_until_ms: Option<u64>,
    },
    /// Another VM's fetch was installed here.
    Adopted { issuer: String, keys: usize },
    /// The last good keys passed their `max_stale` bound: tokens of the issuer now get 503.
    Expired { issuer: String },
}

/// Keys for one issuer as the request path sees them.
pub enum KeyLookup<'a> {
    Keys(&'a [VerifyingKey]),
    /// No key set yet, or the last one is past its `max_stale` bound.
    Unavailable,
}

/// One remote issuer's keys inside one VM.
struct RemoteKeys {
    config: RemoteJwks,
    keys: Vec<VerifyingKey>,
    /// The shared version these keys came from (0: none yet).
    installed_version: u64,
    state: FetchState,
    /// A token named a `kid` the keys lack: refetch once the cooldown allows.
    refetch_wanted: std::cell::Cell<bool>,
    /// The call this VM is waiting for, and which step it is.
    in_flight: Option<(u32, Step)>,
    /// The expiry of the installed keys has been reported.
    expiry_reported: bool,
}

/// Per-VM key sets of the remote issuers of one configuration, indexed like
/// `Compiled::issuers` (local issuers have no entry).
pub struct KeyStore {
    remotes: Vec<Option<RemoteKeys>>,
    /// Tells this VM's leases apart from other VMs'.
    holder: u64,
}

/// What a tick or a response asks of the host, and what happened.
#[derive(Debug, Default)]
pub struct KeyWork {
    pub requests: Vec<FetchRequest>,
    pub events: Vec<KeyEvent>,
    /// Issuers whose key set changed in this VM: verified tokens of theirs must be forgotten.
    pub issuer_names_changed: Vec<String>,
}

impl KeyStore {
    /// `remotes[i]` is the remote configuration of issuer `i`, if it has one. `holder` should
    /// be random per VM.
    pub fn new(remotes: Vec<Option<RemoteJwks>>, holder: u64) -> Self {
        KeyStore {
            remotes: remotes
                .into_iter()
                .map(|config| {
                    config.map(|config| RemoteKeys {
                        config,
                        keys: Vec::new(),
                        installed_version: 0,
                        state: FetchState::default(),
                        refetch_wanted: std::cell::Cell::new(false),
                        in_flight: None,
                        expiry_reported: false,
                    })
                })
                .collect(),
            holder: holder.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remotes.iter().all(Option::is_none)
    }

    /// The keys the request path may use for issuer `index` at `now_ms`.
    pub fn lookup(&self, index: usize, now_ms: u64) -> KeyLookup<'_> {
        match self.remotes.get(index).and_then(Option::as_ref) {
            Some(remote) if remote.installed_version > 0 && now_ms < remote.state.expires_at_ms => {
                KeyLookup::Keys(&remote.keys)
            }
            _ => KeyLookup::Unavailable,
        }
    }

    /// Whether some remote issuer has no usable keys in this VM at `now_ms`: then the request
    /// path checks the shared store first, in case another worker has fetched them since.
    pub fn missing_keys(&self, now_ms: u64) -> bool {
        self.remotes
            .iter()
            .flatten()
            .any(|remote| remote.installed_version == 0 || now_ms >= remote.state.expires_at_ms)
    }

    /// Whether issuer `index` is remote.
    pub fn is_remote(&self, index: usize) -> bool {
        self.remotes.get(index).is_some_and(Option::is_some)
    }

    /// A token named a key the set lacks; the next tick refetches if the cooldown allows.
    pub fn note_unknown_key(&self, index: usize) {
        if let Some(remote) = self.remotes.get(index).and_then(Option::as_ref) {
            remote.refetch_wanted.set(true);
        }
    }

    /// Periodic work: adopt what other VMs fetched, start fetches that are due.
    pub fn tick(&mut self, store: &dyn SharedStore, now_ms: u64) -> KeyWork {
        let mut work = KeyWork::default();
        for index in 0..self.remotes.len() {
            self.sync(index, store, &mut work);
            self.report_expiry(index, now_ms, &mut work);
            self.maybe_start(index, store, now_ms, &mut work);
        }
        work
    }

    /// Like [`KeyStore::tick`] without starting fetches: adopts what other VMs stored.
    pub fn adopt(&mut self, store: &dyn SharedStore) -> KeyWork {
        let mut work = KeyWork::default();
        for index in 0..self.remotes.len() {
            self.sync(index, store, &mut work);
        }
        work
    }

    fn report_expiry(&mut self, index: usize, now_ms: u64, work: &mut KeyWork) {
        let Some(remote) = self.remote_mut(index) else {
            return;
        };
        let expired = remote.installed_version > 0 && now_ms >= remote.state.expires_at_ms;
        if expired && !remote.expiry_reported {
            work.events.push(KeyEvent::Expired {
                issuer: remote.config.issuer.clone(),
            });
        }
        remote.expiry_reported = expired;
    }

    /// The host could not dispatch a request (for example an unknown cluster).
    pub fn dispatch_failed(
        &mut self,
        request: &FetchRequest,
        error: &str,
        store: &dyn SharedStore,
        now_ms: u64,
    ) -> KeyWork {
        let mut work = KeyWork::default();
        self.fail(
            request.issuer_index,
            error.to_owned(),
            store,
            now_ms,
            &mut work,
        );
        work
    }

    /// The host dispatched `request` as call `token`.
    pub fn dispatched(&mut self, request: &FetchRequest, token: u32) {
        if let Some(remote) = self.remote_mut(request.issuer_index) {
            remote.in_flight = Some((token, request.step.clone()));
        }
    }

    /// The largest body worth reading for call `token`; `None` when the call is not this
    /// store's (answers to a replaced configuration's calls are ignored).
    pub fn body_limit(&self, token: u32) -> Option<usize> {
        self.call_index(token)
            .and_then(|index| self.remote(index))
            .map(|remote| remote.config.max_bytes)
    }

    fn call_index(&self, token: u32) -> Option<usize> {
        self.remotes.iter().position(|remote| {
            remote
                .as_ref()
                .is_some_and(|r| r.in_flight.as_ref().is_some_and(|(t, _)| *t == token))
        })
    }

    /// The answer to call `token`: installs the keys or records the failure, and may ask for
    /// the next step (the JWKS after the discovery document).
    pub fn on_response(
        &mut self,
        token: u32,
        response: &FetchResponse,
        store: &dyn SharedStore,
        now_ms: u64,
    ) -> KeyWork {
        let mut work = KeyWork::default();
        let Some(index) = self.call_index(token) else {
            return work;
        };
        let Some((config, step)) = self.remote_mut(index).and_then(|remote| {
            let (_, step) = remote.in_flight.take()?;
            Some((remote.config.clone(), step))
        }) else {
            return work;
        };
        let body = match read_body(&config, response) {
            Ok(body) => body,
            Err(error) => {
                self.fail(index, error, store, now_ms, &mut work);
                return work;
            }
        };
        match &step {
            Step::Discovery => match jwks_path_from_discovery(&config, &body) {
                Ok(path) => work.requests.push(FetchRequest {
                    issuer_index: index,
                    upstream: config.upstream.clone(),
                    headers: config.request(&path),
                    timeout_ms: config.timeout_ms,
                    step: Step::Jwks { path },
                }),
                Err(error) => self.fail(index, error, store, now_ms, &mut work),
            },
            Step::Jwks { .. } => {
                let max_age_ms = response.header("cache-control").and_then(max_age_ms);
                // The same document again (the usual refresh) is not parsed again: admitting
                // a key set builds P-256 tables, about 10 ms per key in V8.
                let parsed = if self.installed_document_is(index, &body, store) {
                    Ok(None)
                } else {
                    parse_key_set(&config, &body).map(Some)
                };
                match parsed {
                    Ok(new_keys) => {
                        self.succeed(index, body, new_keys, max_age_ms, store, now_ms, &mut work)
                    }
                    Err(error) => self.fail(index, error, store, now_ms, &mut work),
                }
            }
        }
        work
    }

    fn remote(&self, index: usize) -> Option<&RemoteKeys> {
        self.remotes.get(index).and_then(Option::as_ref)
    }

    fn remote_mut(&mut self, index: usize) -> Option<&mut RemoteKeys> {
        self.remotes.get_mut(index).and_then(Option::as_mut)
    }

    /// Reads the shared state and installs a newer key set another VM stored.
    fn sync(&mut self, index: usize, store: &dyn SharedStore, work: &mut KeyWork) {
        let Some(remote) = self.remote_mut(index) else {
            return;
        };
        let Some((state, _)) = read_state(store, &remote.config) else {
            return;
        };
        remote.state = state;
        if remote.state.version == remote.installed_version || remote.state.version == 0 {
            return;
        }
        // The document is stored before the state that announces it; if an older one is
        // still there, the next tick tries again.
        let Ok(Some((stored, _))) = store.get(&document_key(&remote.config)) else {
            return;
        };
        let Some((version, body)) = split_document(&stored) else {
            return;
        };
        if version != remote.state.version {
            return;
        }
        if let Ok((keys, _)) = parse_key_set(&remote.config, body) {
            let count = keys.len();
            remote.keys = keys;
            remote.installed_version = version;
            work.issuer_names_changed.push(remote.config.issuer.clone());
            work.events.push(KeyEvent::Adopted {
                issuer: remote.config.issuer.clone(),
                keys: count,
            });
        }
    }

    fn maybe_start(
        &mut self,
        index: usize,
        store: &dyn SharedStore,
        now_ms: u64,
        work: &mut KeyWork,
    ) {
        let holder = self.holder;
        let Some(remote) = self.remote_mut(index) else {
            return;
        };
        if remote.in_flight.is_some() {
            return;
        }
        let wanted = remote.refetch_wanted.replace(false);
        if !remote
            .state
            .fetch_due(now_ms, wanted, remote.config.cooldown_ms)
        {
            return;
        }
        // Take the lease: only the VM whose compare-and-swap succeeds fetches.
        let Some((mut state, cas)) = read_state(store, &remote.config) else {
            return;
        };
        if cas == 0 {
            // Proxy shared data cannot create a key atomically (any `cas` creates it), so
            // two workers starting together could both "win". Create it empty first; the
            // lease is taken on the next tick, when compare-and-swap means something.
            let _ = write_state(store, &remote.config, &state, 0);
            return;
        }
        if !state.fetch_due(now_ms, wanted, remote.config.cooldown_ms) {
            remote.state = state;
            return;
        }
        state.lease_until_ms = now_ms + remote.config.timeout_ms + LEASE_MARGIN_MS;
        state.lease_holder = holder;
        state.last_attempt_ms = now_ms;
        if write_state(store, &remote.config, &state, cas).is_err() {
            return;
        }
        remote.state = state;
        let config = &remote.config;
        let (step, path) = if config.openid_discovery {
            (Step::Discovery, config.target.path.clone())
        } else {
            let path = config.target.path.clone();
            (Step::Jwks { path: path.clone() }, path)
        };
        work.requests.push(FetchRequest {
            issuer_index: index,
            step,
            upstream: config.upstream.clone(),
            headers: config.request(&path),
            timeout_ms: config.timeout_ms,
        });
    }

    /// Whether `body` is the document this VM's keys came from, as stored for every VM (a
    /// newer one another VM stored, not yet installed here, does not count).
    fn installed_document_is(&self, index: usize, body: &[u8], store: &dyn SharedStore) -> bool {
        self.remote(index).is_some_and(|remote| {
            remote.installed_version > 0
                && store
                    .get(&document_key(&remote.config))
                    .ok()
                    .flatten()
                    .and_then(|(stored, _)| {
                        split_document(&stored).map(|(version, stored_body)| {
                            version == remote.installed_version && stored_body == body
                        })
                    })
                    .unwrap_or(false)
        })
    }

    /// A fetch succeeded: `new_keys` (the admitted keys and the entries dropped) when the
    /// document changed, `None` when it is the one installed.
    #[allow(clippy::too_many_arguments)]
    fn succeed(
        &mut self,
        index: usize,
        body: Vec<u8>,
        new_keys: Option<(Vec<VerifyingKey>, Vec<String>)>,
        max_age_ms: Option<u64>,
        store: &dyn SharedStore,
        now_ms: u64,
        work: &mut KeyWork,
    ) {
        let Some(remote) = self.remote_mut(index) else {
            return;
        };
        let config = &remote.config;
        let mut state = read_state(store, config)
            .map(|(state, _)| state)
            .unwrap_or_else(|| remote.state.clone());
        let changed = new_keys.is_some();
        if changed {
            state.version = state.version.max(remote.installed_version) + 1;
            let mut document = state.version.to_le_bytes().to_vec();
            document.extend_from_slice(&body);
            // Best effort: without it other VMs fetch for themselves.
            let _ = store.set(&document_key(config), &document, 0);
        }
        let refresh_in = match max_age_ms {
            Some(max_age) => max_age.clamp(
                MIN_REFRESH_MS.min(config.cache_duration_ms),
                config.cache_duration_ms,
            ),
            None => config.cache_duration_ms,
        };
        state.fetched_at_ms = now_ms;
        state.refresh_at_ms = now_ms + refresh_in;
        state.expires_at_ms = state.refresh_at_ms + config.max_stale_ms;
        state.retry_at_ms = 0;
        state.failures = 0;
        state.last_error = None;
        state.lease_until_ms = 0;
        state.lease_holder = 0;
        let _ = write_state(store, config, &state, 0);
        let issuer = config.issuer.clone();
        remote.state = state;
        let rejected = match new_keys {
            Some((keys, dropped)) => {
                remote.keys = keys;
                work.issuer_names_changed.push(remote.config.issuer.clone());
                dropped
            }
            None => Vec::new(),
        };
        remote.installed_version = remote.state.version;
        work.events.push(KeyEvent::Fetched {
            issuer,
            keys: remote.keys.len(),
            changed,
            rejected,
        });
    }

    fn fail(
        &mut self,
        index: usize,
        error: String,
        store: &dyn SharedStore,
        now_ms: u64,
        work: &mut KeyWork,
    ) {
        let Some(remote) = self.remote_mut(index) else {
            return;
        };
        remote.in_flight = None;
        let config = &remote.config;
        let mut state = read_state(store, config)
            .map(|(state, _)| state)
            .unwrap_or_else(|| remote.state.clone());
        state.failures = state.failures.saturating_add(1);
        let backoff = 1_000u64 << (state.failures - 1).min(5);
        state.retry_at_ms = now_ms + backoff.min(MAX_RETRY_MS);
        state.last_error = Some(error.clone());
        state.lease_until_ms = 0;
        state.lease_holder = 0;
        let _ = write_state(store, config, &state, 0);
        let keys_until_ms = (remote.installed_version > 0 && state.expires_at_ms > now_ms)
            .then_some(state.expires_at_ms);
        work.events.push(KeyEvent::FetchFailed {
            issuer: config.issuer.clone(),
            error,
            failures: state.failures,
            keys_until_ms,
        });
        remote.state = state;
    }
}

fn state_key(config: &RemoteJwks) -> String {
    format!("{}|state", config.store_key)
}

fn document_key(config: &RemoteJwks) -> String {
    format!("{}|document", config.store_key)
}

/// The shared state (default when never written) and its `cas`; `None` when the store
/// fails or holds something unreadable.
fn read_state(store: &dyn SharedStore, config: &RemoteJwks) -> Option<(FetchState, u32)> {
    match store.get(&state_key(config)) {
        Ok(None) => Some((FetchState::default(), 0)),
        Ok(Some((bytes, cas))) => serde_json::from_slice(&bytes).ok().map(|s| (s, cas)),
        Err(_) => None,
    }
}

fn write_state(
    store: &dyn SharedStore,
    config: &RemoteJwks,
    state: &FetchState,
    cas: u32,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(state).map_err(|_| StoreError::Unavailable)?;
    store.set(&state_key(config), &bytes, cas)
}

/// Stored documents are the version (8 bytes, little-endian) followed by the body.
fn split_document(stored: &[u8]) -> Option<(u64, &[u8])> {
    let (version, body) = stored.split_at_checked(8)?;
    Some((u64::from_le_bytes(version.try_into().ok()?), body))
}

/// The body of a successful answer: status 200 (redirects are never followed), within
/// `max_bytes`, not empty.
fn read_body(config: &RemoteJwks, response: &FetchResponse) -> Result<Vec<u8>, String> {
    match response.status {
        None => {
            let detail = response
                .header(":dispatch_status")
                .map_or(String::new(), |s| format!(" ({s})"));
            return Err(format!("no response from `{}`{detail}", config.upstream));
        }
        Some(200) => {}
        Some(status) => return Err(format!("status {status}")),
    }
    match &response.body {
        None => Err(format!("body larger than max_bytes ({})", config.max_bytes)),
        Some(body) if body.len() > config.max_bytes => {
            Err(format!("body larger than max_bytes ({})", config.max_bytes))
        }
        Some(body) if body.is_empty() => Err("empty body".to_owned()),
        Some(body) => Ok(body.clone()),
    }
}

fn parse_key_set(
    config: &RemoteJwks,
    body: &[u8],
) -> Result<(Vec<VerifyingKey>, Vec<String>), String> {
    let document =
        parse_json_strict(body).map_err(|error| format!("key set is not JSON: {error}"))?;
    admit_remote_key_set(&document, &config.algorithms)
        .map(|set| (set.keys, set.rejected))
        .map_err(|error| format!("key set refused: {error}"))
}

/// OpenID Connect Discovery: the document must be for this issuer, and its `jwks_uri` must
/// be on the same scheme and authority, since it is fetched through the same upstream.
fn jwks_path_from_discovery(config: &RemoteJwks, body: &[u8]) -> Result<String, String> {
    let document = parse_json_strict(body)
        .map_err(|error| format!("discovery document is not JSON: {error}"))?;
    if document.get("issuer").and_then(|v| v.as_str()) != Some(config.issuer.as_str()) {
        return Err("discovery document names another issuer".to_owned());
    }
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or("discovery document has no jwks_uri")?;
    let target = HttpTarget::parse(jwks_uri).map_err(|error| format!("jwks_uri {error}"))?;
    if target.scheme != config.target.scheme || target.authority != config.target.authority {
        return Err(format!(
            "jwks_uri `{jwks_uri}` is not on {}://{}",
            config.target.scheme, config.target.authority
        ));
    }
    Ok(target.path)
}

/// `max-age` of a `Cache-Control` value, in milliseconds; `no-cache`/`no-store` count as 0.
fn max_age_ms(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|directive| {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return Some(0);
        }
        let seconds = directive.strip_prefix("max-age=")?;
        seconds
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(|s| s.saturating_mul(1000))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets_parse_strictly() {
        let t = HttpTarget::parse("https://IdP.example.com/.well-known/jwks.json").unwrap();
        assert_eq!(
            (t.scheme.as_str(), t.authority.as_str(), t.path.as_str()),
            ("https", "idp.example.com", "/.well-known/jwks.json")
        );
        assert_eq!(t.host_port(), "idp.example.com:443");
        let t = HttpTarget::parse("http://127.0.0.1:8080?x=1").unwrap();
        assert_eq!(
            (t.path.as_str(), t.host_port().as_str()),
            ("/?x=1", "127.0.0.1:8080")
        );
        assert_eq!(
            HttpTarget::parse("http://[::1]/k").unwrap().host_port(),
            "[::1]:80"
        );
        assert_eq!(
            HttpTarget::parse("http://[::1]:9/k").unwrap().host_port(),
            "[::1]:9"
        );
        for bad in [
            "idp.example.com/jwks",
            "ftp://idp/jwks",
            "https:///jwks",
            "https://user@idp/jwks",
            "https://idp/jwks#x",
            "https://idp/a b",
        ] {
            assert!(HttpTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age_ms("public, max-age=300"), Some(300_000));
        assert_eq!(max_age_ms("no-store"), Some(0));
        assert_eq!(max_age_ms("Max-Age=\"60\""), Some(60_000));
        assert_eq!(max_age_ms("public"), None);
        assert_eq!(max_age_ms("max-age=x"), None);
    }
}
