//! Plugin configuration: strict parsing of the JSON document, then compilation into the
//! structures every request uses. All the expensive and all the fallible work happens here.

use crate::decision_log::{DecisionLog, RawDecisionLog};
use crate::identity::{ClaimMapping, RawClaimMapping, DEFAULT_MAX_DELEGATION_DEPTH};
use crate::jwks::{admit_key_set, Algorithm, VerifyingKey};
use crate::policy::Policy;
use crate::registry::{RawRegistry, Registry};
use crate::remote::{RawRemoteJwks, RemoteJwks};
use crate::revocation::{RawRevocations, Revocations};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];
pub const DEFAULT_DECISION_PATH: &str = "envoy/authz/allow";
/// Upper bound of `limits.max_cached_tokens` and `limits.max_cached_decisions`: a token
/// entry costs about a kilobyte of each VM's heap (BENCHMARKS.md), so this already means
/// gigabytes per worker.
pub const MAX_CACHE_CAPACITY: usize = 1_000_000;

/// The configuration document as users write it. Unknown keys are errors everywhere.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub from_headers: Option<Vec<RawTokenSource>>,
    pub policy: RawPolicy,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub transaction_tokens: Option<RawTransactionTokens>,
    #[serde(default)]
    pub grants: Option<RawGrants>,
    #[serde(default)]
    pub registry: Option<RawRegistry>,
    #[serde(default)]
    pub revocations: RawRevocations,
    #[serde(default)]
    pub decision_log: RawDecisionLog,
    /// Shadow mode for every denial: record it, let the request through.
    #[serde(default)]
    pub dry_run: bool,
}

/// `grants`: just-in-time grants, short-lived JWTs from an approval service, in a request
/// header (several allowed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrants {
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub local_jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub remote_jwks: Option<RawRemoteJwks>,
    #[serde(default = "default_grant_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_max_grant_validity")]
    pub max_validity_seconds: u64,
    #[serde(default = "default_grant_header")]
    pub header: String,
    #[serde(default = "default_max_grants")]
    pub max_per_request: usize,
}

/// `transaction_tokens`: an issuer of its own (the transaction token service), a header, and
/// whether every request must carry one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransactionTokens {
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub local_jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub remote_jwks: Option<RawRemoteJwks>,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_txn_lifetime")]
    pub max_lifetime_seconds: u64,
    #[serde(default = "default_txn_header")]
    pub header: String,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub local_jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub remote_jwks: Option<RawRemoteJwks>,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_seconds: u64,
    #[serde(default)]
    pub allowed_types: Option<Vec<String>>,
    #[serde(default)]
    pub claims: RawClaimMapping,
    #[serde(default)]
    pub forward: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    pub name: String,
    #[serde(default)]
    pub value_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub modules: BTreeMap<String, String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub decision_path: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default = "default_max_eval_ms")]
    pub max_eval_ms: u64,
    /// Shadow mode for this policy's denials only (authentication is still enforced).
    #[serde(default)]
    pub dry_run: bool,
    /// `interpreter`, the one engine offered; `vm` is refused with its reason.
    #[serde(default)]
    pub engine: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    #[serde(default = "default_max_delegation_depth")]
    pub max_delegation_depth: usize,
    #[serde(default = "default_cache_capacity")]
    pub max_cached_tokens: usize,
    #[serde(default = "default_cache_capacity")]
    pub max_cached_decisions: usize,
    #[serde(default)]
    pub max_request_body_bytes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_token_bytes: default_max_token_bytes(),
            max_delegation_depth: default_max_delegation_depth(),
            max_cached_tokens: default_cache_capacity(),
            max_cached_decisions: default_cache_capacity(),
            max_request_body_bytes: 0,
        }
    }
}

fn default_clock_skew() -> u64 {
    60
}
fn default_max_lifetime() -> u64 {
    3600
}
fn default_txn_lifetime() -> u64 {
    300
}
fn default_txn_header() -> String {
    "txn-token".to_owned()
}
fn default_grant_skew() -> u64 {
    5
}
fn default_max_grant_validity() -> u64 {
    3600
}
fn default_grant_header() -> String {
    "agent-grant".to_owned()
}
fn default_max_grants() -> usize {
    8
}
fn default_max_delegation_depth() -> usize {
    DEFAULT_MAX_DELEGATION_DEPTH
}
fn default_cache_capacity() -> usize {
    crate::cache::DEFAULT_CAPACITY
}
fn default_max_eval_ms() -> u64 {
    50
}
fn default_max_token_bytes() -> usize {
    8192
}

/// The most of a request's body a policy may be given: half of Envoy's default buffer for a
/// connection (1 MiB), so that chaperone has decided before the host refuses a longer body
/// (413) while chaperone holds it.
pub const MAX_REQUEST_BODY_BYTES: usize = 1 << 19;

/// Everything a request needs, built once per configuration.
pub struct Compiled {
    /// Issuers of agent tokens.
    pub issuers: Vec<Issuer>,
    pub token_sources: Vec<TokenSource>,
    pub policy: Policy,
    pub max_token_bytes: usize,
    pub max_delegation_depth: usize,
    /// Capacity of each verified-token cache of a VM (agent, transaction and grant tokens).
    pub max_cached_tokens: usize,
    /// Capacity of each VM's remembered verdicts (`decision_cache`).
    pub max_cached_decisions: usize,
    /// How much of a request's body the policy may see (0: none is read).
    pub max_request_body_bytes: usize,
    pub transaction_tokens: Option<TransactionTokens>,
    pub grants: Option<Grants>,
    /// Lower-case names of the request headers that carry credentials: never shown to the
    /// policy.
    pub credential_headers: Vec<String>,
    pub registry: Option<Registry>,
    pub revocations: Revocations,
    pub decision_log: DecisionLog,
    /// Every denial is recorded but not enforced.
    pub dry_run: bool,
}

impl Compiled {
    /// See [`Loaded::body_warning`].
    pub fn body_warning(&self) -> Option<&'static str> {
        (self.policy.body_reads && self.max_request_body_bytes == 0).then_some(
            "the policy reads the request body (input.parsed_body, input.truncated_body or \
             input.attributes.request.http, whole or its body) but \
             limits.max_request_body_bytes is 0: it is never given one",
        )
    }

    /// Every issuer whose keys the VM may have to fetch, in key-store order: the agent token
    /// issuers, then the transaction token issuer.
    pub fn key_issuers(&self) -> impl Iterator<Item = &Issuer> {
        self.issuers
            .iter()
            .chain(self.transaction_tokens.as_ref().map(|t| &t.issuer))
            .chain(self.grants.as_ref().map(|g| &g.issuer))
    }

    /// Where the transaction token issuer's key set is in [`Compiled::key_issuers`].
    pub fn transaction_key_index(&self) -> usize {
        self.issuers.len()
    }

    /// Where the grant issuer's key set is in [`Compiled::key_issuers`].
    pub fn grant_key_index(&self) -> usize {
        self.issuers.len() + usize::from(self.transaction_tokens.is_some())
    }
}

/// Just-in-time grants: their issuer and where they arrive.
pub struct Grants {
    pub issuer: Issuer,
    /// Lower-case header name.
    pub header: String,
    pub max_per_request: usize,
}

/// Transaction tokens: their issuer (`typ` fixed to `txntoken+jwt`) and where they arrive.
pub struct TransactionTokens {
    pub issuer: Issuer,
    /// Lower-case header name.
    pub header: String,
    pub required: bool,
}

pub struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySource,
    pub clock_skew_seconds: u64,
    pub max_lifetime_seconds: u64,
    /// Upper-cased, without an `application/` prefix.
    pub allowed_types: Option<Vec<String>>,
    pub claim_mapping: ClaimMapping,
    /// Keep the agent token's header on a request that goes upstream (jwt_authn's
    /// `forward`); by default it is removed.
    pub forward: bool,
}

/// Where an issuer's keys come from.
pub enum KeySource {
    /// `local_jwks`: admitted at configure time.
    Local(Vec<VerifyingKey>),
    /// `remote_jwks`: fetched by the host adapter; the keys live in the VM's `KeyStore`.
    Remote(RemoteJwks),
}

/// A header the token may arrive in; `name` is lower-case.
pub struct TokenSource {
    pub name: String,
    pub value_prefix: String,
}

/// A configuration error: `field` is a path into the document, `message` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn config_error(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// What `on_configure` received.
pub enum Loaded {
    /// Nothing configured: every request fails closed with `policy_unavailable`.
    Empty,
    Ready(Box<Compiled>),
}

impl Loaded {
    /// Where records go; none until a configuration is installed.
    pub fn decision_log(&self) -> Option<&DecisionLog> {
        match self {
            Loaded::Ready(compiled) => Some(&compiled.decision_log),
            Loaded::Empty => None,
        }
    }

    /// The connection's peers the policy reads: the ones to ask the host for.
    pub fn peer_reads(&self) -> crate::input::PeerReads {
        match self {
            Loaded::Ready(compiled) => compiled.policy.peer_reads,
            Loaded::Empty => crate::input::PeerReads::default(),
        }
    }

    /// Said when the configuration is installed: the policy reads the request's body, which
    /// it is never given (`limits.max_request_body_bytes` is 0).
    pub fn body_warning(&self) -> Option<&'static str> {
        match self {
            Loaded::Ready(compiled) => compiled.body_warning(),
            Loaded::Empty => None,
        }
    }

    /// How many bytes of a request's body to read for the policy: `None` when it is not to
    /// be read (`limits.max_request_body_bytes` is 0, or the policy does not read the body).
    pub fn body_limit(&self) -> Option<usize> {
        match self {
            Loaded::Ready(compiled)
                if compiled.max_request_body_bytes > 0 && compiled.policy.body_reads =>
            {
                Some(compiled.max_request_body_bytes)
            }
            _ => None,
        }
    }
}

/// Parses and compiles configuration bytes as delivered by the host.
pub fn load(bytes: &[u8]) -> Result<Loaded, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Loaded::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        config_error(
            "",
            "configuration is not UTF-8 text; on Envoy pass it as google.protobuf.StringValue \
             (a google.protobuf.Struct arrives as binary protobuf)",
        )
    })?;
    if !text.trim_start().starts_with('{') {
        return Err(config_error(
            "",
            "configuration must be a JSON object; on Envoy pass it as google.protobuf.StringValue \
             (a google.protobuf.Struct arrives as binary protobuf)",
        ));
    }
    let raw: RawConfig = serde_json::from_str(text)
        .map_err(|e| config_error("", format!("invalid configuration: {e}")))?;
    compile(raw).map(|compiled| Loaded::Ready(Box::new(compiled)))
}

pub fn compile(raw: RawConfig) -> Result<Compiled, ConfigError> {
    if raw.issuers.is_empty() {
        return Err(config_error("issuers", "at least one issuer is required"));
    }
    let mut issuers: Vec<Issuer> = Vec::with_capacity(raw.issuers.len());
    for (index, raw_issuer) in raw.issuers.into_iter().enumerate() {
        let field = format!("issuers[{index}]");
        let issuer = compile_issuer(raw_issuer, &field)?;
        if issuers.iter().any(|other| other.issuer == issuer.issuer) {
            return Err(config_error(
                format!("{field}.issuer"),
                format!("issuer `{}` is configured twice", issuer.issuer),
            ));
        }
        issuers.push(issuer);
    }
    let token_sources = compile_token_sources(raw.from_headers)?;
    if raw.limits.max_request_body_bytes > MAX_REQUEST_BODY_BYTES {
        return Err(config_error(
            "limits.max_request_body_bytes",
            format!("must be between 0 and {MAX_REQUEST_BODY_BYTES}"),
        ));
    }
    if !(256..=65536).contains(&raw.limits.max_token_bytes) {
        return Err(config_error(
            "limits.max_token_bytes",
            "must be between 256 and 65536",
        ));
    }
    if !(1..=32).contains(&raw.limits.max_delegation_depth) {
        return Err(config_error(
            "limits.max_delegation_depth",
            "must be between 1 and 32",
        ));
    }
    for (field, value) in [
        ("limits.max_cached_tokens", raw.limits.max_cached_tokens),
        (
            "limits.max_cached_decisions",
            raw.limits.max_cached_decisions,
        ),
    ] {
        if value > MAX_CACHE_CAPACITY {
            return Err(config_error(
                field,
                format!("must be between 0 and {MAX_CACHE_CAPACITY}"),
            ));
        }
    }
    let transaction_tokens = raw
        .transaction_tokens
        .map(|txn| compile_transaction_tokens(txn, &issuers, &token_sources))
        .transpose()?;
    let grants = raw
        .grants
        .map(|grants| {
            compile_grants(
                grants,
                &issuers,
                &token_sources,
                transaction_tokens.as_ref(),
            )
        })
        .transpose()?;
    // The registry is read from the policy data before the policy takes it over.
    let registry = match raw.registry {
        Some(registry) => {
            let empty = serde_json::Value::Object(Default::default());
            Some(Registry::compile(
                registry,
                raw.policy.data.as_ref().unwrap_or(&empty),
            )?)
        }
        None => None,
    };
    let revocations = Revocations::compile(raw.revocations)?;
    let decision_log = DecisionLog::compile(raw.decision_log)?;
    let policy = compile_policy(raw.policy)?;
    let credential_headers = token_sources
        .iter()
        .map(|s| s.name.clone())
        .chain(transaction_tokens.as_ref().map(|t| t.header.clone()))
        .chain(grants.as_ref().map(|g| g.header.clone()))
        .collect();
    Ok(Compiled {
        issuers,
        token_sources,
        policy,
        max_token_bytes: raw.limits.max_token_bytes,
        max_delegation_depth: raw.limits.max_delegation_depth,
        max_cached_tokens: raw.limits.max_cached_tokens,
        max_cached_decisions: raw.limits.max_cached_decisions,
        max_request_body_bytes: raw.limits.max_request_body_bytes,
        transaction_tokens,
        grants,
        credential_headers,
        registry,
        revocations,
        decision_log,
        dry_run: raw.dry_run,
    })
}

fn compile_transaction_tokens(
    raw: RawTransactionTokens,
    agent_issuers: &[Issuer],
    token_sources: &[TokenSource],
) -> Result<TransactionTokens, ConfigError> {
    let field = "transaction_tokens";
    let taken: Vec<&str> = token_sources.iter().map(|s| s.name.as_str()).collect();
    let header = side_token_header(&raw.header, field, &taken)?;
    distinct_issuer(
        &raw.issuer,
        field,
        agent_issuers.iter().map(|i| i.issuer.as_str()),
    )?;
    let issuer = compile_issuer(
        RawIssuer {
            issuer: raw.issuer,
            audiences: raw.audiences,
            algorithms: raw.algorithms,
            local_jwks: raw.local_jwks,
            remote_jwks: raw.remote_jwks,
            clock_skew_seconds: raw.clock_skew_seconds,
            max_lifetime_seconds: raw.max_lifetime_seconds,
            // draft-ietf-oauth-transaction-tokens: the JWT `typ` header is `txntoken+jwt`.
            allowed_types: Some(vec!["txntoken+jwt".to_owned()]),
            claims: RawClaimMapping::default(),
            forward: false,
        },
        field,
    )?;
    Ok(TransactionTokens {
        issuer,
        header,
        required: raw.required,
    })
}

fn compile_grants(
    raw: RawGrants,
    agent_issuers: &[Issuer],
    token_sources: &[TokenSource],
    transaction_tokens: Option<&TransactionTokens>,
) -> Result<Grants, ConfigError> {
    let field = "grants";
    let mut taken: Vec<&str> = token_sources.iter().map(|s| s.name.as_str()).collect();
    taken.extend(transaction_tokens.map(|t| t.header.as_str()));
    let header = side_token_header(&raw.header, field, &taken)?;
    let others = agent_issuers
        .iter()
        .chain(transaction_tokens.map(|t| &t.issuer))
        .map(|i| i.issuer.as_str());
    distinct_issuer(&raw.issuer, field, others)?;
    if !(1..=32).contains(&raw.max_per_request) {
        return Err(config_error(
            format!("{field}.max_per_request"),
            "must be between 1 and 32",
        ));
    }
    let issuer = compile_issuer(
        RawIssuer {
            issuer: raw.issuer,
            audiences: raw.audiences,
            algorithms: raw.algorithms,
            local_jwks: raw.local_jwks,
            remote_jwks: raw.remote_jwks,
            clock_skew_seconds: raw.clock_skew_seconds,
            // A grant's window may not be longer than this (`exp` from `iat`, or from now).
            max_lifetime_seconds: raw.max_validity_seconds,
            allowed_types: None,
            claims: RawClaimMapping::default(),
            forward: false,
        },
        field,
    )
    .map_err(
        |error| match error.field.strip_prefix("grants.max_lifetime_seconds") {
            Some(_) => config_error("grants.max_validity_seconds", error.message),
            None => error,
        },
    )?;
    Ok(Grants {
        issuer,
        header,
        max_per_request: raw.max_per_request,
    })
}

/// The header of a token beside the agent token: a valid name, outside chaperone's own
/// namespace, not already carrying another token.
fn side_token_header(name: &str, field: &str, taken: &[&str]) -> Result<String, ConfigError> {
    let header = name.to_ascii_lowercase();
    if !valid_header_name(&header) || crate::decision::is_identity_header(&header) {
        return Err(config_error(
            format!("{field}.header"),
            "not a usable header name",
        ));
    }
    if taken.contains(&header.as_str()) {
        return Err(config_error(
            format!("{field}.header"),
            "already carries another token",
        ));
    }
    Ok(header)
}

fn distinct_issuer<'a>(
    issuer: &str,
    field: &str,
    mut others: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    if others.any(|other| other == issuer) {
        return Err(config_error(
            format!("{field}.issuer"),
            "must differ from every other token issuer",
        ));
    }
    Ok(())
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn compile_issuer(raw: RawIssuer, field: &str) -> Result<Issuer, ConfigError> {
    if raw.issuer.is_empty() {
        return Err(config_error(format!("{field}.issuer"), "must not be empty"));
    }
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        return Err(config_error(
            format!("{field}.audiences"),
            "at least one non-empty audience is required",
        ));
    }
    let algorithms = match raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(names) if names.is_empty() => {
            return Err(config_error(
                format!("{field}.algorithms"),
                "must not be empty",
            ))
        }
        Some(names) => {
            let mut algorithms = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let algorithm = Algorithm::from_name(name).ok_or_else(|| {
                    config_error(
                        format!("{field}.algorithms[{i}]"),
                        format!("unsupported algorithm `{name}`"),
                    )
                })?;
                algorithms.push(algorithm);
            }
            algorithms
        }
    };
    if raw.clock_skew_seconds > 300 {
        return Err(config_error(
            format!("{field}.clock_skew_seconds"),
            "must be at most 300",
        ));
    }
    if !(1..=86_400).contains(&raw.max_lifetime_seconds) {
        return Err(config_error(
            format!("{field}.max_lifetime_seconds"),
            "must be between 1 and 86400",
        ));
    }
    let keys = match (raw.local_jwks, raw.remote_jwks) {
        (Some(jwks), None) => KeySource::Local(admit_key_set(
            &jwks,
            &algorithms,
            &format!("{field}.local_jwks"),
        )?),
        (None, Some(remote)) => KeySource::Remote(RemoteJwks::compile(
            remote,
            &raw.issuer,
            &algorithms,
            &format!("{field}.remote_jwks"),
        )?),
        (Some(_), Some(_)) => {
            return Err(config_error(
                field,
                "set local_jwks or remote_jwks, not both",
            ))
        }
        (None, None) => return Err(config_error(field, "local_jwks or remote_jwks is required")),
    };
    let allowed_types = match raw.allowed_types {
        Some(types) if types.is_empty() => {
            return Err(config_error(
                format!("{field}.allowed_types"),
                "must not be empty",
            ))
        }
        Some(types) => Some(types.iter().map(|t| normalize_type(t)).collect()),
        None => None,
    };
    let claim_mapping = ClaimMapping::compile(raw.claims, &format!("{field}.claims"))?;
    Ok(Issuer {
        issuer: raw.issuer,
        audiences: raw.audiences,
        algorithms,
        keys,
        clock_skew_seconds: raw.clock_skew_seconds,
        max_lifetime_seconds: raw.max_lifetime_seconds,
        allowed_types,
        claim_mapping,
        forward: raw.forward,
    })
}

/// `typ` values compare case-insensitively and without the `application/` media-type prefix
/// (RFC 7515 section 4.1.9).
pub(crate) fn normalize_type(value: &str) -> String {
    let upper = value.to_ascii_uppercase();
    upper
        .strip_prefix("APPLICATION/")
        .map_or(upper.clone(), str::to_owned)
}

fn compile_token_sources(
    raw: Option<Vec<RawTokenSource>>,
) -> Result<Vec<TokenSource>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(vec![TokenSource {
            name: "authorization".to_owned(),
            value_prefix: "Bearer ".to_owned(),
        }]);
    };
    if raw.is_empty() {
        return Err(config_error("from_headers", "must not be empty"));
    }
    let mut sources: Vec<TokenSource> = Vec::with_capacity(raw.len());
    for (i, source) in raw.into_iter().enumerate() {
        let name = source.name.to_ascii_lowercase();
        if !valid_header_name(&name) {
            return Err(config_error(
                format!("from_headers[{i}].name"),
                "not a valid header name",
            ));
        }
        if crate::decision::is_identity_header(&name) {
            return Err(config_error(
                format!("from_headers[{i}].name"),
                "x-chaperone-* headers are reserved for identity headers",
            ));
        }
        if sources.iter().any(|s| s.name == name) {
            return Err(config_error(
                format!("from_headers[{i}].name"),
                "listed twice",
            ));
        }
        sources.push(TokenSource {
            name,
            value_prefix: source.value_prefix,
        });
    }
    Ok(sources)
}

fn compile_policy(raw: RawPolicy) -> Result<Policy, ConfigError> {
    if raw.modules.is_empty() {
        return Err(config_error(
            "policy.modules",
            "at least one Rego module is required",
        ));
    }
    if !(1..=1000).contains(&raw.max_eval_ms) {
        return Err(config_error(
            "policy.max_eval_ms",
            "must be between 1 and 1000",
        ));
    }
    let data = raw
        .data
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if !data.is_object() {
        return Err(config_error("policy.data", "must be a JSON object"));
    }
    match raw.engine.as_deref() {
        None | Some("interpreter") => {}
        Some("vm") => {
            return Err(config_error(
                "policy.engine",
                "`vm` is not offered: regorus 0.14.1's VM allows requests that OPA and the \
                 interpreter deny (README, `policy.engine`); leave out `engine`",
            ))
        }
        Some(other) => {
            return Err(config_error(
                "policy.engine",
                format!("`{other}` is not `interpreter`"),
            ))
        }
    }
    let mut policy = Policy::compile(
        &raw.modules,
        data,
        raw.decision_path
            .as_deref()
            .unwrap_or(DEFAULT_DECISION_PATH),
        raw.name.unwrap_or_else(|| "policy".to_owned()),
        raw.revision.unwrap_or_default(),
        raw.max_eval_ms,
    )?;
    policy.dry_run = raw.dry_run;
    Ok(policy)
}
