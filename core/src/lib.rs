//! chaperone-core: every decision chaperone makes, as pure functions over plain data.
//! No proxy-wasm, no I/O, no clock: hosts hand in facts and apply the decision.

pub mod attribution;
pub mod builtins;
pub mod cache;
pub mod config;
pub mod decision;
pub mod decision_cache;
pub mod decision_log;
pub mod encoding;
pub mod export;
pub mod hash;
pub mod identity;
pub mod input;
pub mod jwks;
pub mod opa_builtins;
pub mod p256_key;
pub mod policy;
pub mod reason;
pub mod record;
pub mod registry;
pub mod remote;
pub mod revocation;
pub mod rsa;
pub mod runtime;
pub mod small_alloc;
pub mod token;

pub use cache::TokenCache;
pub use config::{load, Compiled, ConfigError, Loaded};
pub use decision::{decide, decide_timed, rewrite_before_body, Decision, HeaderRewrite};
pub use input::{Peer, RequestBody, RequestFacts, SocketAddress};
pub use reason::Reason;
pub use record::DecisionRecord;
pub use runtime::Runtime;
