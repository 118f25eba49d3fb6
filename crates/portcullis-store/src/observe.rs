//! A hook that receives the duration and outcome of every
//! [`crate::Store`] operation, so that the server can export store latency
//! and errors without this crate depending on a metrics library.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::StoreError;

/// Receives one call per finished store operation.
pub trait StoreObserver: Send + Sync {
    /// Records one operation: the [`crate::Store`] method's name, the time
    /// it took, and its error when it failed.
    fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&StoreError>);
}

static OBSERVER: OnceLock<&'static dyn StoreObserver> = OnceLock::new();

/// Installs the process-wide observer. Only the first call takes effect,
/// so a second server state in one process keeps the first observer.
pub fn set_observer(observer: &'static dyn StoreObserver) {
    let _ = OBSERVER.set(observer);
}

/// The result of a store operation, as passed to the observer.
pub(crate) trait Outcome {
    /// Returns the error of a failed operation.
    fn error(&self) -> Option<&StoreError>;
}

impl<T> Outcome for Result<T, StoreError> {
    fn error(&self) -> Option<&StoreError> {
        self.as_ref().err()
    }
}

impl Outcome for () {
    fn error(&self) -> Option<&StoreError> {
        None
    }
}

/// Passes one finished operation to the observer, if one is installed.
pub(crate) fn record(operation: &'static str, started: Instant, outcome: &impl Outcome) {
    if let Some(observer) = OBSERVER.get() {
        observer.observe(operation, started.elapsed(), outcome.error());
    }
}
