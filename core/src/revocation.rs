//! Revocation lists from the configuration: token ids, agents, owners and signing keys. They
//! travel with the configuration (ECDS, Istio, Kong's database), so an update takes effect on
//! the next request with no restart and no store to run.

use crate::config::{config_error, ConfigError};
use crate::identity::Actor;
use crate::reason::Reason;
use serde::Deserialize;
use std::collections::HashSet;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocations {
    #[serde(default)]
    pub jti: Vec<String>,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub keys: Vec<RawRevokedKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevokedKey {
    pub issuer: String,
    pub kid: String,
}

#[derive(Debug, Default)]
pub struct Revocations {
    jti: HashSet<String>,
    agents: HashSet<String>,
    owners: HashSet<String>,
    /// `(issuer, kid)`.
    keys: HashSet<(String, String)>,
}

/// Which list matched, and the value that matched it (never a token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revoked {
    pub list: &'static str,
    pub value: String,
}

/// What a request is checked against: everything that identifies who sent it.
pub struct Presented<'a> {
    pub issuer: &'a str,
    pub kid: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub agent_id: &'a str,
    pub owner: Option<&'a str>,
    pub delegation: &'a [Actor],
}

impl Revocations {
    pub fn compile(raw: RawRevocations) -> Result<Revocations, ConfigError> {
        let set = |values: Vec<String>, name: &str| -> Result<HashSet<String>, ConfigError> {
            if values.iter().any(String::is_empty) {
                return Err(config_error(
                    format!("revocations.{name}"),
                    "entries must not be empty",
                ));
            }
            Ok(values.into_iter().collect())
        };
        Ok(Revocations {
            jti: set(raw.jti, "jti")?,
            agents: set(raw.agents, "agents")?,
            owners: set(raw.owners, "owners")?,
            keys: raw.keys.into_iter().map(|k| (k.issuer, k.kid)).collect(),
        })
    }

    /// Whether a token id (of an agent token or a grant) is revoked.
    pub fn revokes_jti(&self, jti: &str) -> bool {
        self.jti.contains(jti)
    }

    pub fn is_empty(&self) -> bool {
        self.jti.is_empty()
            && self.agents.is_empty()
            && self.owners.is_empty()
            && self.keys.is_empty()
    }

    /// The first revocation that applies, with the reason to deny: the credential itself
    /// (`jti`, signing key) or the identity (the agent, any actor of its delegation chain,
    /// the owner).
    pub fn check(&self, presented: &Presented<'_>) -> Option<(Reason, Revoked)> {
        let revoked = |list: &'static str, value: &str| Revoked {
            list,
            value: value.to_owned(),
        };
        if let Some(jti) = presented.jti.filter(|jti| self.jti.contains(*jti)) {
            return Some((Reason::TokenRevoked, revoked("jti", jti)));
        }
        if let Some(kid) = presented.kid {
            if self
                .keys
                .contains(&(presented.issuer.to_owned(), kid.to_owned()))
            {
                return Some((Reason::TokenRevoked, revoked("keys", kid)));
            }
        }
        let actors = std::iter::once(presented.agent_id)
            .chain(presented.delegation.iter().map(|a| a.sub.as_str()));
        for actor in actors {
            if self.agents.contains(actor) {
                return Some((Reason::IdentityRevoked, revoked("agents", actor)));
            }
        }
        if let Some(owner) = presented.owner.filter(|o| self.owners.contains(*o)) {
            return Some((Reason::IdentityRevoked, revoked("owners", owner)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_list_matches_what_it_names() {
        let raw: RawRevocations = serde_json::from_value(serde_json::json!({
            "jti": ["j-1"], "agents": ["rogue"], "owners": ["mallory"],
            "keys": [{"issuer": "https://idp", "kid": "leaked"}]
        }))
        .unwrap();
        let lists = Revocations::compile(raw).unwrap();
        let chain = [Actor {
            sub: "rogue".into(),
            iss: None,
            client_id: None,
        }];
        let base = Presented {
            issuer: "https://idp",
            kid: Some("k1"),
            jti: Some("j-2"),
            agent_id: "bot",
            owner: Some("alice"),
            delegation: &[],
        };
        assert_eq!(lists.check(&base), None);
        let list_of = |p: Presented<'_>| lists.check(&p).map(|(reason, r)| (reason, r.list));
        assert_eq!(
            list_of(Presented {
                jti: Some("j-1"),
                ..base
            }),
            Some((Reason::TokenRevoked, "jti"))
        );
        assert_eq!(
            list_of(Presented {
                kid: Some("leaked"),
                ..base
            }),
            Some((Reason::TokenRevoked, "keys"))
        );
        assert_eq!(
            list_of(Presented {
                issuer: "https://other",
                kid: Some("leaked"),
                ..base
            }),
            None,
            "a kid is revoked for its issuer only"
        );
        assert_eq!(
            list_of(Presented {
                agent_id: "rogue",
                ..base
            }),
            Some((Reason::IdentityRevoked, "agents"))
        );
        assert_eq!(
            list_of(Presented {
                delegation: &chain,
                ..base
            }),
            Some((Reason::IdentityRevoked, "agents")),
            "a revoked agent anywhere in the chain"
        );
        assert_eq!(
            list_of(Presented {
                owner: Some("mallory"),
                ..base
            }),
            Some((Reason::IdentityRevoked, "owners"))
        );
    }
}
