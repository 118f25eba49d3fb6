//! The MAC of the audit chain's head row.
//!
//! The head row stores the newest record's sequence number and hash and the
//! pruning checkpoint. Without a tag, someone with write access to the
//! database could move the head back after deleting the newest records, or
//! reset it, and the records left would still verify. The tag is
//! HMAC-SHA-256 under the audit chain key over every field of the row, so
//! such a change is detected unless the attacker replays a head row that the
//! store itself wrote earlier. Only a head kept outside the database detects
//! that replay (`portcullis audit-log verify --expect-head`).
//!
//! A head row without a tag is accepted in one state only: a new database
//! whose chain was never written (every field zero and no audit record at
//! all). The first append seals it. Any other untagged head is reported as
//! [`BreakKind::HeadUnsealed`], and only the explicit operator command
//! `portcullis audit-log seal` tags it, and that command appends a record of
//! the seal to the chain.

use portcullis_core::crypto::AuditChainKey;

use crate::chain::{BreakKind, ChainBreak, ChainHash, ChainState, GENESIS_HASH};
use crate::error::StoreError;

/// Label at the start of the encoded head, naming the encoding version.
const HEAD_LABEL: &[u8] = b"portcullis/audit-head/v1";

/// The state of a chain that was never written.
pub(crate) const EMPTY_STATE: ChainState = ChainState {
    head_seq: 0,
    head_hash: GENESIS_HASH,
    checkpoint_seq: 0,
    checkpoint_hash: GENESIS_HASH,
};

/// The head row as stored, before its tag is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredHead {
    /// The head and checkpoint.
    pub(crate) state: ChainState,
    /// The stored tag, `None` when the row was never sealed.
    pub(crate) mac: Option<Vec<u8>>,
}

/// The head row as read, with whether any audit record exists, both from
/// one statement so that they agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeadRead {
    /// The stored row, `None` when it was deleted.
    pub(crate) stored: Option<StoredHead>,
    /// Whether the audit table has any record, chained or not.
    pub(crate) has_records: bool,
}

impl HeadRead {
    /// Checks the row's tag and returns its state, or the break found.
    pub(crate) fn check(&self, key: &AuditChainKey) -> Result<ChainState, ChainBreak> {
        check_head(key, self.stored.as_ref(), self.has_records).map_err(|kind| ChainBreak {
            seq: self
                .stored
                .as_ref()
                .map_or(0, |stored| stored.state.head_seq),
            id: None,
            kind,
        })
    }

    /// Checks the row like [`Self::check`], for a writer: tampering fails
    /// the write.
    pub(crate) fn checked_for_write(&self, key: &AuditChainKey) -> Result<ChainState, StoreError> {
        self.check(key).map_err(StoreError::AuditChainBroken)
    }

    /// Returns the stored state, or the state of an empty chain when the
    /// row is missing.
    pub(crate) fn state_or_empty(&self) -> ChainState {
        self.stored
            .as_ref()
            .map_or(EMPTY_STATE, |stored| stored.state)
    }
}

/// Encodes the head for its tag: the label, the two sequence numbers as
/// 8-byte big-endian integers and the two hashes as raw bytes.
fn encode_head(state: &ChainState) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_LABEL.len() + 2 * (8 + 32));
    out.extend_from_slice(HEAD_LABEL);
    out.extend_from_slice(&state.head_seq.to_be_bytes());
    out.extend_from_slice(&state.head_hash);
    out.extend_from_slice(&state.checkpoint_seq.to_be_bytes());
    out.extend_from_slice(&state.checkpoint_hash);
    out
}

/// Computes the tag of a head row.
pub(crate) fn head_mac(key: &AuditChainKey, state: &ChainState) -> ChainHash {
    key.tag(&encode_head(state))
}

/// Checks a stored head row and returns its state, or the kind of
/// tampering found.
///
/// `has_records`, whether any audit record exists, matters only for an
/// untagged row: it tells a new database from a reset head.
pub(crate) fn check_head(
    key: &AuditChainKey,
    stored: Option<&StoredHead>,
    has_records: bool,
) -> Result<ChainState, BreakKind> {
    let Some(stored) = stored else {
        return Err(BreakKind::HeadMissing);
    };
    match &stored.mac {
        Some(mac) if key.verify(&encode_head(&stored.state), mac) => Ok(stored.state),
        Some(_) => Err(BreakKind::HeadForged),
        None if stored.state == EMPTY_STATE && !has_records => Ok(stored.state),
        None => Err(BreakKind::HeadUnsealed),
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::crypto::MasterKey;

    use super::*;

    fn sealed(key: &AuditChainKey, state: ChainState) -> StoredHead {
        StoredHead {
            state,
            mac: Some(head_mac(key, &state).to_vec()),
        }
    }

    #[test]
    fn sealed_head_accepted() {
        let key = MasterKey::generate().unwrap().audit_chain_key();
        let state = ChainState {
            head_seq: 7,
            head_hash: [7; 32],
            ..EMPTY_STATE
        };
        assert_eq!(
            check_head(&key, Some(&sealed(&key, state)), true),
            Ok(state)
        );
    }

    #[test]
    fn changed_field_detected() {
        let key = MasterKey::generate().unwrap().audit_chain_key();
        let state = ChainState {
            head_seq: 7,
            head_hash: [7; 32],
            checkpoint_seq: 2,
            checkpoint_hash: [2; 32],
        };
        let changes = [
            ChainState {
                head_seq: 6,
                ..state
            },
            ChainState {
                head_hash: [6; 32],
                ..state
            },
            ChainState {
                checkpoint_seq: 3,
                ..state
            },
            ChainState {
                checkpoint_hash: [3; 32],
                ..state
            },
        ];
        for changed in changes {
            let forged = StoredHead {
                state: changed,
                ..sealed(&key, state)
            };
            assert_eq!(
                check_head(&key, Some(&forged), true),
                Err(BreakKind::HeadForged),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn untagged_head_only_for_new_database() {
        let key = MasterKey::generate().unwrap().audit_chain_key();
        let empty = StoredHead {
            state: EMPTY_STATE,
            mac: None,
        };
        assert_eq!(check_head(&key, Some(&empty), false), Ok(EMPTY_STATE));
        assert_eq!(
            check_head(&key, Some(&empty), true),
            Err(BreakKind::HeadUnsealed)
        );
        let moved = StoredHead {
            state: ChainState {
                head_seq: 1,
                ..EMPTY_STATE
            },
            mac: None,
        };
        assert_eq!(
            check_head(&key, Some(&moved), false),
            Err(BreakKind::HeadUnsealed)
        );
        assert_eq!(check_head(&key, None, false), Err(BreakKind::HeadMissing));
    }

    #[test]
    fn other_key_rejects_head() {
        let first = MasterKey::generate().unwrap().audit_chain_key();
        let second = MasterKey::generate().unwrap().audit_chain_key();
        let head = sealed(&first, EMPTY_STATE);
        assert_eq!(
            check_head(&second, Some(&head), false),
            Err(BreakKind::HeadForged)
        );
    }
}
