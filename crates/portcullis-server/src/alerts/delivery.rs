//! Webhook delivery: the outbox worker, the signature and the retry policy.
//!
//! Every alert is queued once per webhook in the store's outbox, in the
//! transaction that stores the alert. The worker takes due rows with a
//! lease, sends them, and records the outcome:
//!
//! - a 2xx response delivers the row;
//! - 408, 429, any 5xx, a connection error or a timeout retries it after
//!   `first_retry`, then twice as long each time up to `max_retry`, each
//!   delay drawn at random from its upper half so that many alerts do not
//!   retry in step, until `max_attempts` attempts are spent;
//! - any other status (3xx, since redirects are not followed, and 4xx) is
//!   final: the receiver understood the request and rejected it, so
//!   repeating the same bytes would only be rejected again.
//!
//! A row taken by a worker that dies is due again when its lease ends, and
//! a restart resumes from the store, so deliveries are at least once:
//! receivers drop repeats by the `Portcullis-Delivery` id.
//!
//! Signature (the scheme of Stripe's and Slack's webhooks): the sender
//! takes the current Unix time `t` and sends
//! `Portcullis-Signature: t=<t>,v1=<hex HMAC-SHA-256 of "<t>.<body>">`
//! keyed with the webhook's secret. A receiver recomputes the HMAC over the
//! raw body it read, compares it with `v1` in constant time, rejects a `t`
//! more than a few minutes from its own clock, and remembers delivery ids
//! for at least that long to reject a replay within the tolerance.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use portcullis_core::crypto::{WebhookKey, fill_random};
use portcullis_store::{AttemptOutcome, Delivery, Store};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertsConfig, DeliveryPolicy, WebhookConfig};
use crate::telemetry::ErrorChain;

/// Header with the timestamp and signature of a delivery.
pub const SIGNATURE_HEADER: &str = "portcullis-signature";

/// Header with the delivery id, the same on every attempt of one delivery.
pub const DELIVERY_HEADER: &str = "portcullis-delivery";

/// How often the worker looks for due deliveries when no new alert woke it.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Deliveries taken per round.
const BATCH: i64 = 32;

/// How long past its timeout a taken delivery stays leased, so that a slow
/// store write after the response does not let another worker send it again.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Maximum length of the error text stored with a delivery.
const MAX_ERROR_LEN: usize = 200;

/// The webhooks, their signing keys and the HTTP client.
pub struct Sender {
    webhooks: Vec<Webhook>,
    policy: DeliveryPolicy,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// One configured webhook, ready to sign.
struct Webhook {
    id: String,
    url: http::Uri,
    /// Host of the URL, for logs: the path and query may hold a token.
    host: String,
    key: WebhookKey,
}

impl Sender {
    /// Builds the sender from the `[alerts]` table. HTTPS receivers are
    /// verified against the operating system's trust store, and connecting
    /// may take the gateway's connect timeout within the attempt timeout.
    ///
    /// # Errors
    ///
    /// Fails when the trust store cannot be read, or when a webhook's
    /// secret was not read with the configuration.
    pub fn new(config: &AlertsConfig) -> std::io::Result<Self> {
        let mut webhooks = Vec::with_capacity(config.webhooks.len());
        for webhook in &config.webhooks {
            webhooks.push(Webhook::new(webhook)?);
        }
        let client = crate::gateway::proxy::http_client()?;
        Ok(Self {
            webhooks,
            policy: config.delivery.clone(),
            client,
        })
    }

    /// Returns the ids of the configured webhooks.
    pub fn webhook_ids(&self) -> impl Iterator<Item = &str> {
        self.webhooks.iter().map(|webhook| webhook.id.as_str())
    }

    /// Sends one delivery and returns the outcome to store.
    async fn attempt(&self, delivery: &Delivery, now: OffsetDateTime) -> AttemptOutcome {
        let Some(webhook) = self.webhooks.iter().find(|w| w.id == delivery.webhook) else {
            return AttemptOutcome::Failed {
                at: now,
                error: "the webhook is no longer configured".to_owned(),
            };
        };
        let result = self.send(webhook, delivery, now).await;
        let attempts = u32::try_from(delivery.attempts)
            .unwrap_or(0)
            .saturating_add(1);
        let error = match result {
            Ok(status) if status.is_success() => {
                tracing::info!(delivery_id = %delivery.id, alert_id = %delivery.alert_id, webhook = %webhook.host, attempts, "alert delivered");
                return AttemptOutcome::Delivered { at: now };
            }
            Ok(status) if !is_retryable(status) => {
                tracing::error!(delivery_id = %delivery.id, alert_id = %delivery.alert_id, webhook = %webhook.host, status = status.as_u16(), "webhook rejected the alert; not retrying");
                return AttemptOutcome::Failed {
                    at: now,
                    error: format!("HTTP {}", status.as_u16()),
                };
            }
            Ok(status) => format!("HTTP {}", status.as_u16()),
            Err(error) => error,
        };
        if attempts >= self.policy.max_attempts {
            tracing::error!(delivery_id = %delivery.id, alert_id = %delivery.alert_id, webhook = %webhook.host, attempts, error = %error, "alert delivery failed; attempts exhausted");
            return AttemptOutcome::Failed { at: now, error };
        }
        let delay = retry_delay(&self.policy, attempts);
        tracing::warn!(delivery_id = %delivery.id, alert_id = %delivery.alert_id, webhook = %webhook.host, attempts, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), error = %error, "alert delivery failed; will retry");
        AttemptOutcome::Retry {
            next_attempt_at: now + delay,
            error,
        }
    }

    /// Sends the signed request and returns the response status, or a
    /// short description of the failure.
    async fn send(
        &self,
        webhook: &Webhook,
        delivery: &Delivery,
        now: OffsetDateTime,
    ) -> Result<StatusCode, String> {
        let timestamp = now.unix_timestamp();
        let signature = sign(&webhook.key, timestamp, delivery.body.as_bytes());
        let request = Request::post(webhook.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("Portcullis-Webhook/", env!("CARGO_PKG_VERSION")),
            )
            .header(DELIVERY_HEADER, delivery.id.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(delivery.body.clone())))
            .map_err(|error| format!("building the request failed: {error}"))?;
        match tokio::time::timeout(self.policy.timeout, self.client.request(request)).await {
            // The body is not read: the status is the whole result, and an
            // unread body only costs the connection its reuse.
            Ok(Ok(response)) => Ok(response.status()),
            Ok(Err(error)) => Err(shorten(&format!("request failed: {}", ErrorChain(&error)))),
            Err(_) => Err(format!(
                "timed out after {} ms",
                self.policy.timeout.as_millis()
            )),
        }
    }
}

impl Webhook {
    fn new(config: &WebhookConfig) -> std::io::Result<Self> {
        let Some(secret) = &config.secret else {
            return Err(std::io::Error::other(format!(
                "alerts.webhooks: the secret of {} was not read",
                config.url.host_str().unwrap_or("a webhook")
            )));
        };
        let url = config.url.as_str().parse::<http::Uri>().map_err(|error| {
            std::io::Error::other(format!("alerts.webhooks: invalid URL: {error}"))
        })?;
        Ok(Self {
            id: config.id.clone(),
            url,
            host: config.url.host_str().unwrap_or_default().to_owned(),
            key: WebhookKey::new(secret.expose()),
        })
    }
}

/// Builds the `Portcullis-Signature` value for `body` sent at `timestamp`.
pub fn sign(key: &WebhookKey, timestamp: i64, body: &[u8]) -> String {
    let mut message = Vec::with_capacity(body.len() + 24);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let tag = key.sign(&message);
    let hex: String = tag.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Returns whether a non-2xx status may succeed when sent again.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Returns the delay before the next attempt after `attempts` attempts:
/// `first_retry` doubled per earlier retry, at most `max_retry`, then drawn
/// uniformly from its upper half.
fn retry_delay(policy: &DeliveryPolicy, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let full = policy
        .first_retry
        .saturating_mul(1 << doublings)
        .min(policy.max_retry);
    let mut random = [0u8; 8];
    // Without randomness the delay keeps its upper bound, which is still a
    // valid, if synchronized, schedule.
    let fraction = match fill_random(&mut random) {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a fraction needs no more than 53 bits"
        )]
        Ok(()) => (u64::from_le_bytes(random) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 1.0,
    };
    full.mul_f64(0.5 + 0.5 * fraction)
}

fn shorten(text: &str) -> String {
    text.chars().take(MAX_ERROR_LEN).collect()
}

/// Sends due deliveries every [`POLL_INTERVAL`], or at once when `wake` is
/// notified, until `shutdown`. Attempts of one round run concurrently.
pub async fn deliver_periodically(
    sender: Arc<Sender>,
    store: Store,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        if sender.webhooks.is_empty() {
            return;
        }
        let claimed = deliver_round(&sender, &store, &shutdown).await;
        if claimed >= usize::try_from(BATCH).unwrap_or(usize::MAX) {
            // A full batch suggests more are due: go on at once.
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// Takes one batch of due deliveries, sends them and stores the outcomes.
/// Returns the number taken.
async fn deliver_round(sender: &Arc<Sender>, store: &Store, shutdown: &CancellationToken) -> usize {
    let now = OffsetDateTime::now_utc();
    let lease_until = now + sender.policy.timeout + LEASE_MARGIN;
    let claimed = match store.claim_deliveries(now, lease_until, BATCH).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(error = %ErrorChain(&error), "reading due alert deliveries failed; will retry");
            return 0;
        }
    };
    let count = claimed.len();
    let mut attempts = tokio::task::JoinSet::new();
    for delivery in claimed {
        let sender = Arc::clone(sender);
        let store = store.clone();
        attempts.spawn(async move {
            let outcome = sender.attempt(&delivery, OffsetDateTime::now_utc()).await;
            if let Err(error) = store.finish_attempt(delivery.id, &outcome).await {
                tracing::warn!(error = %ErrorChain(&error), delivery_id = %delivery.id, "storing an alert delivery outcome failed; the delivery is sent again after its lease");
            }
        });
    }
    tokio::select! {
        // Attempts cut off here stay leased and are sent again after the
        // lease, by this node after a restart or by another node.
        () = shutdown.cancelled() => attempts.abort_all(),
        () = async { while attempts.join_next().await.is_some() {} } => {}
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts: 10,
            first_retry: Duration::from_secs(10),
            max_retry: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn retry_delay_doubles_within_bounds() {
        let policy = policy();
        for (attempts, full) in [(1, 10), (2, 20), (3, 40), (4, 60), (20, 60)] {
            let delay = retry_delay(&policy, attempts);
            let full = Duration::from_secs(full);
            assert!(
                delay <= full,
                "attempt {attempts}: {delay:?} above {full:?}"
            );
            assert!(
                delay >= full / 2,
                "attempt {attempts}: {delay:?} below half"
            );
        }
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 429, 500, 502, 503] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [301, 400, 401, 404, 410, 422] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let key = WebhookKey::new(b"0123456789abcdef0123456789abcdef");
        let header = sign(&key, 1_700_000_000, br#"{"a":1}"#);
        let (timestamp, hex) = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .unwrap();
        assert_eq!(timestamp, "1700000000");
        let tag: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
            .collect();
        assert!(key.verify(br#"1700000000.{"a":1}"#, &tag));
        assert!(!key.verify(br#"1700000001.{"a":1}"#, &tag));
    }
}
