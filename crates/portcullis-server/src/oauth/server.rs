//! The authorization server's shared state: its issuer, settings, signing
//! keys and deny list, as every OAuth endpoint and the gateway see them.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::crypto::SealingKey;
use portcullis_store::Store;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::deny_list::DenyList;
use super::keys::{KeysError, SigningKeys};
use super::rotation::RotationPolicy;
use crate::config::{MAX_ACCESS_TOKEN_TTL, OAuthConfig};
use crate::telemetry::ErrorChain;

/// How often every node re-runs the key rotation rule even without a change
/// notice. It must be shorter than the leeway validators allow, so that a
/// key due to sign is promoted before tokens would outlive their key's
/// publication.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The authorization server's state.
pub struct AuthorizationServer {
    /// The issuer identifier written into tokens and metadata.
    pub issuer: String,
    /// The settings from `[oauth]`.
    pub settings: OAuthConfig,
    /// The signing keys in use.
    pub keys: SigningKeys,
    /// Access tokens revoked before they expire.
    pub deny: DenyList,
    keys_changed: tokio::sync::Notify,
}

impl AuthorizationServer {
    /// Loads the signing keys (generating the first) and the deny list.
    pub async fn start(
        store: &Store,
        sealing: SealingKey,
        settings: OAuthConfig,
        issuer: String,
    ) -> Result<Self, KeysError> {
        let policy = RotationPolicy {
            algorithm: settings.signing_algorithm,
            rotate_every: to_time(settings.key_rotation),
            max_token_lifetime: to_time(MAX_ACCESS_TOKEN_TTL),
            leeway: to_time(settings.leeway),
            ..RotationPolicy::default()
        };
        let keys = SigningKeys::load(store.clone(), sealing, policy).await?;
        let deny = DenyList::load(store, OffsetDateTime::now_utc()).await?;
        Ok(Self {
            issuer,
            settings,
            keys,
            deny,
            keys_changed: tokio::sync::Notify::new(),
        })
    }

    /// Tells the key task that another node changed the stored keys.
    pub fn notify_keys_changed(&self) {
        self.keys_changed.notify_one();
    }

    /// The clock leeway as a `time` duration.
    pub fn leeway(&self) -> time::Duration {
        to_time(self.settings.leeway)
    }
}

/// Re-runs the rotation rule every [`KEY_REFRESH_INTERVAL`] and whenever
/// the change feed reports a key change, and prunes the deny list, until
/// `shutdown`.
pub async fn maintain(server: Arc<AuthorizationServer>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(KEY_REFRESH_INTERVAL) => {}
            () = server.keys_changed.notified() => {}
        }
        let now = OffsetDateTime::now_utc();
        server.deny.prune(now, server.leeway());
        match server.keys.refresh(now).await {
            Ok(()) if failing => {
                tracing::info!("signing key refresh recovered");
                failing = false;
            }
            Ok(()) => {}
            Err(error) => {
                // The keys in use stay in use; only rotation waits.
                if !failing {
                    tracing::warn!(error = %ErrorChain(&error), "signing key refresh failed; keeping the current keys");
                    failing = true;
                }
            }
        }
    }
}

fn to_time(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::MAX)
}
