//! Every refusal and failure a gRPC call is answered with, as one typed error ([`CallError`]),
//! and the one place where each becomes a `tonic::Status`: its code says what the caller should
//! do, its message what happened.
//!
//! - `INVALID_ARGUMENT`: the request itself is wrong; the agent sets such a batch aside instead of
//!   retrying it.
//! - `UNAVAILABLE`: try again shortly (the cluster state is behind, a token cannot be checked
//!   now); the agent keeps its flows.
//! - `RESOURCE_EXHAUSTED`: too much at once (reports in progress, an answer too large).
//! - `UNAUTHENTICATED`, `CANCELLED`, `UNIMPLEMENTED`: as their names say.
//! - `INTERNAL`: the server failed (its store, a task); the agent retries.

use std::time::Duration;

use tonic::{Code, Status};

use crate::commit::CommitError;
use crate::ingest::BatchError;
use crate::store::StoreError;

/// What the caller is told when a token is missing.
const MISSING: &str = "missing `authorization: Bearer <token>`";

/// Why a call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A batch that breaks the protocol's rules.
    #[error("batch {sequence} from {node} ({boot_id}): {source}")]
    InvalidBatch {
        /// The batch's sequence number.
        sequence: u64,
        /// The reporting node.
        node: String,
        /// The reporting agent's boot.
        boot_id: String,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },
    /// A request whose bytes are not a ReportRequest within the bounds, found before decoding.
    #[error("undecodable ReportRequest: {0}")]
    Undecodable(String),
    /// A request whose bytes are not a ReportRequest.
    #[error("undecodable ReportRequest: {0}")]
    Decode(#[source] prost::DecodeError),
    /// A query filter naming a workload that is not `NAME.NAMESPACE`.
    #[error("{field} {value:?}: expected NAME.NAMESPACE")]
    NotNameDotNamespace {
        /// The request's field.
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// A label filter without a key.
    #[error("exclude_labels or exclude_label_keys: a label with an empty key")]
    EmptyLabelKey,

    /// The cluster state was never read yet.
    #[error("the cluster state has not synced yet; retry shortly")]
    NotSynced,
    /// The batch holds flows newer than the cluster state.
    #[error("the cluster state is {behind_ms} ms older than the newest flow; retry shortly")]
    StateBehind {
        /// How far the state is behind the newest flow.
        behind_ms: i64,
    },
    /// The TokenReview API could not be asked.
    #[error("cannot check the bearer token: the Kubernetes TokenReview API request failed: {0}")]
    ReviewFailed(#[source] kube::Error),

    /// Every report slot stayed taken for the whole wait.
    #[error("{max} reports in progress, none finished within {wait:?}; retry later")]
    Busy {
        /// The slots.
        max: usize,
        /// How long the call waited for one.
        wait: Duration,
    },
    /// The bytes of Report requests in progress stayed over the budget for the whole wait.
    #[error(
        "{bytes} bytes of report wait for room in {budget} bytes of reports in progress; none finished within {wait:?}; retry later"
    )]
    BusyBytes {
        /// The request's size, as its gRPC frame announces it.
        bytes: usize,
        /// The budget.
        budget: usize,
        /// How long the call waited.
        wait: Duration,
    },
    /// A ListEdges answer over its limit.
    #[error(
        "the answer exceeds ListEdges' limit of {limit} bytes: use StreamEdges (mapper 0.2 and later do), \
         or narrow the request (client_namespaces, client_workloads, server, since_ms)"
    )]
    TooLarge {
        /// The limit, in encoded bytes.
        limit: usize,
    },

    /// No token where one is required; `hint` says how to pass one.
    #[error("{MISSING}: {hint}")]
    MissingToken {
        /// `pass --token-file`, …
        hint: &'static str,
    },
    /// An `authorization` header of another scheme, or empty.
    #[error("the authorization header is not `Bearer <token>`")]
    NotBearer,
    /// A token that is not the query token.
    #[error("invalid bearer token for the query service")]
    InvalidQueryToken,
    /// A token that is not the static token, with no TokenReview to ask.
    #[error("invalid bearer token")]
    InvalidToken,
    /// The TokenReview API did not authenticate the token.
    #[error("bearer token refused by the Kubernetes TokenReview API{}", .error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    TokenRefused {
        /// The API server's reason, when it gave one.
        error: Option<String>,
    },
    /// A token for another audience.
    #[error("bearer token is not for audience {audience:?} (the API server reports {audiences:?})")]
    WrongAudience {
        /// The audience the server requires.
        audience: String,
        /// Those the token is for.
        audiences: Vec<String>,
    },
    /// A token of a ServiceAccount that is no agent's.
    #[error("{username} is not one of the agent ServiceAccounts allowed to report flows")]
    NotAnAgent {
        /// Who the token belongs to.
        username: String,
    },

    /// The caller went away.
    #[error("the request was cancelled")]
    Cancelled,
    /// A path of the Ingest service that is not a method.
    #[error("no method {0}")]
    NoMethod(String),

    /// The batch could not be written.
    #[error("cannot store the batch: {0}")]
    Store(#[source] CommitError),
    /// The store could not be emptied.
    #[error("cannot reset the store: {0}")]
    Reset(#[source] StoreError),
    /// The blocking task of a call did not finish (it panicked).
    #[error("{what} task failed: {source}")]
    Task {
        /// `ingest`, `list`, `reset`.
        what: &'static str,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
    /// An answer that could not be encoded.
    #[error("cannot encode the answer: {0}")]
    Encode(#[source] prost::EncodeError),
}

impl CallError {
    /// The gRPC code the caller gets.
    pub fn code(&self) -> Code {
        use CallError as E;
        match self {
            E::InvalidBatch { .. }
            | E::Undecodable(_)
            | E::Decode(_)
            | E::NotNameDotNamespace { .. }
            | E::EmptyLabelKey => Code::InvalidArgument,
            E::NotSynced | E::StateBehind { .. } | E::ReviewFailed(_) => Code::Unavailable,
            E::Busy { .. } | E::BusyBytes { .. } | E::TooLarge { .. } => Code::ResourceExhausted,
            E::MissingToken { .. }
            | E::NotBearer
            | E::InvalidQueryToken
            | E::InvalidToken
            | E::TokenRefused { .. }
            | E::WrongAudience { .. }
            | E::NotAnAgent { .. } => Code::Unauthenticated,
            E::Cancelled => Code::Cancelled,
            E::NoMethod(_) => Code::Unimplemented,
            E::Store(_) | E::Reset(_) | E::Task { .. } | E::Encode(_) => Code::Internal,
        }
    }

    /// A task's failure to finish.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| CallError::Task { what, source }
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_tell_the_caller_what_to_do_and_messages_what_happened() {
        let cases: [(CallError, Code, &str); 7] = [
            (
                CallError::InvalidBatch {
                    sequence: 7,
                    node: "n1".into(),
                    boot_id: "b".into(),
                    source: BatchError::Empty { field: "boot_id" },
                },
                Code::InvalidArgument,
                "batch 7 from n1 (b): boot_id is empty",
            ),
            (
                CallError::StateBehind { behind_ms: 300 },
                Code::Unavailable,
                "the cluster state is 300 ms older than the newest flow; retry shortly",
            ),
            (
                CallError::MissingToken { hint: "pass --token-file" },
                Code::Unauthenticated,
                "missing `authorization: Bearer <token>`: pass --token-file",
            ),
            (
                CallError::TokenRefused { error: None },
                Code::Unauthenticated,
                "bearer token refused by the Kubernetes TokenReview API",
            ),
            (
                CallError::TokenRefused { error: Some("expired".into()) },
                Code::Unauthenticated,
                "bearer token refused by the Kubernetes TokenReview API: expired",
            ),
            (
                CallError::Busy { max: 4, wait: Duration::from_secs(5) },
                Code::ResourceExhausted,
                "4 reports in progress, none finished within 5s; retry later",
            ),
            (
                CallError::BusyBytes { bytes: 1000, budget: 4096, wait: Duration::from_secs(5) },
                Code::ResourceExhausted,
                "1000 bytes of report wait for room in 4096 bytes of reports in progress; none finished within 5s; \
                 retry later",
            ),
        ];
        for (error, code, message) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), status.message()), (code, message));
        }
    }

    #[test]
    fn a_failed_write_keeps_its_cause() {
        let e = CallError::Store(CommitError::Stopped);
        assert!(std::error::Error::source(&e).is_some(), "the store's error is the source");
        assert_eq!(Status::from(e).code(), Code::Internal);
    }
}
