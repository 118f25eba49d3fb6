//! The hash chain over audit records.
//!
//! Every record has a sequence number (1, 2, 3, … with no gaps), the hash
//! of the record before it, and its own hash. Its own hash is
//! HMAC-SHA-256, under a key derived from the master key, of an encoding of
//! every stored field and the previous hash (see [`encode_record`]).
//! Editing, deleting or reordering stored records therefore breaks the
//! chain, and someone who can write to the database but does not hold the
//! master key cannot compute the hashes of a forged record.
//!
//! The one-row table `audit_chain` contains the head (sequence and hash of the
//! newest record) and the checkpoint (sequence and hash of the last pruned
//! record, or 0 and [`GENESIS_HASH`]), tagged by a MAC (see
//! [`crate::chain_head`]). Each insert locks that row in its transaction, so
//! the chain stays linear with several writers.
//!
//! Verification only reads. No code path hashes a record that is already
//! stored, except the explicit `portcullis audit-log seal`, so a record
//! whose hash was removed stays broken.
//!
//! NOTE: someone with write access to the database can still delete the
//! newest records and put back a head row that the store wrote earlier,
//! which verification cannot tell from a shorter log. Comparing with a
//! head kept outside the database (`verify --expect-head`) detects that.

use std::fmt;
use std::sync::Arc;

use portcullis_core::crypto::AuditChainKey;
use portcullis_core::ids::AuditId;
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditEvent};
use crate::error::StoreError;

/// Length of a chain hash in bytes.
pub const HASH_LEN: usize = 32;

/// A chain hash: an HMAC-SHA-256 tag.
pub type ChainHash = [u8; HASH_LEN];

/// The previous hash of the first record ever written.
pub const GENESIS_HASH: ChainHash = [0; HASH_LEN];

/// Number of records read per query while verifying.
pub(crate) const VERIFY_PAGE: i64 = 1000;

/// The audit chain key of a store, when it was opened with one. Clones
/// share it.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuditKeySlot(Option<Arc<AuditChainKey>>);

impl AuditKeySlot {
    pub(crate) fn new(key: AuditChainKey) -> Self {
        Self(Some(Arc::new(key)))
    }

    /// Returns the key, or fails closed when the store has none.
    pub(crate) fn get(&self) -> Result<&AuditChainKey, StoreError> {
        self.0.as_deref().ok_or(StoreError::AuditKeyMissing)
    }
}

/// Computes the place of a new record after the head `(head_seq, head_hash)`:
/// its sequence number, previous hash and own hash.
pub(crate) fn link(
    key: &AuditChainKey,
    head_seq: i64,
    head_hash: ChainHash,
    event: &AuditEvent,
) -> (i64, ChainHash, ChainHash) {
    let seq = head_seq + 1;
    let hash = record_hash(key, seq, &head_hash, event);
    (seq, head_hash, hash)
}

/// Label at the start of every encoded record, naming the encoding version.
const ENCODING_LABEL: &[u8] = b"portcullis/audit-record/v1";

/// An audit record with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainedAuditEvent {
    /// The record's sequence number, from 1.
    pub seq: i64,
    /// The hash of the record before it.
    pub prev_hash: ChainHash,
    /// The record's own hash.
    pub hash: ChainHash,
    /// The record.
    pub event: AuditEvent,
}

/// The newest stored record, as the start-up check reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewestRecord {
    pub(crate) seq: i64,
    pub(crate) id: AuditId,
    /// The record's hash, `None` when it or the previous hash is missing
    /// or not [`HASH_LEN`] bytes long.
    pub(crate) hash: Option<ChainHash>,
}

impl NewestRecord {
    pub(crate) fn new(
        seq: i64,
        id: AuditId,
        prev_hash: Option<&[u8]>,
        hash: Option<&[u8]>,
    ) -> Self {
        let well_formed = |bytes: Option<&[u8]>| bytes.and_then(|b| ChainHash::try_from(b).ok());
        let hash = well_formed(prev_hash).and(well_formed(hash));
        Self { seq, id, hash }
    }
}

/// The stored head and checkpoint of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainState {
    /// Sequence number of the newest record, 0 when there is none.
    pub head_seq: i64,
    /// Hash of the newest record.
    pub head_hash: ChainHash,
    /// Sequence number of the last pruned record, 0 when nothing was pruned.
    pub checkpoint_seq: i64,
    /// Hash of the last pruned record.
    pub checkpoint_hash: ChainHash,
}

/// Converts the time of a record to what the chain hashes: whole
/// milliseconds since the Unix epoch, the precision that both backends store.
pub(crate) fn chain_millis(at: OffsetDateTime) -> i64 {
    at.unix_timestamp() * 1000 + i64::from(at.millisecond())
}

/// Drops the part of `at` finer than a millisecond, so that the time
/// hashed at insert equals the time read back from either backend.
pub(crate) fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(u32::from(at.millisecond()) * 1_000_000)
        .unwrap_or(at)
}

/// Encodes a record for hashing.
///
/// The encoding is unambiguous. It writes the label, then the sequence
/// number and the millisecond time as 8-byte big-endian integers, and the
/// previous hash and the id as raw bytes. Each text field is a 4-byte
/// big-endian length and its UTF-8 bytes, each optional field a byte 0
/// (absent) or 1 and the value. The details are JSON with the object keys
/// sorted, so both backends give the same bytes.
pub(crate) fn encode_record(seq: i64, prev_hash: &ChainHash, event: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(ENCODING_LABEL);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(prev_hash);
    out.extend_from_slice(event.id.as_uuid().as_bytes());
    out.extend_from_slice(&chain_millis(event.at).to_be_bytes());
    push_text(&mut out, &event.actor);
    push_text(&mut out, event.action.as_str());
    match event.tenant_id {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(id.as_uuid().as_bytes());
        }
        None => out.push(0),
    }
    push_optional_text(&mut out, event.target.as_deref());
    push_optional_text(&mut out, event.remote_addr.as_deref());
    let mut details = String::new();
    write_canonical_json(&mut details, &event.details);
    push_text(&mut out, &details);
    out
}

/// Computes the hash of a record at `seq` after `prev_hash`.
pub(crate) fn record_hash(
    key: &AuditChainKey,
    seq: i64,
    prev_hash: &ChainHash,
    event: &AuditEvent,
) -> ChainHash {
    key.tag(&encode_record(seq, prev_hash, event))
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    // Stored text is far below 4 GiB. A longer value would saturate the
    // length and still hash differently from any shorter one.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn push_optional_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            push_text(out, text);
        }
        None => out.push(0),
    }
}

/// Writes `value` as compact JSON with the keys of every object sorted by
/// their UTF-8 bytes. PostgreSQL's `jsonb` reorders keys, so the hash must
/// not depend on the order in which a record's details were built.
fn write_canonical_json(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (index, (name, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical_json(out, item);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical_json(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The reason verification stopped at a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakKind {
    /// The record's hash does not match its stored fields: it was edited.
    Edited,
    /// Records from `expected` up to the one before this record are
    /// missing: they were deleted.
    Missing {
        /// The first missing sequence number.
        expected: i64,
    },
    /// The record's previous hash is the hash of the record at `follows`,
    /// not of the record before it: records were reordered.
    OutOfOrder {
        /// The sequence number of the record that this one was written after.
        follows: i64,
    },
    /// The record's previous hash matches no stored record: the record
    /// before it was replaced, or the record was moved here from elsewhere.
    Unlinked,
    /// The head names a later record than the last one stored: the newest
    /// records, from `first_missing` on, were deleted.
    TruncatedTail {
        /// The first missing sequence number.
        first_missing: i64,
        /// The sequence number that the head names.
        head_seq: i64,
    },
    /// The head names the same sequence number as the last record but
    /// another hash, or a sequence number below it.
    HeadMismatch {
        /// The sequence number that the head names.
        head_seq: i64,
    },
    /// The checkpoint that verification starts from is not the one that
    /// the last pruning recorded.
    CheckpointUnrecorded,
    /// A record has no sequence number, or its hash or previous hash is
    /// missing or not 32 bytes long: it was written past the chain, or its
    /// hash was removed or changed. `seq` is 0 when the record has none.
    Unchained,
    /// The head row of the chain is missing: it was deleted.
    HeadMissing,
    /// The head row does not match its MAC: it was changed by someone
    /// without the master key.
    HeadForged,
    /// The head row has no MAC although records exist: it was reset, or the
    /// database was last written by a release without head MACs.
    HeadUnsealed,
    /// The head that the operator kept is not among the verified records.
    ExpectedHeadMissing {
        /// The sequence number of the pruning checkpoint, 0 when nothing
        /// was pruned.
        checkpoint_seq: i64,
    },
}

/// The first place where the chain is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    /// The sequence number of the record at fault, or of the place where
    /// one is missing.
    pub seq: i64,
    /// The id of the record at fault, when there is one.
    pub id: Option<AuditId>,
    /// The kind of break.
    pub kind: BreakKind,
}

impl ChainBreak {
    /// Returns a stable snake_case code for the kind of break.
    pub const fn code(&self) -> &'static str {
        match self.kind {
            BreakKind::Edited => "edited",
            BreakKind::Missing { .. } => "missing",
            BreakKind::OutOfOrder { .. } => "out_of_order",
            BreakKind::Unlinked => "unlinked",
            BreakKind::TruncatedTail { .. } => "truncated_tail",
            BreakKind::HeadMismatch { .. } => "head_mismatch",
            BreakKind::CheckpointUnrecorded => "checkpoint_unrecorded",
            BreakKind::Unchained => "unchained",
            BreakKind::HeadMissing => "head_missing",
            BreakKind::HeadForged => "head_forged",
            BreakKind::HeadUnsealed => "head_unsealed",
            BreakKind::ExpectedHeadMissing { .. } => "expected_head_missing",
        }
    }
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id.map_or_else(String::new, |id| format!(" (id {id})"));
        let seq = self.seq;
        match &self.kind {
            BreakKind::Edited => write!(
                f,
                "record {seq}{id} was edited: its hash does not match its stored fields"
            ),
            BreakKind::Missing { expected } => write!(
                f,
                "records {expected} to {} are missing: record {seq}{id} follows record {}",
                seq - 1,
                expected - 1
            ),
            BreakKind::OutOfOrder { follows } => write!(
                f,
                "record {seq}{id} is out of order: it was written after record {follows}"
            ),
            BreakKind::Unlinked => write!(
                f,
                "record {seq}{id} does not follow the record before it: the previous record was \
                 replaced or this one was moved"
            ),
            BreakKind::TruncatedTail {
                first_missing,
                head_seq,
            } => write!(
                f,
                "the newest records are missing: the chain head is record {head_seq}, the last \
                 stored record is {}",
                first_missing - 1
            ),
            BreakKind::HeadMismatch { head_seq } => write!(
                f,
                "the chain head (record {head_seq}) does not match the last stored record {seq}"
            ),
            BreakKind::CheckpointUnrecorded => write!(
                f,
                "the pruning checkpoint at record {seq} was not written by a recorded pruning"
            ),
            BreakKind::Unchained => {
                let place = if seq > 0 {
                    format!(" {seq}")
                } else {
                    String::new()
                };
                write!(
                    f,
                    "record{place}{id} has no sequence number or a missing or malformed hash: it \
                     was written past the hash chain, or its hash was removed or changed"
                )
            }
            BreakKind::HeadMissing => f.write_str(
                "the chain head row is missing: it was deleted, so the newest records cannot be \
                 checked",
            ),
            BreakKind::HeadForged => f.write_str(
                "the chain head row does not match its MAC: it was changed without the master key",
            ),
            BreakKind::HeadUnsealed => f.write_str(
                "the chain head row has no MAC although audit records exist: it was reset, or \
                 the database was last written by a release without head MACs",
            ),
            BreakKind::ExpectedHeadMissing { checkpoint_seq } if *checkpoint_seq > 0 => write!(
                f,
                "the expected head is not among the records after the pruning checkpoint at \
                 record {checkpoint_seq}: records were cut and the head row rolled back, or the \
                 expected head was pruned"
            ),
            BreakKind::ExpectedHeadMissing { .. } => f.write_str(
                "the expected head is not in the chain: records were cut and the head row \
                 rolled back, or the chain was replaced",
            ),
        }
    }
}

/// A summary of an intact chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// Number of records checked.
    pub records: u64,
    /// Sequence number of the first record checked, when there was one.
    pub first_seq: Option<i64>,
    /// The head: sequence number and hash of the newest record.
    pub head_seq: i64,
    /// Hash of the newest record.
    pub head_hash: ChainHash,
    /// Sequence number of the last pruned record, 0 when none was pruned.
    pub checkpoint_seq: i64,
}

/// Checks records in sequence order, one at a time, from the checkpoint.
#[derive(Debug)]
pub(crate) struct ChainVerifier<'a> {
    key: &'a AuditChainKey,
    state: ChainState,
    next_seq: i64,
    prev_hash: ChainHash,
    records: u64,
    first_seq: Option<i64>,
    /// Whether a pruning record names the stored checkpoint.
    checkpoint_recorded: bool,
    /// The head that the operator kept, when given.
    expected_head: Option<ChainHash>,
    /// Whether the checkpoint or a checked record has the expected head's
    /// hash.
    expected_seen: bool,
}

/// A record that did not follow its predecessor, for the caller to tell
/// reordering from replacement by looking up `prev_hash`.
#[derive(Debug)]
pub(crate) enum CheckError {
    /// The chain is broken here.
    Broken(ChainBreak),
    /// The record's previous hash is wrong. The caller classifies the break
    /// by looking for a record with that hash.
    Unlinked {
        seq: i64,
        id: AuditId,
        prev_hash: ChainHash,
        /// Whether the record's own hash matches its stored fields.
        intact: bool,
    },
}

impl<'a> ChainVerifier<'a> {
    pub(crate) fn new(
        key: &'a AuditChainKey,
        state: ChainState,
        expected_head: Option<ChainHash>,
    ) -> Self {
        Self {
            key,
            state,
            next_seq: state.checkpoint_seq + 1,
            prev_hash: state.checkpoint_hash,
            records: 0,
            first_seq: None,
            checkpoint_recorded: state.checkpoint_seq == 0,
            expected_head,
            expected_seen: expected_head.is_none_or(|hash| hash == state.checkpoint_hash),
        }
    }

    /// Checks the next record in sequence order.
    pub(crate) fn check(&mut self, record: &ChainedAuditEvent) -> Result<(), CheckError> {
        let id = Some(record.event.id);
        if record.seq > self.next_seq {
            return Err(CheckError::Broken(ChainBreak {
                seq: record.seq,
                id,
                kind: BreakKind::Missing {
                    expected: self.next_seq,
                },
            }));
        }
        let encoded = encode_record(record.seq, &record.prev_hash, &record.event);
        let intact = self.key.verify(&encoded, &record.hash);
        if record.prev_hash != self.prev_hash {
            return Err(CheckError::Unlinked {
                seq: record.seq,
                id: record.event.id,
                prev_hash: record.prev_hash,
                intact,
            });
        }
        if !intact {
            return Err(edited(record));
        }

        if record.event.action == AuditAction::AuditPruned
            && names_checkpoint(&record.event.details, &self.state)
        {
            self.checkpoint_recorded = true;
        }
        if self.expected_head == Some(record.hash) {
            self.expected_seen = true;
        }
        self.first_seq.get_or_insert(record.seq);
        self.records += 1;
        self.next_seq = record.seq + 1;
        self.prev_hash = record.hash;
        Ok(())
    }

    /// Returns the state whose head is the last record checked, for a seal
    /// that rebuilds a deleted or changed head row. The stored head is
    /// ignored, but the checkpoint must still be named by a pruning record.
    pub(crate) fn rebuilt_state(self) -> Result<ChainState, ChainBreak> {
        if !self.checkpoint_recorded {
            return Err(ChainBreak {
                seq: self.state.checkpoint_seq,
                id: None,
                kind: BreakKind::CheckpointUnrecorded,
            });
        }
        Ok(ChainState {
            head_seq: self.next_seq - 1,
            head_hash: self.prev_hash,
            ..self.state
        })
    }

    /// Compares the last record checked with the stored head.
    pub(crate) fn finish(self) -> Result<ChainSummary, ChainBreak> {
        let last_seq = self.next_seq - 1;
        let head_seq = self.state.head_seq;
        if head_seq > last_seq {
            return Err(ChainBreak {
                seq: self.next_seq,
                id: None,
                kind: BreakKind::TruncatedTail {
                    first_missing: self.next_seq,
                    head_seq,
                },
            });
        }
        if head_seq < last_seq || self.state.head_hash != self.prev_hash {
            return Err(ChainBreak {
                seq: last_seq,
                id: None,
                kind: BreakKind::HeadMismatch { head_seq },
            });
        }
        if !self.checkpoint_recorded {
            return Err(ChainBreak {
                seq: self.state.checkpoint_seq,
                id: None,
                kind: BreakKind::CheckpointUnrecorded,
            });
        }
        if !self.expected_seen {
            return Err(ChainBreak {
                seq: head_seq,
                id: None,
                kind: BreakKind::ExpectedHeadMissing {
                    checkpoint_seq: self.state.checkpoint_seq,
                },
            });
        }
        Ok(ChainSummary {
            records: self.records,
            first_seq: self.first_seq,
            head_seq,
            head_hash: self.prev_hash,
            checkpoint_seq: self.state.checkpoint_seq,
        })
    }
}

fn edited(record: &ChainedAuditEvent) -> CheckError {
    CheckError::Broken(ChainBreak {
        seq: record.seq,
        id: Some(record.event.id),
        kind: BreakKind::Edited,
    })
}

/// Classifies a record whose previous hash is wrong. `follows` is the
/// sequence number of the stored record whose hash is that previous hash.
pub(crate) fn classify_unlinked(
    seq: i64,
    id: AuditId,
    intact: bool,
    follows: Option<i64>,
) -> ChainBreak {
    let kind = match follows {
        // Sequence numbers are part of the hash, so a record moved to
        // another place no longer matches its own hash either.
        Some(follows) => BreakKind::OutOfOrder { follows },
        None if intact => BreakKind::Unlinked,
        None => BreakKind::Edited,
    };
    ChainBreak {
        seq,
        id: Some(id),
        kind,
    }
}

/// Returns whether the details of a pruning record name the checkpoint of
/// `state`.
fn names_checkpoint(details: &Value, state: &ChainState) -> bool {
    let seq = details.get("through_seq").and_then(Value::as_i64);
    let hash = details.get("through_hash").and_then(Value::as_str);
    seq == Some(state.checkpoint_seq) && hash == Some(hex(&state.checkpoint_hash).as_str())
}

/// Reads a hash written as 64 hexadecimal digits, as [`hex`] writes it.
pub fn parse_hex(text: &str) -> Option<ChainHash> {
    let digits = text.as_bytes();
    // Checked first because `from_str_radix` would also take a sign.
    if digits.len() != HASH_LEN * 2 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut hash = [0u8; HASH_LEN];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(hash)
}

/// Writes a hash as lower-case hexadecimal.
pub fn hex(hash: &ChainHash) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(HASH_LEN * 2);
    for byte in hash {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Reads the stored hash of the record at `seq`, for a writer that needs
/// it. A missing or malformed hash is a chain break naming the record.
pub(crate) fn stored_record_hash(seq: i64, bytes: Option<&[u8]>) -> Result<ChainHash, StoreError> {
    bytes
        .and_then(|bytes| ChainHash::try_from(bytes).ok())
        .ok_or(StoreError::AuditChainBroken(ChainBreak {
            seq,
            id: None,
            kind: BreakKind::Unchained,
        }))
}

/// Returns the break for records deleted from `first_missing` up to the
/// stored record `next`, found by a writer that needed one of them.
pub(crate) fn missing_records(first_missing: i64, next: i64) -> StoreError {
    StoreError::AuditChainBroken(ChainBreak {
        seq: next,
        id: None,
        kind: BreakKind::Missing {
            expected: first_missing,
        },
    })
}

/// Reads a stored hash, failing when its length is wrong.
pub(crate) fn parse_hash(bytes: &[u8]) -> Result<ChainHash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("audit chain hash of {} bytes", bytes.len())))
}

/// The result of sealing the chain head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealOutcome {
    /// The number of records from before the hash chain that were chained.
    pub legacy_records: u64,
    /// The sequence number of the new head: the seal record.
    pub head_seq: i64,
    /// The hash of the seal record.
    pub head_hash: ChainHash,
}

/// The result of one pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneOutcome {
    /// The sequence number of the last deleted record, now the checkpoint.
    pub through_seq: i64,
    /// The number of records deleted.
    pub deleted: u64,
}

#[cfg(test)]
mod tests {
    use portcullis_core::crypto::MasterKey;
    use portcullis_core::ids::TenantId;
    use serde_json::json;

    use super::*;

    fn event(details: Value) -> AuditEvent {
        AuditEvent {
            id: AuditId::generate(),
            at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            actor: "cli".to_owned(),
            action: AuditAction::KeyRevoked,
            tenant_id: Some(TenantId::generate()),
            target: Some("k".to_owned()),
            remote_addr: None,
            details,
        }
    }

    #[test]
    fn key_order_does_not_change_hash() {
        let key = MasterKey::generate().unwrap().audit_chain_key();
        let mut a = serde_json::Map::new();
        a.insert("b".to_owned(), json!(1));
        a.insert("a".to_owned(), json!({"y": 2, "x": [1, "z"]}));
        let first = event(Value::Object(a));
        let second = AuditEvent {
            details: json!({"a": {"x": [1, "z"], "y": 2}, "b": 1}),
            ..first.clone()
        };
        assert_eq!(
            record_hash(&key, 1, &GENESIS_HASH, &first),
            record_hash(&key, 1, &GENESIS_HASH, &second)
        );
    }

    #[test]
    fn fields_are_not_ambiguous() {
        // Moving text from one field to the next must change the hash.
        let key = MasterKey::generate().unwrap().audit_chain_key();
        let first = AuditEvent {
            target: Some("ab".to_owned()),
            remote_addr: Some("c".to_owned()),
            ..event(json!({}))
        };
        let second = AuditEvent {
            target: Some("a".to_owned()),
            remote_addr: Some("bc".to_owned()),
            ..first.clone()
        };
        let absent = AuditEvent {
            remote_addr: None,
            ..first.clone()
        };
        let hash = |e: &AuditEvent| record_hash(&key, 1, &GENESIS_HASH, e);
        assert_ne!(hash(&first), hash(&second));
        assert_ne!(hash(&first), hash(&absent));
        assert_ne!(
            record_hash(&key, 1, &GENESIS_HASH, &first),
            record_hash(&key, 2, &GENESIS_HASH, &first)
        );
    }

    #[test]
    fn hex_round_trips() {
        let hash: ChainHash = std::array::from_fn(|index| u8::try_from(index * 7).unwrap());
        assert_eq!(parse_hex(&hex(&hash)), Some(hash));
        assert_eq!(parse_hex(&hex(&hash).to_uppercase()), Some(hash));
        assert_eq!(parse_hex("ab"), None);
        assert_eq!(parse_hex(&format!("+{}", &hex(&hash)[1..])), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn other_key_gives_other_hash() {
        let first = MasterKey::generate().unwrap().audit_chain_key();
        let second = MasterKey::generate().unwrap().audit_chain_key();
        let record = event(json!({"reason": "x"}));
        assert_ne!(
            record_hash(&first, 1, &GENESIS_HASH, &record),
            record_hash(&second, 1, &GENESIS_HASH, &record)
        );
    }
}
