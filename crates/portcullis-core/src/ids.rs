//! Typed ids of stored objects.
//!
//! Ids are UUIDv7: time-ordered, so they index well, and they carry no secret.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Creates a new time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an id read from storage.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The id as a UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// The id of an API key (tenant or operator key). Safe to log.
    KeyId
);

uuid_id!(
    /// The id of a tenant: one customer of the SaaS company.
    TenantId
);

uuid_id!(
    /// The id of one audit record.
    AuditId
);

uuid_id!(
    /// The id of an OAuth client, sent as its `client_id`. Safe to log.
    ClientId
);

uuid_id!(
    /// The id of an end user who signs in and grants consent.
    UserId
);

uuid_id!(
    /// The id of an invitation of an e-mail address into a tenant. It
    /// names the invite in the dashboard; the link carries a separate
    /// secret token.
    InviteId
);

uuid_id!(
    /// The id of a token family: every refresh and access token that
    /// descends from one authorization grant, so that a replayed code or
    /// refresh token can revoke them together.
    TokenFamilyId
);

uuid_id!(
    /// The id of one raised alert.
    AlertId
);

uuid_id!(
    /// The id of one webhook delivery of an alert. Receivers see it in the
    /// `Portcullis-Delivery` header and use it to drop repeated deliveries.
    DeliveryId
);
