//! The agent registry: which agents exist, who owns each, whether it may act, for which
//! purposes. It lives in the policy data (so policy authors manage it with the bundle and
//! policies can read it) at a configured path, and is indexed once at configure time.
//!
//! ```json
//! {"agents": {"support-bot": {"owner": "alice@example.com", "status": "active",
//!                             "purposes": ["support"], "permissions": [...]}},
//!  "owners": {"bob@example.com": {"status": "offboarded"}}}
//! ```
//!
//! Entries may carry more fields (permissions, descriptions) for the policy; chaperone reads
//! `owner` (required), `status` (`active`, `suspended`, `decommissioned`; default `active`)
//! and `purposes` (optional). Owners not listed are active.

use crate::config::{config_error, ConfigError};
use crate::reason::Reason;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

pub const DEFAULT_DATA_PATH: &str = "chaperone/registry";

/// `registry` as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    #[serde(default)]
    pub data_path: Option<String>,
    #[serde(default)]
    pub unregistered: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Active,
    Suspended,
    Decommissioned,
}

#[derive(Debug, Clone)]
struct AgentEntry {
    owner: String,
    status: AgentStatus,
    /// `None`: any purpose.
    purposes: Option<Vec<String>>,
}

pub struct Registry {
    agents: HashMap<String, AgentEntry>,
    offboarded_owners: Vec<String>,
    /// Unregistered agents pass (flagged in the record) instead of being denied.
    flag_unregistered: bool,
    /// Slash form, for messages and docs.
    pub data_path: String,
}

impl Registry {
    pub fn compile(raw: RawRegistry, data: &Value) -> Result<Registry, ConfigError> {
        let flag_unregistered = match raw.unregistered.as_deref() {
            None | Some("deny") => false,
            Some("flag") => true,
            Some(other) => {
                return Err(config_error(
                    "registry.unregistered",
                    format!("`{other}` is neither `deny` nor `flag`"),
                ))
            }
        };
        let data_path = raw
            .data_path
            .unwrap_or_else(|| DEFAULT_DATA_PATH.to_owned())
            .trim_matches('/')
            .to_owned();
        if data_path.is_empty() || data_path.split('/').any(str::is_empty) {
            return Err(config_error("registry.data_path", "must look like `a/b`"));
        }
        let field = format!("policy.data.{}", data_path.replace('/', "."));
        let pointer = format!("/{data_path}");
        let document = data.pointer(&pointer).ok_or_else(|| {
            config_error(
                &field,
                "missing: the registry is configured but the policy data has none here",
            )
        })?;
        let document = document
            .as_object()
            .ok_or_else(|| config_error(&field, "must be an object with `agents`"))?;
        let agents_value = document
            .get("agents")
            .and_then(Value::as_object)
            .ok_or_else(|| config_error(format!("{field}.agents"), "must be an object"))?;
        let mut agents = HashMap::with_capacity(agents_value.len());
        for (id, entry) in agents_value {
            let entry_field = format!("{field}.agents.{id}");
            agents.insert(id.clone(), agent_entry(entry, &entry_field)?);
        }
        let mut offboarded_owners = Vec::new();
        if let Some(owners) = document.get("owners") {
            let owners = owners
                .as_object()
                .ok_or_else(|| config_error(format!("{field}.owners"), "must be an object"))?;
            for (owner, entry) in owners {
                let status = entry.get("status").and_then(Value::as_str);
                match status {
                    None | Some("active") => {}
                    Some("offboarded") => offboarded_owners.push(owner.clone()),
                    Some(other) => {
                        return Err(config_error(
                            format!("{field}.owners.{owner}.status"),
                            format!("`{other}` is neither `active` nor `offboarded`"),
                        ))
                    }
                }
            }
        }
        Ok(Registry {
            agents,
            offboarded_owners,
            flag_unregistered,
            data_path,
        })
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The owner on record for a registered agent.
    pub fn owner_of(&self, agent_id: &str) -> Option<&str> {
        self.agents.get(agent_id).map(|entry| entry.owner.as_str())
    }

    /// Whether `agent_id` may act for `purpose`: `Ok(true)` when registered and in good
    /// standing, `Ok(false)` for an unregistered agent let through to be flagged, or the
    /// reason it may not act.
    pub fn check(&self, agent_id: &str, purpose: Option<&str>) -> Result<bool, Reason> {
        let Some(entry) = self.agents.get(agent_id) else {
            return if self.flag_unregistered {
                Ok(false)
            } else {
                Err(Reason::AgentUnregistered)
            };
        };
        match entry.status {
            AgentStatus::Active => {}
            AgentStatus::Suspended => return Err(Reason::AgentSuspended),
            AgentStatus::Decommissioned => return Err(Reason::AgentDecommissioned),
        }
        if self.offboarded_owners.contains(&entry.owner) {
            return Err(Reason::OwnerOffboarded);
        }
        if let (Some(purpose), Some(allowed)) = (purpose, &entry.purposes) {
            if !allowed.iter().any(|p| p == purpose) {
                return Err(Reason::PurposeNotAllowed);
            }
        }
        Ok(true)
    }
}

fn agent_entry(entry: &Value, field: &str) -> Result<AgentEntry, ConfigError> {
    let entry = entry
        .as_object()
        .ok_or_else(|| config_error(field, "must be an object"))?;
    let owner = match entry.get("owner") {
        Some(Value::String(owner)) if !owner.is_empty() => owner.clone(),
        _ => {
            return Err(config_error(
                format!("{field}.owner"),
                "every registered agent needs an owner (a non-empty string)",
            ))
        }
    };
    let status = match entry.get("status").and_then(Value::as_str) {
        None | Some("active") => AgentStatus::Active,
        Some("suspended") => AgentStatus::Suspended,
        Some("decommissioned") => AgentStatus::Decommissioned,
        Some(other) => {
            return Err(config_error(
                format!("{field}.status"),
                format!("`{other}` is not active, suspended or decommissioned"),
            ))
        }
    };
    let purposes = match entry.get("purposes") {
        None => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| config_error(format!("{field}.purposes"), "must be strings"))?,
        ),
        Some(_) => {
            return Err(config_error(
                format!("{field}.purposes"),
                "must be a list of strings",
            ))
        }
    };
    Ok(AgentEntry {
        owner,
        status,
        purposes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry(unregistered: &str) -> Registry {
        let data = json!({"chaperone": {"registry": {
            "agents": {
                "bot": {"owner": "alice", "purposes": ["support"], "permissions": []},
                "old": {"owner": "alice", "status": "decommissioned"},
                "paused": {"owner": "alice", "status": "suspended"},
                "orphan": {"owner": "bob"},
            },
            "owners": {"bob": {"status": "offboarded"}, "alice": {"status": "active"}},
        }}});
        let raw = RawRegistry {
            data_path: None,
            unregistered: Some(unregistered.to_owned()),
        };
        Registry::compile(raw, &data).unwrap()
    }

    #[test]
    fn standing_of_agents() {
        let r = registry("deny");
        assert_eq!(r.owner_of("bot"), Some("alice"));
        assert_eq!(r.check("bot", None), Ok(true));
        assert_eq!(r.check("bot", Some("support")), Ok(true));
        assert_eq!(
            r.check("bot", Some("payments")),
            Err(Reason::PurposeNotAllowed)
        );
        assert_eq!(r.check("old", None), Err(Reason::AgentDecommissioned));
        assert_eq!(r.check("paused", None), Err(Reason::AgentSuspended));
        assert_eq!(r.check("orphan", None), Err(Reason::OwnerOffboarded));
        assert_eq!(r.check("shadow", None), Err(Reason::AgentUnregistered));
        assert_eq!(registry("flag").check("shadow", None), Ok(false));
    }

    #[test]
    fn registry_mistakes_are_configuration_errors() {
        let compile = |data: Value, unregistered: Option<&str>| {
            Registry::compile(
                RawRegistry {
                    data_path: None,
                    unregistered: unregistered.map(str::to_owned),
                },
                &data,
            )
            .err()
            .map(|e| e.field)
        };
        let at = |registry: Value| json!({"chaperone": {"registry": registry}});
        assert_eq!(
            compile(json!({}), None).as_deref(),
            Some("policy.data.chaperone.registry")
        );
        assert_eq!(
            compile(at(json!({"agents": {"a": {}}})), None).as_deref(),
            Some("policy.data.chaperone.registry.agents.a.owner")
        );
        assert_eq!(
            compile(
                at(json!({"agents": {"a": {"owner": "o", "status": "retired"}}})),
                None
            )
            .as_deref(),
            Some("policy.data.chaperone.registry.agents.a.status")
        );
        assert_eq!(
            compile(
                at(json!({"agents": {}, "owners": {"o": {"status": "gone"}}})),
                None
            )
            .as_deref(),
            Some("policy.data.chaperone.registry.owners.o.status")
        );
        assert_eq!(
            compile(at(json!({"agents": {}})), Some("allow")).as_deref(),
            Some("registry.unregistered")
        );
    }
}
