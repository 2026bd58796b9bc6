//! `decide`: request facts in, decision out. The only entry point the hosts call per request.

use crate::cache::TokenCache;
use crate::config::{Compiled, KeySource, Loaded};
use crate::input::{build_input, RequestFacts, RequestLine};
use crate::policy::Verdict;
use crate::reason::Reason;
use crate::record::{
    rfc3339, BundleInfo, DecisionRecord, RecordAgent, RecordRequest, RecordResult,
};
use crate::remote::{KeyLookup, KeyStore};
use crate::runtime::Runtime;
use crate::token::{authenticate, extract_token, Agent};
use std::collections::BTreeMap;

pub const HEADER_PREFIX: &str = "x-chaperone-";
pub const AGENT_ID_HEADER: &str = "x-chaperone-agent-id";
pub const OWNER_HEADER: &str = "x-chaperone-owner";
pub const ISSUER_HEADER: &str = "x-chaperone-issuer";
pub const DECISION_ID_HEADER: &str = "x-chaperone-decision-id";

/// What the host must do with the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// 200 on allow; the local reply status otherwise.
    pub status: u16,
    pub reason: Reason,
    /// Request headers to remove before anything else (spoofed identity headers).
    pub strip_headers: Vec<String>,
    /// On allow: headers to add to the upstream request.
    pub upstream_headers: Vec<(String, String)>,
    /// On deny: the local reply.
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub record: DecisionRecord,
}

/// True for header names in chaperone's namespace, with `_` read as `-` (some upstream
/// frameworks map underscores to dashes, so `x_chaperone_agent_id` is a spoof too).
pub fn is_identity_header(name: &str) -> bool {
    let prefix = HEADER_PREFIX.as_bytes();
    name.len() >= prefix.len()
        && name.bytes().zip(prefix).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == *b
        })
}

/// Decides one request. `runtime` is the VM's state for this configuration: verified tokens
/// remembered between requests and fetched key sets. Pass a fresh one for one-off decisions.
pub fn decide(loaded: &Loaded, runtime: &mut Runtime, facts: &RequestFacts) -> Decision {
    let strip_headers: Vec<String> = facts
        .headers
        .iter()
        .filter_map(|(name, _)| std::str::from_utf8(name).ok())
        .filter(|name| is_identity_header(name))
        .map(str::to_owned)
        .collect();
    let line = facts.request_line();
    let mut decision = match (loaded, &line) {
        (Loaded::Empty, _) => deny(Reason::PolicyUnavailable, facts, None),
        (Loaded::Ready(_), None) => deny(Reason::RequestMalformed, facts, None),
        (Loaded::Ready(compiled), Some(line)) => decide_compiled(compiled, runtime, facts, line),
    };
    decision.strip_headers = strip_headers;
    if let Some(line) = line {
        decision.record.request = RecordRequest {
            method: Some(line.method),
            path: Some(line.path),
            host: Some(line.host),
            id: line.request_id,
        };
    }
    decision
}

fn decide_compiled(
    compiled: &Compiled,
    runtime: &mut Runtime,
    facts: &RequestFacts,
    line: &RequestLine,
) -> Decision {
    let now_ms = facts.now_ns / 1_000_000;
    let agent = match extract_token(compiled, &facts.headers).and_then(|token| {
        verified_agent(compiled, &mut runtime.cache, &runtime.keys, token, now_ms)
    }) {
        Ok(agent) => agent,
        Err(reason) => return with_policy_info(deny(reason, facts, None), compiled),
    };
    let credential_headers: Vec<String> = compiled
        .token_sources
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let input = build_input(line, facts, &credential_headers, &agent);
    let verdict = compiled.policy.evaluate(input);
    let decision = if verdict.allowed {
        allow(&agent, &verdict, facts)
    } else {
        deny_by_policy(&agent, &verdict, facts)
    };
    with_policy_info(decision, compiled)
}

fn verified_agent(
    compiled: &Compiled,
    cache: &mut TokenCache,
    fetched: &KeyStore,
    token: &[u8],
    now_ms: u64,
) -> Result<Agent, Reason> {
    // Size first: the cache must not hash arbitrarily large junk either.
    if token.len() > compiled.max_token_bytes {
        return Err(Reason::TokenTooLarge);
    }
    let key = TokenCache::key(token);
    if let Some(agent) = cache.get(&key, now_ms / 1000) {
        // A remembered token is only as good as the keys that verified it.
        if remote_keys_expired(compiled, fetched, &agent.issuer, now_ms) {
            return Err(Reason::KeysUnavailable);
        }
        return Ok(agent.clone());
    }
    let (agent, expired_from_s) = authenticate(compiled, fetched, token, now_ms)?;
    cache.insert(key, agent.clone(), expired_from_s);
    Ok(agent)
}

fn remote_keys_expired(compiled: &Compiled, fetched: &KeyStore, issuer: &str, now_ms: u64) -> bool {
    compiled
        .issuers
        .iter()
        .position(|i| i.issuer == issuer)
        .is_some_and(|index| {
            matches!(compiled.issuers[index].keys, KeySource::Remote(_))
                && matches!(fetched.lookup(index, now_ms), KeyLookup::Unavailable)
        })
}

fn with_policy_info(mut decision: Decision, compiled: &Compiled) -> Decision {
    let policy = &compiled.policy;
    decision.record.path = policy.decision_path.clone();
    decision.record.bundles = BTreeMap::from([(
        policy.name.clone(),
        BundleInfo {
            revision: policy.revision.clone(),
        },
    )]);
    decision
}

fn base_record(
    facts: &RequestFacts,
    allowed: bool,
    status: u16,
    reason: String,
    rule: Option<String>,
    agent: Option<&Agent>,
) -> DecisionRecord {
    DecisionRecord {
        decision_id: facts.decision_id.clone(),
        seq: 0,
        timestamp: rfc3339(facts.now_ns),
        path: String::new(),
        bundles: BTreeMap::new(),
        result: RecordResult {
            allowed,
            http_status: status,
        },
        reason,
        rule,
        agent: agent.map(|a| RecordAgent {
            id: a.id.clone(),
            issuer: a.issuer.clone(),
            owner: a.owner.clone(),
            kid: a.kid.clone(),
            jti: a.jti.clone(),
        }),
        request: RecordRequest::default(),
        latency_us: 0,
    }
}

fn allow(agent: &Agent, verdict: &Verdict, facts: &RequestFacts) -> Decision {
    use crate::encoding::header_safe;
    let mut upstream_headers = vec![
        (AGENT_ID_HEADER.to_owned(), header_safe(&agent.id)),
        (ISSUER_HEADER.to_owned(), header_safe(&agent.issuer)),
        (DECISION_ID_HEADER.to_owned(), facts.decision_id.clone()),
    ];
    if let Some(owner) = &agent.owner {
        upstream_headers.push((OWNER_HEADER.to_owned(), header_safe(owner)));
    }
    upstream_headers.extend(verdict.headers.iter().cloned());
    let reason = verdict
        .policy_reason
        .clone()
        .unwrap_or_else(|| verdict.reason.code().to_owned());
    Decision {
        allowed: true,
        status: 200,
        reason: verdict.reason,
        strip_headers: Vec::new(),
        upstream_headers,
        response_headers: Vec::new(),
        response_body: Vec::new(),
        record: base_record(facts, true, 200, reason, verdict.rule.clone(), Some(agent)),
    }
}

fn deny_by_policy(agent: &Agent, verdict: &Verdict, facts: &RequestFacts) -> Decision {
    let status = verdict.http_status.unwrap_or(verdict.reason.status());
    let reason = verdict
        .policy_reason
        .clone()
        .unwrap_or_else(|| verdict.reason.code().to_owned());
    let mut headers = verdict.headers.clone();
    if status == 403 {
        headers.push((
            "www-authenticate".to_owned(),
            "Bearer realm=\"chaperone\", error=\"insufficient_scope\"".to_owned(),
        ));
    }
    local_reply(
        facts,
        status,
        verdict.reason,
        reason,
        verdict.rule.clone(),
        Some(agent),
        headers,
        verdict.body.as_deref(),
    )
}

/// A denial before or without the policy (authentication, configuration, malformed request).
fn deny(reason: Reason, facts: &RequestFacts, agent: Option<&Agent>) -> Decision {
    let mut headers = Vec::new();
    match reason {
        Reason::TokenMissing => headers.push((
            "www-authenticate".to_owned(),
            "Bearer realm=\"chaperone\"".to_owned(),
        )),
        _ if reason.status() == 401 => headers.push((
            "www-authenticate".to_owned(),
            format!(
                "Bearer realm=\"chaperone\", error=\"invalid_token\", error_description=\"{}\"",
                reason.code()
            ),
        )),
        _ => {}
    }
    local_reply(
        facts,
        reason.status(),
        reason,
        reason.code().to_owned(),
        None,
        agent,
        headers,
        None,
    )
}

#[allow(clippy::too_many_arguments)]
fn local_reply(
    facts: &RequestFacts,
    status: u16,
    reason_code: Reason,
    reason: String,
    rule: Option<String>,
    agent: Option<&Agent>,
    mut headers: Vec<(String, String)>,
    message: Option<&str>,
) -> Decision {
    let mut body = serde_json::json!({
        "decision_id": facts.decision_id,
        "reason": reason,
        "status": status,
    });
    if let (Some(message), Some(object)) = (message, body.as_object_mut()) {
        object.insert(
            "message".to_owned(),
            serde_json::Value::String(message.to_owned()),
        );
    }
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    headers.push((DECISION_ID_HEADER.to_owned(), facts.decision_id.clone()));
    Decision {
        allowed: false,
        status,
        reason: reason_code,
        strip_headers: Vec::new(),
        upstream_headers: Vec::new(),
        response_headers: headers,
        response_body: body.to_string().into_bytes(),
        record: base_record(facts, false, status, reason, rule, agent),
    }
}
