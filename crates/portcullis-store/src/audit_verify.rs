//! The [`Store`] methods that check the audit chain (verification and the
//! start-up check, both read-only) and the one-time seal of its head.
//!
//! Why the seal is an explicit operator command and never runs at start-up:
//! a database written before the hash chain (records without hashes, a head
//! at zero) looks exactly like one whose hashes and head someone with write
//! access removed. Any step that chains such records by itself can
//! therefore be triggered again by that person, and it would re-hash
//! records they edited. So chaining waits for an operator, who runs it only
//! after `verify` reported why. It chains old records only when the chain
//! was never written, and it appends an `audit.chain_sealed` record that
//! names the head it found. That record is itself chained, so the seal
//! stays visible to every later verification and export.

use portcullis_core::crypto::AuditChainKey;

use crate::audit::{AuditContext, AuditEvent};
use crate::chain::{self, BreakKind, ChainBreak, ChainHash, ChainState, ChainSummary, SealOutcome};
use crate::chain_head::EMPTY_STATE;
use crate::{Store, StoreError};

impl Store {
    /// Checks the whole audit chain: the head row's MAC, then every record
    /// from the checkpoint to the head. It only reads.
    ///
    /// With `expected_head`, the hash of a head that the operator kept
    /// outside the database, the chain must also still contain that record.
    /// This catches newest records cut together with an old head row put
    /// back. Returns `Ok(Err(break))` naming the first problem when the
    /// chain is broken, and fails only when the records cannot be read.
    pub async fn verify_audit_chain(
        &self,
        expected_head: Option<&ChainHash>,
    ) -> Result<Result<ChainSummary, ChainBreak>, StoreError> {
        let key = self.chain_key()?;
        let state = match self.checked_head(key, true).await? {
            Ok(state) => state,
            Err(broken) => return Ok(Err(broken)),
        };
        self.walk_chain(key, state, expected_head.copied()).await
    }

    /// Checks, cheaply and without writing, that the chain can be appended
    /// to: the head row matches its MAC, every record has a sequence number,
    /// the newest stored record has well-formed hashes and is the one the
    /// head names. `serve` runs it at start and refuses to start on a break.
    /// The records before the newest are not read here, because that time
    /// grows with the log; `verify_audit_chain` checks them.
    pub async fn check_audit_head(&self) -> Result<Result<ChainState, ChainBreak>, StoreError> {
        let key = self.chain_key()?;
        let state = match self.checked_head(key, false).await? {
            Ok(state) => state,
            Err(broken) => return Ok(Err(broken)),
        };
        let newest = dispatch!(self, store => store.newest_audit())?
            .filter(|record| record.seq > state.checkpoint_seq);
        if let Some(record) = newest.as_ref().filter(|record| record.hash.is_none()) {
            return Ok(Err(ChainBreak {
                seq: record.seq,
                id: Some(record.id),
                kind: BreakKind::Unchained,
            }));
        }
        let last_seq = newest
            .as_ref()
            .map_or(state.checkpoint_seq, |record| record.seq);
        if last_seq < state.head_seq {
            return Ok(Err(ChainBreak {
                seq: last_seq + 1,
                id: None,
                kind: BreakKind::TruncatedTail {
                    first_missing: last_seq + 1,
                    head_seq: state.head_seq,
                },
            }));
        }
        let hash_differs = newest
            .as_ref()
            .is_some_and(|record| record.hash != Some(state.head_hash));
        if last_seq > state.head_seq || hash_differs {
            return Ok(Err(ChainBreak {
                seq: last_seq,
                id: newest.map(|record| record.id),
                kind: BreakKind::HeadMismatch {
                    head_seq: state.head_seq,
                },
            }));
        }
        Ok(Ok(state))
    }

    /// Seals a chain head that has no valid MAC, after an operator decided
    /// to: a database from a release without head MACs, or a head found
    /// deleted, reset or forged.
    ///
    /// The stored records must verify as one chain, from the stored
    /// checkpoint or, when the head row is missing, from the first stored
    /// record, whose predecessor a pruning record must name. The new head
    /// is the last of those records, whatever the head row contained. When the
    /// chain was never written, the records without a hash are chained in
    /// time order, because they predate the chain. Otherwise any record
    /// without a hash fails the seal. The seal then appends an
    /// `audit.chain_sealed` record naming the head it found. A head that
    /// already matches its MAC fails with [`StoreError::Conflict`], and a
    /// broken chain with [`StoreError::AuditChainBroken`].
    pub async fn seal_audit_chain(
        &self,
        context: &AuditContext,
    ) -> Result<SealOutcome, StoreError> {
        let key = self.chain_key()?;
        let read = dispatch!(self, store => store.audit_head_row())?;
        let found = match read.check(key) {
            Ok(_) => {
                return Err(StoreError::Conflict(
                    "the audit chain head already matches its MAC: there is nothing to seal"
                        .to_owned(),
                ));
            }
            Err(broken) => broken.kind,
        };
        if let Some(broken) = self.first_malformed().await? {
            return Err(StoreError::AuditChainBroken(broken));
        }
        let previous = read.state_or_empty();
        let start = match read.stored {
            Some(_) => previous,
            None => self.first_stored_checkpoint().await?,
        };
        let rebuilt = match self.walk_records(key, start, None).await? {
            Ok(verifier) => verifier
                .rebuilt_state()
                .map_err(StoreError::AuditChainBroken)?,
            Err(broken) => return Err(StoreError::AuditChainBroken(broken)),
        };
        let chains_legacy = previous == EMPTY_STATE && rebuilt == EMPTY_STATE;
        if !chains_legacy && let Some(broken) = self.first_unchained().await? {
            return Err(StoreError::AuditChainBroken(broken));
        }

        let found_code = ChainBreak {
            seq: previous.head_seq,
            id: None,
            kind: found,
        }
        .code();
        let seal = |previous: &ChainState, legacy: u64| {
            AuditEvent::audit_chain_sealed(context, found_code, previous, legacy)
        };
        let outcome = dispatch!(self, store => store.seal_audit_head(&read, &rebuilt, seal))?;
        tracing::warn!(
            found = found_code,
            previous_head_seq = previous.head_seq,
            rebuilt_head_seq = rebuilt.head_seq,
            legacy_records = outcome.legacy_records,
            head_seq = outcome.head_seq,
            "sealed the audit chain head"
        );
        Ok(outcome)
    }

    /// Returns the checkpoint that the first stored chained record follows,
    /// for a seal whose head row was deleted with the checkpoint in it.
    /// Record 1 follows the genesis hash. A later first record follows a
    /// pruning checkpoint, which the verifier then requires a pruning
    /// record to name.
    async fn first_stored_checkpoint(&self) -> Result<ChainState, StoreError> {
        let first = dispatch!(self, store => store.audit_chain_page(0, 1))?;
        Ok(match first.first() {
            Some(record) if record.seq > 1 => ChainState {
                checkpoint_seq: record.seq - 1,
                checkpoint_hash: record.prev_hash,
                ..EMPTY_STATE
            },
            _ => EMPTY_STATE,
        })
    }

    fn chain_key(&self) -> Result<&AuditChainKey, StoreError> {
        match self {
            Self::Sqlite(store) => store.audit_key(),
            Self::Postgres(store) => store.audit_key(),
        }
    }

    /// Checks the head row's MAC and that every record has a sequence
    /// number, and returns the head's state. With `all_hashes`, it also
    /// checks that every record's hashes are well formed, which reads the
    /// whole table.
    async fn checked_head(
        &self,
        key: &AuditChainKey,
        all_hashes: bool,
    ) -> Result<Result<ChainState, ChainBreak>, StoreError> {
        let read = dispatch!(self, store => store.audit_head_row())?;
        let state = match read.check(key) {
            Ok(state) => state,
            Err(broken) => return Ok(Err(broken)),
        };
        if all_hashes && let Some(broken) = self.first_malformed().await? {
            return Ok(Err(broken));
        }
        match self.first_unchained().await? {
            Some(broken) => Ok(Err(broken)),
            None => Ok(Ok(state)),
        }
    }

    /// Returns a break naming the oldest record without a sequence number,
    /// if there is one.
    async fn first_unchained(&self) -> Result<Option<ChainBreak>, StoreError> {
        let event = dispatch!(self, store => store.first_unchained_audit())?;
        Ok(event.map(|event| ChainBreak {
            seq: 0,
            id: Some(event.id),
            kind: BreakKind::Unchained,
        }))
    }

    /// Returns a break naming the oldest record whose hash or previous hash
    /// is missing or malformed, if there is one.
    async fn first_malformed(&self) -> Result<Option<ChainBreak>, StoreError> {
        let found = dispatch!(self, store => store.first_malformed_audit())?;
        Ok(found.map(|(seq, event)| ChainBreak {
            seq,
            id: Some(event.id),
            kind: BreakKind::Unchained,
        }))
    }

    /// Checks the records from the checkpoint of `state` to its head, page
    /// by page.
    async fn walk_chain(
        &self,
        key: &AuditChainKey,
        state: ChainState,
        expected_head: Option<ChainHash>,
    ) -> Result<Result<ChainSummary, ChainBreak>, StoreError> {
        Ok(self
            .walk_records(key, state, expected_head)
            .await?
            .and_then(chain::ChainVerifier::finish))
    }

    /// Checks every stored record after the checkpoint of `state` in
    /// sequence order, and returns the verifier for the caller to compare
    /// the last record with a head.
    async fn walk_records<'a>(
        &self,
        key: &'a AuditChainKey,
        state: ChainState,
        expected_head: Option<ChainHash>,
    ) -> Result<Result<chain::ChainVerifier<'a>, ChainBreak>, StoreError> {
        let mut verifier = chain::ChainVerifier::new(key, state, expected_head);
        let mut after = state.checkpoint_seq;
        loop {
            let page = dispatch!(self, store => store.audit_chain_page(after, chain::VERIFY_PAGE))?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            for record in &page {
                match verifier.check(record) {
                    Ok(()) => {}
                    Err(chain::CheckError::Broken(broken)) => return Ok(Err(broken)),
                    Err(chain::CheckError::Unlinked {
                        seq,
                        id,
                        prev_hash,
                        intact,
                    }) => {
                        let follows =
                            dispatch!(self, store => store.find_audit_seq_by_hash(&prev_hash))?;
                        return Ok(Err(chain::classify_unlinked(seq, id, intact, follows)));
                    }
                }
            }
        }
        Ok(Ok(verifier))
    }
}
