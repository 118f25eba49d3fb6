//! The tenants of OAuth clients, looked up for records written after the
//! request: audit records of failed client authentications, usage counts
//! and alerts.
//!
//! A client id in a failed request is whatever the caller sent, so the
//! request path never looks it up. The background tasks that write the
//! records do, through this cache. A client never changes tenant, so an
//! entry stays valid, and only clients that exist are cached.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use portcullis_core::ids::{ClientId, TenantId};
use portcullis_store::Store;

use crate::usage::lock;

/// The cached tenants of the OAuth clients looked up so far.
#[derive(Debug, Default)]
pub struct ClientTenants {
    known: Mutex<HashMap<ClientId, TenantId>>,
}

impl ClientTenants {
    /// Returns the tenants of those of `client_ids` that name a client,
    /// from the cache or the store. Each id is looked up once per call. A
    /// failed lookup is logged and leaves that client without a tenant
    /// until a later call.
    pub async fn resolve(
        &self,
        store: &Store,
        client_ids: impl IntoIterator<Item = ClientId>,
    ) -> HashMap<ClientId, TenantId> {
        let requested: BTreeSet<ClientId> = client_ids.into_iter().collect();
        let mut found = HashMap::with_capacity(requested.len());
        let mut missing = Vec::new();
        {
            let known = lock(&self.known);
            for client_id in requested {
                match known.get(&client_id) {
                    Some(tenant_id) => {
                        found.insert(client_id, *tenant_id);
                    }
                    None => missing.push(client_id),
                }
            }
        }
        for client_id in missing {
            match store.find_client(client_id).await {
                Ok(Some(client)) => {
                    lock(&self.known).insert(client_id, client.tenant_id);
                    found.insert(client_id, client.tenant_id);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::ErrorChain(&error), %client_id, "looking up an OAuth client's tenant failed; its records of this batch have no tenant");
                }
            }
        }
        found
    }
}
