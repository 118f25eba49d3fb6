//! Signing keys and key sets for the OAuth unit tests.

use portcullis_core::crypto::{MasterKey, SealingKey, SigningKeyPair};
use portcullis_core::signing::{SigningAlgorithm, SigningKeyRecord, SigningKeyState};
use secrecy::ExposeSecret;
use time::{Duration, OffsetDateTime};

use super::rotation::{RotationPolicy, plan};
use super::signing::{KeySet, SIGNING_KEY_PURPOSE, generate_signing_key};

pub(crate) const ALGORITHMS: [SigningAlgorithm; 3] = [
    SigningAlgorithm::Es256,
    SigningAlgorithm::Rs256,
    SigningAlgorithm::EdDsa,
];

/// A stored key and its private half, so a test can sign anything with it.
pub(crate) struct TestKey {
    pub(crate) record: SigningKeyRecord,
    pub(crate) pair: SigningKeyPair,
}

pub(crate) fn sealing_key() -> SealingKey {
    MasterKey::generate()
        .unwrap()
        .sealing_key(SIGNING_KEY_PURPOSE)
}

/// Generates a key that was created two hours before `now` and has signed
/// since one hour before `now`.
pub(crate) fn active_key(
    algorithm: SigningAlgorithm,
    sealing: &SealingKey,
    now: OffsetDateTime,
) -> TestKey {
    let mut record = generate_signing_key(
        algorithm,
        sealing,
        now - Duration::hours(2),
        now - Duration::hours(1),
    )
    .unwrap();
    record.state = SigningKeyState::Active;
    let pkcs8 = sealing
        .open(&record.sealed_private_key, record.kid.as_bytes())
        .unwrap();
    let pair = SigningKeyPair::from_pkcs8(algorithm, pkcs8.expose_secret()).unwrap();
    TestKey { record, pair }
}

/// Builds the key set that the default rotation policy gives at `now`.
pub(crate) fn key_set(
    records: &[SigningKeyRecord],
    sealing: &SealingKey,
    now: OffsetDateTime,
) -> KeySet {
    let plan = plan(records, now, &RotationPolicy::default());
    KeySet::from_plan(records, &plan, sealing).unwrap()
}
