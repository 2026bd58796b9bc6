//! Stable reason codes: the vocabulary of decision records, response bodies and metrics.

/// Why a request was allowed or denied. The `code()` strings are a public contract
/// (README, "Responses and reason codes"): never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TokenMissing,
    TokenAmbiguous,
    TokenMalformed,
    TokenTooLarge,
    TokenUnsupported,
    IssuerUnknown,
    AlgorithmNotAllowed,
    KeyUnknown,
    SignatureInvalid,
    TokenExpired,
    TokenNotYetValid,
    TokenLifetimeExceeded,
    AudienceMismatch,
    TypeNotAllowed,
    ClaimInvalid,
    RequestMalformed,
    RequestBodyInvalid,
    RequestBodyIncomplete,
    AnsweredBeforeDecision,
    PolicyAllowed,
    PolicyDenied,
    PolicyUndefined,
    PolicyError,
    PolicyResultInvalid,
    PolicyUnavailable,
    KeysUnavailable,
    DelegationTooDeep,
    DelegationNotAllowed,
    /// A revoked token `jti` or signing key: the credential is void.
    TokenRevoked,
    /// A revoked agent or owner: the identity may not act.
    IdentityRevoked,
    AgentUnregistered,
    AgentSuspended,
    AgentDecommissioned,
    OwnerOffboarded,
    PurposeNotAllowed,
    TxnTokenMissing,
    TxnTokenInvalid,
    TxnTokenMismatch,
    DecisionLogUnavailable,
    /// The host refused to carry a decision out (rewriting the request's headers).
    InternalError,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::TokenAmbiguous => "token_ambiguous",
            Reason::TokenMalformed => "token_malformed",
            Reason::TokenTooLarge => "token_too_large",
            Reason::TokenUnsupported => "token_unsupported",
            Reason::IssuerUnknown => "issuer_unknown",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::KeyUnknown => "key_unknown",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::TokenLifetimeExceeded => "token_lifetime_exceeded",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::TypeNotAllowed => "type_not_allowed",
            Reason::ClaimInvalid => "claim_invalid",
            Reason::RequestMalformed => "request_malformed",
            Reason::RequestBodyInvalid => "request_body_invalid",
            Reason::RequestBodyIncomplete => "request_body_incomplete",
            Reason::AnsweredBeforeDecision => "answered_before_decision",
            Reason::PolicyAllowed => "policy_allowed",
            Reason::PolicyDenied => "policy_denied",
            Reason::PolicyUndefined => "policy_undefined",
            Reason::PolicyError => "policy_error",
            Reason::PolicyResultInvalid => "policy_result_invalid",
            Reason::PolicyUnavailable => "policy_unavailable",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::DelegationTooDeep => "delegation_too_deep",
            Reason::DelegationNotAllowed => "delegation_not_allowed",
            Reason::TokenRevoked | Reason::IdentityRevoked => "revoked",
            Reason::AgentUnregistered => "agent_unregistered",
            Reason::AgentSuspended => "agent_suspended",
            Reason::AgentDecommissioned => "agent_decommissioned",
            Reason::OwnerOffboarded => "owner_offboarded",
            Reason::PurposeNotAllowed => "purpose_not_allowed",
            Reason::TxnTokenMissing => "txn_token_missing",
            Reason::TxnTokenInvalid => "txn_token_invalid",
            Reason::TxnTokenMismatch => "txn_token_mismatch",
            Reason::DecisionLogUnavailable => "decision_log_unavailable",
            Reason::InternalError => "internal_error",
        }
    }

    /// The HTTP status a denial with this reason gets (policies may override 403s).
    pub fn status(self) -> u16 {
        match self {
            Reason::PolicyAllowed => 200,
            Reason::RequestMalformed
            | Reason::RequestBodyInvalid
            | Reason::RequestBodyIncomplete => 400,
            Reason::PolicyDenied
            | Reason::PolicyUndefined
            | Reason::PolicyError
            | Reason::PolicyResultInvalid
            | Reason::DelegationTooDeep
            | Reason::IdentityRevoked
            | Reason::AgentUnregistered
            | Reason::AgentSuspended
            | Reason::AgentDecommissioned
            | Reason::OwnerOffboarded
            | Reason::PurposeNotAllowed => 403,
            Reason::PolicyUnavailable
            | Reason::KeysUnavailable
            | Reason::DecisionLogUnavailable => 503,
            Reason::InternalError | Reason::AnsweredBeforeDecision => 500,
            _ => 401,
        }
    }

    /// Every reason, for documentation tests and metric tables.
    pub const ALL: [Reason; 40] = [
        Reason::TokenMissing,
        Reason::TokenAmbiguous,
        Reason::TokenMalformed,
        Reason::TokenTooLarge,
        Reason::TokenUnsupported,
        Reason::IssuerUnknown,
        Reason::AlgorithmNotAllowed,
        Reason::KeyUnknown,
        Reason::SignatureInvalid,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::TokenLifetimeExceeded,
        Reason::AudienceMismatch,
        Reason::TypeNotAllowed,
        Reason::ClaimInvalid,
        Reason::RequestMalformed,
        Reason::RequestBodyInvalid,
        Reason::RequestBodyIncomplete,
        Reason::AnsweredBeforeDecision,
        Reason::PolicyAllowed,
        Reason::PolicyDenied,
        Reason::PolicyUndefined,
        Reason::PolicyError,
        Reason::PolicyResultInvalid,
        Reason::PolicyUnavailable,
        Reason::KeysUnavailable,
        Reason::DelegationTooDeep,
        Reason::DelegationNotAllowed,
        Reason::TokenRevoked,
        Reason::IdentityRevoked,
        Reason::AgentUnregistered,
        Reason::AgentSuspended,
        Reason::AgentDecommissioned,
        Reason::OwnerOffboarded,
        Reason::PurposeNotAllowed,
        Reason::TxnTokenMissing,
        Reason::TxnTokenInvalid,
        Reason::TxnTokenMismatch,
        Reason::DecisionLogUnavailable,
        Reason::InternalError,
    ];
}
