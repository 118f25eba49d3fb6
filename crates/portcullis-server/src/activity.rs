//! Request activity of one connection, for the idle timeout: the number of
//! requests in flight, and the time the last one ended.
//!
//! A request counts as in flight from the moment its head is read until
//! its response body has been sent or dropped, so a long download through
//! the gateway is never taken for idleness.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// The requests of one connection.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// When the connection opened or its last request ended.
    quiet_since: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                quiet_since: Instant::now(),
            }),
        }
    }
}

impl Activity {
    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.lock().in_flight += 1;
        RequestGuard {
            activity: Arc::clone(self),
        }
    }

    /// Waits until no request has been in flight for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = {
                let state = self.lock();
                if state.in_flight == 0 {
                    let deadline = state.quiet_since + timeout;
                    if deadline <= Instant::now() {
                        return;
                    }
                    deadline
                } else {
                    // A request in flight may end at any time; look again
                    // after a full timeout, which is the earliest the
                    // connection can then be idle.
                    Instant::now() + timeout
                }
            };
            tokio::time::sleep_until(deadline).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: each update
        // is a single assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps one request in flight while it exists.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.quiet_since = Instant::now();
        }
    }
}

/// A response body that keeps its request's [`RequestGuard`] until the
/// body is finished or dropped.
pub struct GuardedBody<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> GuardedBody<B> {
    /// Wraps `inner`, keeping `guard` alive as long as it.
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_after_last_request_ends() {
        let activity = Arc::new(Activity::default());
        let timeout = Duration::from_secs(60);
        let guard = activity.begin();

        // Two minutes in flight are not idleness.
        let waiting = tokio::time::timeout(Duration::from_secs(120), activity.idle_for(timeout));
        assert!(waiting.await.is_err());

        drop(guard);
        let started = Instant::now();
        activity.idle_for(timeout).await;
        assert_eq!(started.elapsed(), timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn new_connection_idle_after_timeout() {
        let activity = Activity::default();
        let started = Instant::now();
        activity.idle_for(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
