//! `decide`: request facts in, decision out. The only entry point the hosts call per request.

use crate::attribution::{attribute, collect_grants};
use crate::config::{Compiled, Loaded};
use crate::decision_cache::{self, Served};
use crate::encoding::{header_safe, list_header_value};
use crate::input::{
    remaining_seconds, InvalidJson, PolicyValue, RequestFacts, RequestInput, RequestLine,
};
use crate::policy::Verdict;
use crate::reason::Reason;
use crate::record::{
    rfc3339, BundleInfo, DecisionRecord, RecordAgent, RecordError, RecordGrant, RecordMetrics,
    RecordRequest, RecordResult, JWT_MASK, TOKEN_MASK,
};
use crate::runtime::Runtime;
use crate::token::Agent;
use std::collections::BTreeMap;

pub const HEADER_PREFIX: &str = "x-chaperone-";
pub const AGENT_ID_HEADER: &str = "x-chaperone-agent-id";
pub const OWNER_HEADER: &str = "x-chaperone-owner";
pub const ISSUER_HEADER: &str = "x-chaperone-issuer";
pub const ON_BEHALF_OF_HEADER: &str = "x-chaperone-on-behalf-of";
pub const DELEGATION_HEADER: &str = "x-chaperone-delegation";
pub const TASK_HEADER: &str = "x-chaperone-task";
pub const PURPOSE_HEADER: &str = "x-chaperone-purpose";
pub const DECISION_ID_HEADER: &str = "x-chaperone-decision-id";
/// Record flag of a verdict answered from memory (`cache_seconds`), not evaluated.
pub const DECISION_CACHED_FLAG: &str = "decision_cached";

/// The record flag saying the policy reads a peer of the connection whose address the host did
/// not give (a Unix socket, Kong's `destination`): a rule like `not net.cidr_contains(...)` then
/// holds, so the record says so.
pub const PEER_UNAVAILABLE_FLAG: &str = "peer_unavailable";

/// What the host must do with the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Whether the request goes upstream. In dry-run a denial goes upstream too; the record
    /// keeps what was decided.
    pub allowed: bool,
    /// 200 when the request goes upstream; the local reply status otherwise.
    pub status: u16,
    pub reason: Reason,
    /// Request headers to remove before anything else (spoofed identity headers).
    pub strip_headers: Vec<String>,
    /// When the request goes upstream: headers to add to it.
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
/// The record's timers stay zero: see [`decide_timed`].
pub fn decide(loaded: &Loaded, runtime: &mut Runtime, facts: &RequestFacts) -> Decision {
    decide_timed(loaded, runtime, facts, 0, &|| 0)
}

/// [`decide`], timing the token and policy stages for the record's `metrics` from `started`,
/// the caller's reading of `clock` (monotonic enough, nanoseconds) when the request came.
/// `clock` is read twice: where the token stage ends and the policy's begins, and where the
/// policy's ends (each reading is a host call in the plugin). The caller reads it once more
/// when it is done with the request, for the total ([`RecordMetrics::finish`]). Decisions
/// never depend on it.
pub fn decide_timed(
    loaded: &Loaded,
    runtime: &mut Runtime,
    facts: &RequestFacts,
    started: u64,
    clock: &dyn Fn() -> u64,
) -> Decision {
    let strip_headers: Vec<String> = facts
        .headers
        .iter()
        .filter_map(|(name, _)| std::str::from_utf8(name).ok())
        .filter(|name| is_identity_header(name))
        .map(str::to_owned)
        .collect();
    let line = facts.request_line();
    let mut decision = match (loaded, &line, facts.parsed_body()) {
        (Loaded::Empty, _, _) => deny(Reason::PolicyUnavailable, facts, None),
        (Loaded::Ready(_), None, _) => deny(Reason::RequestMalformed, facts, None),
        (Loaded::Ready(_), Some(_), Err(InvalidJson)) => {
            deny(Reason::RequestBodyInvalid, facts, None)
        }
        (Loaded::Ready(compiled), Some(line), Ok(parsed_body)) => {
            decide_compiled(compiled, runtime, facts, line, parsed_body, clock, started)
        }
    };
    decision.strip_headers = strip_headers;
    if let (Loaded::Ready(compiled), true) = (loaded, decision.allowed) {
        decision
            .strip_headers
            .extend(unforwarded_token_header(compiled, facts, &decision.record));
    }
    if let Some(line) = line {
        decision.record.request = RecordRequest {
            method: Some(line.method),
            path: Some(line.path),
            host: Some(line.host),
            id: line.request_id,
        };
        decision.record.mask_client_strings();
    }
    decision
}

/// The header the verified agent token came in, when the request goes upstream without it:
/// its issuer does not `forward` it (the default, as in jwt_authn), so the upstream never
/// holds a credential it could present elsewhere.
fn unforwarded_token_header(
    compiled: &Compiled,
    facts: &RequestFacts,
    record: &DecisionRecord,
) -> Option<String> {
    let agent = record.agent.as_ref()?;
    let issuer = compiled.issuers.iter().find(|i| i.issuer == agent.issuer)?;
    if issuer.forward {
        return None;
    }
    // The token came in exactly one of these (`extract_token`).
    compiled
        .token_sources
        .iter()
        .find(|source| {
            facts
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(source.name.as_bytes()))
        })
        .map(|source| source.name.clone())
}

/// How a request held for its body is rewritten at its headers. Proxy-Wasm hosts forward a
/// request's headers before a filter may read its body, so the headers are rewritten first:
/// the spoofed identity headers and the agent token's header go, the verified agent's
/// identity headers come; the policy then decides with the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRewrite {
    pub strip: Vec<String>,
    pub add: Vec<(String, String)>,
}

/// The rewrite for a request whose body the policy reads, from `first`, the decision made on
/// its headers alone. `None` when `first` is final: the request was refused before the
/// policy was asked (no valid token, a revoked or unregistered agent, no configuration...).
pub fn rewrite_before_body(
    loaded: &Loaded,
    first: &Decision,
    facts: &RequestFacts,
) -> Option<HeaderRewrite> {
    let Loaded::Ready(compiled) = loaded else {
        return None;
    };
    let asked_policy = matches!(
        first.reason,
        Reason::PolicyAllowed
            | Reason::PolicyDenied
            | Reason::PolicyUndefined
            | Reason::PolicyError
            | Reason::PolicyResultInvalid
    );
    let agent = first.record.agent.as_ref().filter(|_| asked_policy)?;
    let mut strip = first.strip_headers.clone();
    if let Some(token_header) = unforwarded_token_header(compiled, facts, &first.record) {
        if !strip.contains(&token_header) {
            strip.push(token_header);
        }
    }
    Some(HeaderRewrite {
        strip,
        add: identity_headers(agent, &facts.decision_id),
    })
}

/// A request refused before deciding, because the host cannot honour the configuration (for
/// example `decision_log_unavailable`: its record could not be kept). Never dry-run.
pub fn refuse(loaded: &Loaded, facts: &RequestFacts, reason: Reason) -> Decision {
    let decision = deny(reason, facts, None);
    match loaded {
        Loaded::Ready(compiled) => with_policy_info(decision, compiled),
        Loaded::Empty => decision,
    }
}

fn decide_compiled(
    compiled: &Compiled,
    runtime: &mut Runtime,
    facts: &RequestFacts,
    line: &RequestLine,
    parsed_body: Option<PolicyValue>,
    clock: &dyn Fn() -> u64,
    started: u64,
) -> Decision {
    let now_ms = facts.now_ns / 1_000_000;
    let keeps_input = compiled.decision_log.keeps_input();
    // The token stage: from the caller's start (then the request line read) to an
    // attributed agent with its grants and its input object.
    let attributed = attribute(compiled, runtime, &facts.headers, now_ms).map(|agent| {
        let grants = collect_grants(compiled, runtime, &facts.headers, &agent, now_ms);
        let agent_input = runtime
            .agent_inputs
            .input_of(&agent, &runtime.hasher, keeps_input);
        (agent, grants, agent_input)
    });
    let policy_started = clock();
    let timer_token_ns = policy_started.saturating_sub(started);
    let mut decision = match attributed {
        Ok((agent, grants, agent_input)) => {
            let input = RequestInput {
                line,
                facts,
                credential_headers: &compiled.credential_headers,
                agent: agent_input,
                grants: &grants.valid,
                parsed_body,
            };
            let (verdict, served) = decision_cache::evaluate(
                &compiled.policy,
                &mut runtime.decisions,
                &runtime.hasher,
                &input,
                now_ms / 1_000,
            );
            let timer_rego_query_eval_ns = clock().saturating_sub(policy_started);
            let mut decision = if verdict.allowed {
                allow(&agent, &verdict, facts)
            } else {
                deny_by_policy(&agent, &verdict, facts)
            };
            let reads = compiled.policy.peer_reads;
            if (reads.source && facts.source.address.is_none())
                || (reads.destination && facts.destination.address.is_none())
            {
                decision.record.flags.push(PEER_UNAVAILABLE_FLAG.to_owned());
            }
            match served {
                Served::Remembered => {
                    runtime.cache_stats.decision_hits += 1;
                    decision.record.flags.push(DECISION_CACHED_FLAG.to_owned());
                }
                Served::Missed => runtime.cache_stats.decision_misses += 1,
                Served::Evaluated => {}
            }
            if keeps_input {
                compiled
                    .decision_log
                    .record_input(&input, &mut decision.record);
            }
            decision.record.metrics.timer_rego_query_eval_ns = timer_rego_query_eval_ns;
            decision.record.grants = grants
                .valid
                .iter()
                .map(|grant| RecordGrant {
                    jti: grant.jti.clone(),
                    approver: grant.approver.clone(),
                    remaining_seconds: remaining_seconds(grant, facts.now_ns),
                    used: verdict.grants_used.contains(&grant.jti),
                })
                .collect();
            decision.record.grants_dropped = grants.dropped;
            if !verdict.allowed && compiled.policy.dry_run {
                shadow(&mut decision, facts);
            }
            decision
        }
        Err(denial) => {
            let mut decision = deny(denial.reason, facts, denial.agent.as_deref());
            decision.record.revoked = denial.revoked;
            decision
        }
    };
    if !decision.allowed && compiled.dry_run {
        shadow(&mut decision, facts);
    }
    decision.record.metrics.timer_token_ns = timer_token_ns;
    decision.record.labels = compiled.decision_log.labels.clone();
    with_policy_info(decision, compiled)
}

/// Dry-run: the denial is recorded as decided, but the request goes upstream, with the
/// identity headers of whatever identity was verified.
fn shadow(decision: &mut Decision, facts: &RequestFacts) {
    decision.allowed = true;
    decision.status = 200;
    decision.response_headers.clear();
    decision.response_body.clear();
    decision.upstream_headers = match &decision.record.agent {
        Some(agent) => identity_headers(agent, &facts.decision_id),
        None => vec![(DECISION_ID_HEADER.to_owned(), facts.decision_id.clone())],
    };
    decision.record.dry_run = true;
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
        labels: BTreeMap::new(),
        path: String::new(),
        bundles: BTreeMap::new(),
        input: None,
        erased: Vec::new(),
        result: RecordResult {
            allowed,
            http_status: status,
        },
        reason,
        rule,
        error: None,
        dry_run: false,
        grants: Vec::new(),
        grants_dropped: Vec::new(),
        flags: agent
            .filter(|a| a.registered == Some(false))
            .map(|_| vec!["unregistered_agent".to_owned()])
            .unwrap_or_default(),
        agent: agent.map(RecordAgent::from),
        revoked: None,
        request: RecordRequest::default(),
        metrics: RecordMetrics::default(),
    }
}

/// The headers that tell the upstream who is asking (README, "Identity headers").
fn identity_headers(agent: &RecordAgent, decision_id: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        (AGENT_ID_HEADER.to_owned(), header_safe(&agent.id)),
        (ISSUER_HEADER.to_owned(), header_safe(&agent.issuer)),
        (DECISION_ID_HEADER.to_owned(), decision_id.to_owned()),
    ];
    let optional = [
        (OWNER_HEADER, &agent.owner),
        (ON_BEHALF_OF_HEADER, &agent.on_behalf_of),
        (TASK_HEADER, &agent.task),
        (PURPOSE_HEADER, &agent.purpose),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers.push((name.to_owned(), header_safe(value)));
        }
    }
    if !agent.delegation.is_empty() {
        let actors = agent.delegation.iter().map(|actor| actor.sub.as_str());
        headers.push((DELEGATION_HEADER.to_owned(), list_header_value(actors)));
    }
    headers
}

fn allow(agent: &Agent, verdict: &Verdict, facts: &RequestFacts) -> Decision {
    let reason = verdict
        .policy_reason
        .clone()
        .unwrap_or_else(|| verdict.reason.code().to_owned());
    let record = base_record(facts, true, 200, reason, verdict.rule.clone(), Some(agent));
    let mut upstream_headers = match &record.agent {
        Some(recorded) => identity_headers(recorded, &facts.decision_id),
        None => Vec::new(),
    };
    upstream_headers.extend(verdict.headers.iter().cloned());
    Decision {
        allowed: true,
        status: 200,
        reason: verdict.reason,
        strip_headers: Vec::new(),
        upstream_headers,
        response_headers: Vec::new(),
        response_body: Vec::new(),
        record,
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
    let mut decision = local_reply(
        facts,
        status,
        verdict.reason,
        reason,
        verdict.rule.clone(),
        Some(agent),
        headers,
        verdict.body.as_deref(),
    );
    decision.record.error = verdict.error.clone().map(|message| RecordError { message });
    if verdict
        .error
        .as_deref()
        .is_some_and(|message| message.contains(JWT_MASK) || message.contains(TOKEN_MASK))
    {
        decision.record.flag_credentials_masked();
    }
    decision
}

/// A denial before or without the policy (authentication, configuration, malformed request).
pub(crate) fn deny(reason: Reason, facts: &RequestFacts, agent: Option<&Agent>) -> Decision {
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
    let response_body = reply_body(&facts.decision_id, &reason, status, message);
    reply_headers(&mut headers, &facts.decision_id);
    Decision {
        allowed: false,
        status,
        reason: reason_code,
        strip_headers: Vec::new(),
        upstream_headers: Vec::new(),
        response_headers: headers,
        response_body,
        record: base_record(facts, false, status, reason, rule, agent),
    }
}

/// A local reply's JSON body.
fn reply_body(decision_id: &str, reason: &str, status: u16, message: Option<&str>) -> Vec<u8> {
    let mut body = serde_json::json!({
        "decision_id": decision_id,
        "reason": reason,
        "status": status,
    });
    if let (Some(message), Some(object)) = (message, body.as_object_mut()) {
        object.insert(
            "message".to_owned(),
            serde_json::Value::String(message.to_owned()),
        );
    }
    body.to_string().into_bytes()
}

/// The headers every local reply carries, after its own.
fn reply_headers(headers: &mut Vec<(String, String)>, decision_id: &str) {
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    headers.push((DECISION_ID_HEADER.to_owned(), decision_id.to_owned()));
}

impl Decision {
    /// The host would not carry this decision out (it refused to rewrite the request's
    /// headers): the request is refused with `500 internal_error` instead, and its record
    /// and key fields say so, whatever was decided.
    pub fn fail_internally(&mut self) {
        let reason = Reason::InternalError;
        let status = reason.status();
        let decision_id = &self.record.decision_id;
        self.allowed = false;
        self.status = status;
        self.reason = reason;
        self.upstream_headers.clear();
        self.response_headers.clear();
        reply_headers(&mut self.response_headers, decision_id);
        self.response_body = reply_body(decision_id, reason.code(), status, None);
        self.record.result = RecordResult {
            allowed: false,
            http_status: status,
        };
        self.record.reason = reason.code().to_owned();
        self.record.rule = None;
        self.record.error = None;
        self.record.dry_run = false;
    }
}
