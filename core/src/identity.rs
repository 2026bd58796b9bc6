//! Who the agent is, from verified claims: which claim names the agent, who owns it, on whose
//! behalf it acts (RFC 8693 `act` delegation), and which task and purpose it is on.
//!
//! Presets cover the common token shapes:
//!
//! | preset | agent id | on behalf of |
//! |---|---|---|
//! | `agent` (default) | `act.sub` when the token has `act`, else `sub` | `sub` when the token has `act` |
//! | `user_actor` | `act.sub` (`act` required): Okta cross-app access, Entra agent tokens | `sub`, the human |
//! | `spiffe` | `sub`, which must be a SPIFFE ID (JWT-SVID) | `sub` when the token has `act` |
//!
//! The delegation chain lists the actors of the nested `act` claims, current actor first.

use crate::config::{config_error, ConfigError};
use crate::reason::Reason;
use serde::Deserialize;
use serde_json::{Map, Value};

pub const DEFAULT_MAX_DELEGATION_DEPTH: usize = 5;

/// `claims` of an issuer as written in the configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimMapping {
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    /// `spiffe` preset: the trust domains agents may come from (any when absent).
    #[serde(default)]
    pub trust_domains: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Agent,
    UserActor,
    Spiffe,
}

/// Where a value is among the claims: a top-level claim name (which may itself contain `/`
/// or `.`, as namespaced claims do), or a JSON Pointer when it starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRef {
    Name(String),
    Pointer(String),
}

impl ClaimRef {
    fn parse(text: &str, field: &str) -> Result<ClaimRef, ConfigError> {
        if text.is_empty() {
            return Err(config_error(field, "must not be empty"));
        }
        if text.starts_with('/') {
            if text.len() == 1 || text.split('/').skip(1).any(str::is_empty) {
                return Err(config_error(field, "not a usable JSON Pointer"));
            }
            Ok(ClaimRef::Pointer(text.to_owned()))
        } else {
            Ok(ClaimRef::Name(text.to_owned()))
        }
    }

    pub fn find<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        match self {
            ClaimRef::Name(name) => claims.get(name),
            ClaimRef::Pointer(pointer) => {
                let (first, rest) = split_pointer(pointer)?;
                let top = claims.get(&first)?;
                if rest.is_empty() {
                    Some(top)
                } else {
                    top.pointer(rest)
                }
            }
        }
    }
}

/// The first reference token of a JSON Pointer (unescaped) and the pointer to the rest.
fn split_pointer(pointer: &str) -> Option<(String, &str)> {
    let body = pointer.strip_prefix('/')?;
    let (first, rest) = match body.find('/') {
        Some(at) => (&body[..at], &body[at..]),
        None => (body, ""),
    };
    Some((first.replace("~1", "/").replace("~0", "~"), rest))
}

/// How one issuer's claims map to an identity.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    pub preset: Preset,
    /// Overrides the preset's choice of agent id.
    pub agent_id: Option<ClaimRef>,
    pub owner: ClaimRef,
    pub task: Option<ClaimRef>,
    pub purpose: Option<ClaimRef>,
    pub trust_domains: Option<Vec<String>>,
}

impl ClaimMapping {
    pub fn compile(raw: RawClaimMapping, field: &str) -> Result<ClaimMapping, ConfigError> {
        let preset = match raw.preset.as_deref() {
            None | Some("agent") => Preset::Agent,
            Some("user_actor") => Preset::UserActor,
            Some("spiffe") => Preset::Spiffe,
            Some(other) => {
                return Err(config_error(
                    format!("{field}.preset"),
                    format!("unknown preset `{other}` (agent, user_actor, spiffe)"),
                ))
            }
        };
        let optional = |value: Option<String>, name: &str| {
            value
                .map(|v| ClaimRef::parse(&v, &format!("{field}.{name}")))
                .transpose()
        };
        let trust_domains = match raw.trust_domains {
            Some(_) if preset != Preset::Spiffe => {
                return Err(config_error(
                    format!("{field}.trust_domains"),
                    "only applies to the spiffe preset",
                ))
            }
            Some(domains)
                if domains.is_empty() || domains.iter().any(|d| !valid_trust_domain(d)) =>
            {
                return Err(config_error(
                    format!("{field}.trust_domains"),
                    "must list SPIFFE trust domains (lower-case letters, digits, `.`, `-`, `_`)",
                ))
            }
            other => other,
        };
        Ok(ClaimMapping {
            preset,
            agent_id: optional(raw.agent_id, "agent_id")?,
            owner: optional(raw.owner, "owner")?.unwrap_or(ClaimRef::Name("owner".to_owned())),
            task: optional(raw.task, "task")?,
            purpose: optional(raw.purpose, "purpose")?,
            trust_domains,
        })
    }
}

/// One actor of a delegation chain (an RFC 8693 `act` object, reduced to what identifies it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Actor {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The identity read from one verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub agent_id: String,
    /// The token's `sub`.
    pub subject: String,
    /// The principal the agent acts for, when the token is delegated (`act` present).
    pub on_behalf_of: Option<String>,
    /// Actors from the `act` claims, current actor first.
    pub delegation: Vec<Actor>,
    /// The `owner` claim; the registry, when configured, has the last word.
    pub owner: Option<String>,
    pub task: Option<String>,
    pub purpose: Option<String>,
}

/// Reads the identity from verified claims.
pub fn identify(
    mapping: &ClaimMapping,
    claims: &Map<String, Value>,
    max_depth: usize,
) -> Result<Identity, Reason> {
    let subject = non_empty_string(claims.get("sub"))?;
    let delegation = delegation_chain(claims, max_depth)?;
    if mapping.preset == Preset::UserActor && delegation.is_empty() {
        // A token without an actor is the user's own token, not an agent's.
        return Err(Reason::ClaimInvalid);
    }
    check_may_act(claims, delegation.first())?;
    let agent_id = match (&mapping.agent_id, mapping.preset, delegation.first()) {
        (Some(reference), _, _) => non_empty_string(reference.find(claims))?,
        (None, Preset::Spiffe, _) | (None, _, None) => subject.clone(),
        (None, _, Some(actor)) => Some(actor.sub.clone()),
    }
    .ok_or(Reason::ClaimInvalid)?;
    // Tokens without `sub` (some client-credential tokens) are fine when the mapping names
    // the agent elsewhere; the agent is then its own subject.
    let subject = subject.unwrap_or_else(|| agent_id.clone());
    if mapping.preset == Preset::Spiffe {
        let domain = spiffe_trust_domain(&agent_id).ok_or(Reason::ClaimInvalid)?;
        if let Some(allowed) = &mapping.trust_domains {
            if !allowed.iter().any(|d| d == domain) {
                return Err(Reason::ClaimInvalid);
            }
        }
    }
    let on_behalf_of = (!delegation.is_empty()).then(|| subject.clone());
    Ok(Identity {
        owner: non_empty_string(mapping.owner.find(claims))?,
        task: optional_text(mapping.task.as_ref(), claims)?,
        purpose: optional_text(mapping.purpose.as_ref(), claims)?,
        agent_id,
        subject,
        on_behalf_of,
        delegation,
    })
}

/// A string claim that is absent, null, or a non-empty string; anything else is invalid.
fn non_empty_string(value: Option<&Value>) -> Result<Option<String>, Reason> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
        Some(_) => Err(Reason::ClaimInvalid),
    }
}

fn optional_text(
    reference: Option<&ClaimRef>,
    claims: &Map<String, Value>,
) -> Result<Option<String>, Reason> {
    match reference {
        None => Ok(None),
        Some(reference) => non_empty_string(reference.find(claims)),
    }
}

/// The nested `act` claims, outermost (current actor) first. Each needs a non-empty `sub`.
fn delegation_chain(claims: &Map<String, Value>, max_depth: usize) -> Result<Vec<Actor>, Reason> {
    let mut chain = Vec::new();
    let mut next = claims.get("act");
    while let Some(act) = next {
        if chain.len() == max_depth {
            return Err(Reason::DelegationTooDeep);
        }
        let act = act.as_object().ok_or(Reason::ClaimInvalid)?;
        let text = |name: &str| non_empty_string(act.get(name));
        chain.push(Actor {
            sub: text("sub")?.ok_or(Reason::ClaimInvalid)?,
            iss: text("iss")?,
            client_id: text("client_id")?,
        });
        next = act.get("act");
    }
    Ok(chain)
}

/// RFC 8693 `may_act`: when present, the current actor must be one it names. Each entry's
/// identifying claims (`sub`, `iss`, `client_id`) must all match the actor's.
fn check_may_act(claims: &Map<String, Value>, actor: Option<&Actor>) -> Result<(), Reason> {
    let (Some(may_act), Some(actor)) = (claims.get("may_act"), actor) else {
        return Ok(());
    };
    let entries: Vec<&Value> = match may_act {
        Value::Array(list) => list.iter().collect(),
        other => vec![other],
    };
    let allows = |entry: &&Value| {
        let Some(entry) = entry.as_object() else {
            return false;
        };
        let fields = [
            ("sub", Some(actor.sub.as_str())),
            ("iss", actor.iss.as_deref()),
            ("client_id", actor.client_id.as_deref()),
        ];
        entry.contains_key("sub")
            && fields.iter().all(|(name, value)| match entry.get(*name) {
                None => true,
                Some(expected) => expected.as_str().is_some_and(|e| Some(e) == *value),
            })
    };
    if entries.iter().any(allows) {
        Ok(())
    } else {
        Err(Reason::DelegationNotAllowed)
    }
}

/// The trust domain of a SPIFFE ID (`spiffe://<trust-domain>/<path>`), if it is one.
pub fn spiffe_trust_domain(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    let valid_path = !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        });
    (valid_trust_domain(domain) && valid_path).then_some(domain)
}

fn valid_trust_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(raw: Value) -> ClaimMapping {
        ClaimMapping::compile(serde_json::from_value(raw).unwrap(), "claims").unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn plain_agent_tokens_name_the_agent_in_sub() {
        let id = identify(
            &mapping(json!({})),
            &claims(json!({"sub": "bot", "owner": "alice"})),
            5,
        )
        .unwrap();
        assert_eq!(id.agent_id, "bot");
        assert_eq!(id.owner.as_deref(), Some("alice"));
        assert!(id.delegation.is_empty() && id.on_behalf_of.is_none());
    }

    #[test]
    fn delegated_tokens_name_the_current_actor_and_the_principal() {
        let token = claims(json!({"sub": "alice@example.com",
            "act": {"sub": "coder", "client_id": "c1", "act": {"sub": "planner", "act": {"sub": "router"}}}}));
        for preset in ["agent", "user_actor"] {
            let id = identify(&mapping(json!({"preset": preset})), &token, 5).unwrap();
            assert_eq!(id.agent_id, "coder");
            assert_eq!(id.on_behalf_of.as_deref(), Some("alice@example.com"));
            let chain: Vec<&str> = id.delegation.iter().map(|a| a.sub.as_str()).collect();
            assert_eq!(chain, ["coder", "planner", "router"]);
            assert_eq!(id.delegation[0].client_id.as_deref(), Some("c1"));
        }
        assert_eq!(
            identify(&mapping(json!({})), &token, 2),
            Err(Reason::DelegationTooDeep)
        );
        assert!(identify(&mapping(json!({})), &token, 3).is_ok());
        // user_actor needs an actor.
        assert_eq!(
            identify(
                &mapping(json!({"preset": "user_actor"})),
                &claims(json!({"sub": "alice"})),
                5
            ),
            Err(Reason::ClaimInvalid)
        );
        // An actor without a sub is not an actor.
        assert_eq!(
            identify(
                &mapping(json!({})),
                &claims(json!({"sub": "a", "act": {"client_id": "x"}})),
                5
            ),
            Err(Reason::ClaimInvalid)
        );
    }

    #[test]
    fn may_act_restricts_the_current_actor() {
        let base = json!({"sub": "alice", "act": {"sub": "coder", "iss": "https://idp"}});
        let with = |may_act: Value| {
            let mut token = base.clone();
            token["may_act"] = may_act;
            identify(&mapping(json!({})), &claims(token), 5).map(|id| id.agent_id)
        };
        assert_eq!(with(json!({"sub": "coder"})), Ok("coder".to_owned()));
        assert_eq!(
            with(json!({"sub": "coder", "iss": "https://idp"})),
            Ok("coder".to_owned())
        );
        assert_eq!(
            with(json!([{"sub": "other"}, {"sub": "coder"}])),
            Ok("coder".to_owned())
        );
        assert_eq!(
            with(json!({"sub": "other"})),
            Err(Reason::DelegationNotAllowed)
        );
        assert_eq!(
            with(json!({"sub": "coder", "iss": "https://evil"})),
            Err(Reason::DelegationNotAllowed)
        );
        assert_eq!(
            with(json!({"iss": "https://idp"})),
            Err(Reason::DelegationNotAllowed)
        );
        assert_eq!(with(json!("coder")), Err(Reason::DelegationNotAllowed));
    }

    #[test]
    fn spiffe_ids_are_checked() {
        let m = mapping(json!({"preset": "spiffe", "trust_domains": ["prod.example.org"]}));
        let id = identify(
            &m,
            &claims(json!({"sub": "spiffe://prod.example.org/agents/coder"})),
            5,
        )
        .unwrap();
        assert_eq!(id.agent_id, "spiffe://prod.example.org/agents/coder");
        for bad in [
            "spiffe://dev.example.org/agents/coder",
            "spiffe://prod.example.org",
            "spiffe://prod.example.org/",
            "spiffe://Prod.example.org/a",
            "spiffe://prod.example.org/a/../b",
            "https://prod.example.org/a",
        ] {
            assert_eq!(
                identify(&m, &claims(json!({"sub": bad})), 5),
                Err(Reason::ClaimInvalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn claim_references_reach_nested_and_namespaced_claims() {
        let m = mapping(
            json!({"agent_id": "/ext/agent", "owner": "https://example.com/owner",
                               "task": "/ctx/task", "purpose": "purpose"}),
        );
        let id = identify(
            &m,
            &claims(json!({"sub": "svc", "ext": {"agent": "bot-7"},
            "https://example.com/owner": "carol", "ctx": {"task": "T-1"}, "purpose": "triage"})),
            5,
        )
        .unwrap();
        assert_eq!(
            (
                id.agent_id.as_str(),
                id.owner.as_deref(),
                id.task.as_deref(),
                id.purpose.as_deref()
            ),
            ("bot-7", Some("carol"), Some("T-1"), Some("triage"))
        );
        assert_eq!(
            ClaimRef::Pointer("/a~1b/c".into()).find(&claims(json!({"a/b": {"c": 1}}))),
            Some(&json!(1))
        );
        assert!(ClaimMapping::compile(
            serde_json::from_value(json!({"agent_id": "/"})).unwrap(),
            "c"
        )
        .is_err());
        assert!(ClaimMapping::compile(
            serde_json::from_value(json!({"preset": "robot"})).unwrap(),
            "c"
        )
        .is_err());
        assert!(ClaimMapping::compile(
            serde_json::from_value(json!({"trust_domains": ["x"]})).unwrap(),
            "c"
        )
        .is_err());
    }
}
