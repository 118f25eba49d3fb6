//! The [`Store`] methods of the dashboard's one-time form submissions.
//!
//! A form whose response shows a secret once (a new key, a rotated client
//! secret, an invite link) carries a submission token. The first POST with
//! it claims the token's nonce here, runs the action and records the id of
//! what it made. A browser that sends the same POST again finds the claim
//! and changes nothing. The rows live in the database that holds the
//! sign-in sessions, so every node that shares it sees the same claims,
//! and each row goes with its session.

use portcullis_core::crypto::SecretHash;
use time::OffsetDateTime;

use crate::Store;
use crate::error::StoreError;

/// A submission token's claim, made by the first POST that carries it.
#[derive(Clone, Debug)]
pub struct NewSubmission<'a> {
    /// The keyed hash of the session the token was issued to.
    pub session_hash: &'a SecretHash,
    /// The token's random part, unique within the session. It is no
    /// secret: without the server's pepper it cannot be turned into a
    /// token.
    pub nonce: &'a str,
    /// The form the token belongs to, such as `key_create`.
    pub kind: &'a str,
    /// When the claim was made.
    pub created_at: OffsetDateTime,
    /// When the token stops being accepted, after which the row can go.
    pub expires_at: OffsetDateTime,
}

/// The outcome of [`Store::claim_submission`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmissionClaim {
    /// The token was unused and is now claimed: the caller runs the action.
    Claimed,
    /// The token was claimed before. `target` is the id of what that
    /// submission made, or `None` while it runs or when it never finished.
    Used {
        /// The form of the earlier submission.
        kind: String,
        /// The id of the key, client or invite it made.
        target: Option<String>,
    },
    /// The session already has `max_per_session` live claims, so nothing
    /// was claimed.
    SessionFull,
}

impl Store {
    /// Claims a submission token for its session, unless that session used
    /// it before or already has `max_per_session` unexpired claims. Also
    /// deletes the session's expired claims.
    ///
    /// Fails with [`StoreError::NotFound`] when the session does not exist.
    pub async fn claim_submission(
        &self,
        submission: &NewSubmission<'_>,
        max_per_session: u32,
    ) -> Result<SubmissionClaim, StoreError> {
        dispatch!(self, store => store.claim_submission(submission, max_per_session))
    }

    /// Records `target`, the id of what a claimed submission made.
    pub async fn finish_submission(
        &self,
        session_hash: &SecretHash,
        nonce: &str,
        target: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.finish_submission(session_hash, nonce, target))
    }

    /// Deletes a claim whose action changed nothing, such as one that the
    /// store rejected, so that the same form can be sent again.
    pub async fn release_submission(
        &self,
        session_hash: &SecretHash,
        nonce: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.release_submission(session_hash, nonce))
    }
}
