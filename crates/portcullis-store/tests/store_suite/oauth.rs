//! Store cases of the OAuth authorization server: clients, users, codes,
//! refresh and access tokens, consent, assertions, sessions, signing keys.

use portcullis_core::credential::RateLimits;
use portcullis_core::crypto::{MasterKey, SecretHash};
use portcullis_core::ids::{ClientId, TenantId, TokenFamilyId, UserId};
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::{
    AccessTokenRecord, AuthorizationCodeRecord, ClientAuthMethod, ConsentRecord, Email, GrantType,
    RedirectUri, RefreshTokenRecord, Role, TlsClientAuthSubject, TlsSubjectKind,
};
use portcullis_core::scope::ScopeSet;
use portcullis_core::signing::{SigningAlgorithm, SigningKeyRecord, SigningKeyState};
use portcullis_store::{
    AuditAction, AuditFilter, Change, ConsumeCode, FamilyRevocationReason, LoginSession, NewClient,
    NewClientSecret, NewSubmission, NewUser, RotateRefresh, SigningKeyTakeover, Store, StoreError,
    SubmissionClaim, Tenant,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;

use super::{Fixture, audit_of, context, create_tenant, hex, now};

// ---------------------------------------------------------------------
// Helpers

/// Hashes a fresh secret of `kind` under a fresh pepper, because the store
/// only needs distinct 32-byte hashes.
fn secret_hash(kind: SecretKind) -> SecretHash {
    let secret = OpaqueSecret::generate(kind).unwrap();
    let pepper = MasterKey::generate().unwrap().derive_pepper();
    pepper.hash(secret.expose().as_bytes())
}

fn scopes(list: &str) -> ScopeSet {
    ScopeSet::parse_list(list).unwrap()
}

/// A confidential `client_secret_basic` client with every grant, or a
/// public client with the code and refresh grants.
fn new_client(tenant: &Tenant, confidential: bool, created_at: OffsetDateTime) -> NewClient {
    let grant_types = if confidential {
        vec![
            GrantType::AuthorizationCode,
            GrantType::ClientCredentials,
            GrantType::RefreshToken,
        ]
    } else {
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    };
    NewClient {
        id: ClientId::generate(),
        tenant_id: tenant.id,
        name: "Billing app".to_owned(),
        confidential,
        grant_types,
        scopes: scopes("orders:read orders:write"),
        redirect_uris: vec![
            RedirectUri::parse("https://app.example.com/callback").unwrap(),
            RedirectUri::parse("http://127.0.0.1/callback").unwrap(),
        ],
        auth_method: if confidential {
            ClientAuthMethod::ClientSecretBasic
        } else {
            ClientAuthMethod::None
        },
        jwks: None,
        tls_client_auth_subject: None,
        access_token_ttl_seconds: 900,
        created_at,
        limits: RateLimits::default(),
        created_by: Some("cli".to_owned()),
    }
}

fn new_secret(created_at: OffsetDateTime) -> NewClientSecret {
    NewClientSecret {
        id: uuid::Uuid::now_v7(),
        hash: secret_hash(SecretKind::ClientSecret),
        created_at,
        expires_at: None,
    }
}

pub(super) async fn create_client(
    store: &Store,
    tenant: &Tenant,
) -> portcullis_core::oauth::ClientRecord {
    let client = new_client(tenant, true, now());
    store
        .create_client(&client, Some(&new_secret(now())), &context(now()))
        .await
        .unwrap()
}

fn new_user(tenant_id: TenantId, email: &str) -> NewUser {
    NewUser {
        id: UserId::generate(),
        tenant_id,
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned(),
        role: Role::Developer,
        created_at: now(),
    }
}

async fn create_user(store: &Store, tenant: &Tenant, email: &str) -> UserId {
    let user = new_user(tenant.id, email);
    store.create_user(&user, &context(now())).await.unwrap().id
}

pub(super) fn code_record(
    client_id: ClientId,
    user_id: UserId,
    at: OffsetDateTime,
) -> AuthorizationCodeRecord {
    AuthorizationCodeRecord {
        hash: secret_hash(SecretKind::AuthorizationCode),
        client_id,
        user_id,
        redirect_uri: "https://app.example.com/callback".to_owned(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        scopes: scopes("orders:read"),
        resource: Some("https://api.example.com".to_owned()),
        family_id: TokenFamilyId::generate(),
        created_at: at,
        expires_at: at + Duration::seconds(60),
        used_at: None,
    }
}

pub(super) fn refresh_record(
    client_id: ClientId,
    user_id: Option<UserId>,
    family_id: TokenFamilyId,
    at: OffsetDateTime,
) -> RefreshTokenRecord {
    RefreshTokenRecord {
        hash: secret_hash(SecretKind::RefreshToken),
        family_id,
        client_id,
        user_id,
        scopes: scopes("orders:read"),
        resource: None,
        created_at: at,
        expires_at: at + Duration::days(30),
        used_at: None,
        revoked_at: None,
    }
}

pub(super) fn access_record(
    client_id: ClientId,
    family_id: Option<TokenFamilyId>,
    expires_at: OffsetDateTime,
) -> AccessTokenRecord {
    AccessTokenRecord {
        jti: uuid::Uuid::now_v7().to_string(),
        client_id,
        family_id,
        expires_at,
        revoked_at: None,
        certificate_thumbprint: None,
    }
}

/// The change rows after `cursor` that name a revoked access token.
pub(super) async fn jti_changes(store: &Store, cursor: i64) -> Vec<Change> {
    store
        .changes_since(cursor, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .filter(|change| change.id > cursor && change.jti.is_some())
        .collect()
}

fn jtis(changes: &[Change]) -> Vec<String> {
    let mut jtis: Vec<String> = changes.iter().filter_map(|c| c.jti.clone()).collect();
    jtis.sort();
    jtis
}

// ---------------------------------------------------------------------
// Clients

pub(super) async fn clients_created_found_and_listed(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let at = now();
    let cursor = store.latest_change().await.unwrap();

    let confidential = new_client(&acme, true, at);
    let secret = new_secret(at);
    let stored = store
        .create_client(&confidential, Some(&secret), &context(at))
        .await
        .unwrap();
    assert_eq!(stored.id, confidential.id);
    assert_eq!(stored.tenant_id, acme.id);
    assert_eq!(stored.tenant, acme.name);
    assert_eq!(stored.name, "Billing app");
    assert!(stored.confidential);
    assert_eq!(stored.grant_types, confidential.grant_types);
    assert_eq!(stored.scopes, confidential.scopes);
    assert_eq!(stored.redirect_uris, confidential.redirect_uris);
    assert_eq!(stored.auth_method, ClientAuthMethod::ClientSecretBasic);
    assert_eq!(stored.jwks, None);
    assert_eq!(stored.access_token_ttl_seconds, 900);
    assert_eq!(stored.created_at, at);
    assert_eq!(stored.revoked_at, None);
    assert_eq!(stored.created_by.as_deref(), Some("cli"));

    let public = new_client(&acme, false, at + Duration::seconds(1));
    let public = store
        .create_client(&public, None, &context(at))
        .await
        .unwrap();
    assert!(!public.confidential);
    assert_eq!(public.auth_method, ClientAuthMethod::None);
    let other = create_client(&store, &globex).await;

    assert_eq!(
        store.find_client(stored.id).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.find_client(ClientId::generate()).await.unwrap(), None);
    let listed: Vec<ClientId> = store
        .list_clients(acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|client| client.id)
        .collect();
    assert_eq!(listed, vec![public.id, stored.id], "newest first");
    assert_eq!(store.list_clients(globex.id).await.unwrap().len(), 1);
    assert_eq!(other.tenant_id, globex.id);

    let secrets = store.client_secrets(stored.id, at).await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].id, secret.id);
    assert!(secrets[0].hash.ct_eq(&secret.hash));
    assert!(
        store
            .client_secrets(public.id, at)
            .await
            .unwrap()
            .is_empty()
    );

    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    let created = changes
        .iter()
        .find(|change| change.client_id == Some(stored.id))
        .expect("a change row names the new client");
    assert_eq!(created.tenant_id, Some(acme.id));
    assert_eq!(created.jti, None);

    let events = store
        .list_audit(&audit_of(stored.id.to_string()))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::ClientCreated);
    assert_eq!(events[0].tenant_id, Some(acme.id));
    assert_eq!(events[0].details["secret_id"], json!(secret.id.to_string()));
    let details = events[0].details.to_string();
    assert!(!details.contains(&hex(secret.hash.as_bytes())), "{details}");
    assert!(!details.contains("hash"), "{details}");
}

pub(super) async fn invalid_clients_rejected(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();

    let mut public_with_secret_method = new_client(&acme, false, at);
    public_with_secret_method.auth_method = ClientAuthMethod::ClientSecretPost;
    let mut confidential_without_method = new_client(&acme, true, at);
    confidential_without_method.auth_method = ClientAuthMethod::None;
    let mut no_grants = new_client(&acme, true, at);
    no_grants.grant_types.clear();
    let mut code_without_redirect = new_client(&acme, true, at);
    code_without_redirect.redirect_uris.clear();
    let mut jwt_without_jwks = new_client(&acme, true, at);
    jwt_without_jwks.auth_method = ClientAuthMethod::PrivateKeyJwt;
    let mut public_client_credentials = new_client(&acme, false, at);
    public_client_credentials
        .grant_types
        .push(GrantType::ClientCredentials);
    let mut zero_ttl = new_client(&acme, true, at);
    zero_ttl.access_token_ttl_seconds = 0;
    for client in [
        public_with_secret_method,
        confidential_without_method,
        no_grants,
        code_without_redirect,
        jwt_without_jwks,
        public_client_credentials,
        zero_ttl,
    ] {
        let error = store
            .create_client(&client, None, &context(at))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    }

    let public = new_client(&acme, false, at);
    let error = store
        .create_client(&public, Some(&new_secret(at)), &context(at))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");

    let mut unknown_tenant = new_client(&acme, true, at);
    unknown_tenant.tenant_id = TenantId::generate();
    let error = store
        .create_client(&unknown_tenant, None, &context(at))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound("tenant")), "{error:?}");

    let first = new_client(&acme, true, at);
    store
        .create_client(&first, None, &context(at))
        .await
        .unwrap();
    let error = store
        .create_client(&first, None, &context(at))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(store.list_clients(acme.id).await.unwrap().len(), 1);
}

/// A rotation keeps every older secret working until the grace period ends,
/// and never extends an earlier expiry.
pub(super) async fn secret_rotation_keeps_both_until_grace_ends(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();
    let client = new_client(&acme, true, at);
    let first = new_secret(at);
    store
        .create_client(&client, Some(&first), &context(at))
        .await
        .unwrap();

    let second = new_secret(at);
    let grace_ends = at + Duration::hours(1);
    let added = store
        .add_client_secret(client.id, &second, grace_ends, &context(at))
        .await
        .unwrap();
    assert_eq!(added.id, second.id);
    let ids = |secrets: Vec<portcullis_core::oauth::ClientSecretRecord>| {
        secrets
            .into_iter()
            .map(|secret| secret.id)
            .collect::<Vec<_>>()
    };
    let during_grace = store.client_secrets(client.id, at).await.unwrap();
    assert_eq!(ids(during_grace.clone()), vec![second.id, first.id]);
    assert_eq!(during_grace[1].expires_at, Some(grace_ends));
    assert_eq!(during_grace[0].expires_at, None);
    let after_grace = store.client_secrets(client.id, grace_ends).await.unwrap();
    assert_eq!(ids(after_grace), vec![second.id]);

    // A later rotation with a longer grace leaves the first secret's
    // earlier expiry alone.
    let third = new_secret(at);
    let long_grace = at + Duration::days(1);
    store
        .add_client_secret(client.id, &third, long_grace, &context(at))
        .await
        .unwrap();
    let live = store
        .client_secrets(client.id, at + Duration::minutes(90))
        .await
        .unwrap();
    assert_eq!(ids(live), vec![third.id, second.id]);

    let unknown = store
        .add_client_secret(ClientId::generate(), &new_secret(at), at, &context(at))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound("client")),
        "{unknown:?}"
    );
    let public = new_client(&acme, false, at);
    store
        .create_client(&public, None, &context(at))
        .await
        .unwrap();
    let error = store
        .add_client_secret(public.id, &new_secret(at), at, &context(at))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");

    let events = store
        .list_audit(&audit_of(client.id.to_string()))
        .await
        .unwrap();
    let added_events = events
        .iter()
        .filter(|event| event.action == AuditAction::ClientSecretAdded)
        .count();
    assert_eq!(added_events, 2);
}

/// Revoking a client revokes its refresh and access tokens in the same
/// transaction, and each live access token reaches the change feed.
pub(super) async fn client_limits_stored_and_updated(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();
    let limited = NewClient {
        limits: RateLimits {
            rate_limits: vec!["10/s burst 20".to_owned(), "1000/h".to_owned()],
            plan: Some("gold".to_owned()),
        },
        ..new_client(&acme, true, at)
    };
    let stored = store
        .create_client(&limited, None, &context(at))
        .await
        .unwrap();
    assert_eq!(stored.limits, limited.limits);
    assert_eq!(
        create_client(&store, &acme).await.limits,
        RateLimits::default(),
        "a client without limits reads back without"
    );

    let cursor = store.latest_change().await.unwrap();
    let changed = RateLimits {
        rate_limits: vec!["5/s".to_owned()],
        plan: None,
    };
    let updated = store
        .update_client_limits(stored.id, &changed, &context(at))
        .await
        .unwrap();
    assert_eq!(updated.limits, changed);
    assert_eq!(
        store.find_client(stored.id).await.unwrap().unwrap().limits,
        changed
    );
    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    assert!(
        changes
            .iter()
            .any(|change| change.id > cursor && change.client_id == Some(stored.id)),
        "the change reaches the feed, so every node drops its cached limits"
    );
    let records = store
        .list_audit(&audit_of(stored.id.to_string()))
        .await
        .unwrap();
    let record = records
        .iter()
        .find(|record| record.action == AuditAction::ClientLimitsChanged)
        .expect("the change is audited");
    assert_eq!(record.details["rate_limits"], json!(["5/s"]));
    assert_eq!(record.details["previous_plan"], json!("gold"));

    let cleared = store
        .update_client_limits(stored.id, &RateLimits::default(), &context(at))
        .await
        .unwrap();
    assert_eq!(cleared.limits, RateLimits::default());
    let missing = store
        .update_client_limits(ClientId::generate(), &changed, &context(at))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound("client"))));
}

pub(super) async fn client_redirect_uris_replaced(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();
    let client = create_client(&store, &acme).await;
    let cursor = store.latest_change().await.unwrap();
    let replaced = vec![
        RedirectUri::parse("https://app.example.com/new").unwrap(),
        RedirectUri::parse("http://127.0.0.1/native").unwrap(),
    ];
    let updated = store
        .update_client_redirect_uris(client.id, &replaced, &context(at))
        .await
        .unwrap();
    assert_eq!(updated.redirect_uris, replaced);
    assert_eq!(
        store
            .find_client(client.id)
            .await
            .unwrap()
            .unwrap()
            .redirect_uris,
        replaced
    );
    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    assert!(
        changes
            .iter()
            .any(|change| change.id > cursor && change.client_id == Some(client.id)),
        "the change reaches the feed, so every node reloads the client"
    );
    let records = store
        .list_audit(&audit_of(client.id.to_string()))
        .await
        .unwrap();
    let record = records
        .iter()
        .find(|record| record.action == AuditAction::ClientRedirectUrisChanged)
        .expect("the change is audited");
    assert_eq!(
        record.details["redirect_uris"],
        json!(["https://app.example.com/new", "http://127.0.0.1/native"])
    );
    assert_eq!(
        record.details["previous_redirect_uris"],
        json!(
            client
                .redirect_uris
                .iter()
                .map(RedirectUri::as_str)
                .collect::<Vec<_>>()
        )
    );

    store
        .revoke_client(client.id, None, &context(at))
        .await
        .unwrap();
    let revoked = store
        .update_client_redirect_uris(client.id, &[], &context(at))
        .await;
    assert!(matches!(revoked, Err(StoreError::Revoked("client"))));
    let missing = store
        .update_client_redirect_uris(ClientId::generate(), &[], &context(at))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound("client"))));
}

pub(super) async fn client_revocation_revokes_tokens(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let bystander = create_client(&store, &acme).await;
    let user = create_user(&store, &acme, "ops@example.com").await;
    let at = now();
    let family = TokenFamilyId::generate();

    let refresh = refresh_record(client.id, Some(user), family, at);
    store.insert_refresh_token(&refresh).await.unwrap();
    let live = access_record(client.id, Some(family), at + Duration::minutes(15));
    let client_credentials = access_record(client.id, None, at + Duration::minutes(15));
    let expired = access_record(client.id, None, at - Duration::minutes(1));
    let other = access_record(bystander.id, None, at + Duration::minutes(15));
    for token in [&live, &client_credentials, &expired, &other] {
        store.record_access_token(token).await.unwrap();
    }
    let cursor = store.latest_change().await.unwrap();

    let revoked = store
        .revoke_client(client.id, Some("app retired"), &context(at))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at));

    let refresh_after = store
        .find_refresh_token(&refresh.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refresh_after.revoked_at, Some(at));
    for token in [&live, &client_credentials, &expired] {
        let after = store.find_access_token(&token.jti).await.unwrap().unwrap();
        assert_eq!(after.revoked_at, Some(at), "{}", token.jti);
    }
    let untouched = store.find_access_token(&other.jti).await.unwrap().unwrap();
    assert_eq!(untouched.revoked_at, None);

    let changes = jti_changes(&store, cursor).await;
    let mut expected = vec![live.jti.clone(), client_credentials.jti.clone()];
    expected.sort();
    assert_eq!(jtis(&changes), expected, "one row per live token");
    for change in &changes {
        assert_eq!(change.client_id, Some(client.id));
        assert_eq!(change.tenant_id, Some(acme.id));
        assert!(change.jti_expires_at.is_some());
    }
    let all = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    assert!(
        all.iter()
            .any(|change| change.client_id == Some(client.id) && change.jti.is_none()),
        "a change row names the revoked client"
    );

    let deny_list = store.live_revoked_jtis(at).await.unwrap();
    let deny_jtis: Vec<&str> = deny_list.iter().map(|(jti, _)| jti.as_str()).collect();
    assert!(deny_jtis.contains(&live.jti.as_str()));
    assert!(deny_jtis.contains(&client_credentials.jti.as_str()));
    assert!(!deny_jtis.contains(&expired.jti.as_str()));
    assert!(!deny_jtis.contains(&other.jti.as_str()));

    let again = store
        .revoke_client(client.id, None, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Revoked("client")), "{again:?}");
    let secret = store
        .add_client_secret(client.id, &new_secret(at), at, &context(at))
        .await
        .unwrap_err();
    assert!(
        matches!(secret, StoreError::Revoked("client")),
        "{secret:?}"
    );

    let events = store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::ClientRevoked),
            target: Some(client.id.to_string()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details["reason"], json!("app retired"));
    assert_eq!(events[0].details["access_tokens_revoked"], json!(3));
}

// ---------------------------------------------------------------------
// Users

pub(super) async fn users_created_and_found(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;

    let zed = new_user(acme.id, "zed@example.com");
    let stored = store
        .create_user(&zed, &context(zed.created_at))
        .await
        .unwrap();
    assert_eq!(stored.id, zed.id);
    assert_eq!(stored.tenant, acme.name);
    assert_eq!(stored.email.as_str(), "zed@example.com");
    assert_eq!(stored.password_hash, zed.password_hash);
    assert_eq!(stored.role, Role::Developer);
    assert_eq!(stored.created_at, zed.created_at);
    assert_eq!(stored.disabled_at, None);
    create_user(&store, &acme, "Ann@Example.com").await;
    create_user(&store, &globex, "zed@example.com").await;

    let email = Email::parse("ZED@example.com").unwrap();
    let found = store.find_user_by_email(acme.id, &email).await.unwrap();
    assert_eq!(found.as_ref(), Some(&stored));
    assert_eq!(store.find_user(zed.id).await.unwrap(), Some(stored));
    assert_eq!(store.find_user(UserId::generate()).await.unwrap(), None);
    let nobody = Email::parse("nobody@example.com").unwrap();
    assert_eq!(
        store.find_user_by_email(acme.id, &nobody).await.unwrap(),
        None
    );

    let listed: Vec<String> = store
        .list_users(acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|user| user.email.to_string())
        .collect();
    assert_eq!(listed, vec!["ann@example.com", "zed@example.com"]);

    let events = store
        .list_audit(&audit_of(zed.id.to_string()))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::UserCreated);
    assert_eq!(events[0].details["email"], json!("zed@example.com"));
    let details = events[0].details.to_string();
    assert!(!details.contains("argon2"), "{details}");

    let printed = format!("{:?}", store.find_user(zed.id).await.unwrap());
    assert!(!printed.contains("argon2"), "{printed}");
}

/// A second user with the same address, also one that differs only in
/// case, conflicts; the same address in another tenant does not.
pub(super) async fn duplicate_user_email_conflicts(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    create_user(&store, &acme, "ops@example.com").await;

    for email in ["ops@example.com", "Ops@Example.com", "OPS@EXAMPLE.COM"] {
        let error = store
            .create_user(&new_user(acme.id, email), &context(now()))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Conflict(_)),
            "{email}: {error:?}"
        );
        assert!(error.to_string().contains("ops@example.com"), "{error}");
    }
    create_user(&store, &globex, "ops@example.com").await;
    assert_eq!(store.list_users(acme.id).await.unwrap().len(), 1);

    let error = store
        .create_user(
            &new_user(TenantId::generate(), "x@example.com"),
            &context(now()),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound("tenant")), "{error:?}");
}

// ---------------------------------------------------------------------
// Authorization codes

pub(super) async fn code_consumed_twice_already_used(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let other_client = create_client(&store, &acme).await;
    let user = create_user(&store, &acme, "ops@example.com").await;
    let at = now();

    let code = code_record(client.id, user, at);
    store.insert_code(&code).await.unwrap();
    let error = store.insert_code(&code).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");

    // Another client's attempt neither spends the code nor counts as a use.
    let wrong = store
        .consume_code(&code.hash, other_client.id, at)
        .await
        .unwrap();
    assert_eq!(wrong, ConsumeCode::WrongClient);

    let first = store.consume_code(&code.hash, client.id, at).await.unwrap();
    let ConsumeCode::Fresh(fresh) = first else {
        panic!("first use gave {first:?}");
    };
    assert_eq!(fresh.used_at, Some(at));
    assert_eq!(fresh.redirect_uri, code.redirect_uri);
    assert_eq!(fresh.code_challenge, code.code_challenge);
    assert_eq!(fresh.scopes, code.scopes);
    assert_eq!(fresh.resource, code.resource);
    assert_eq!(fresh.family_id, code.family_id);
    assert_eq!(fresh.user_id, user);

    let second = store
        .consume_code(&code.hash, client.id, at + Duration::seconds(1))
        .await
        .unwrap();
    let ConsumeCode::AlreadyUsed(used) = second else {
        panic!("second use gave {second:?}");
    };
    assert_eq!(used.family_id, code.family_id);
    assert_eq!(used.used_at, Some(at));

    let expired = code_record(client.id, user, at - Duration::minutes(5));
    store.insert_code(&expired).await.unwrap();
    let outcome = store
        .consume_code(&expired.hash, client.id, at)
        .await
        .unwrap();
    assert_eq!(outcome, ConsumeCode::Expired);
    let unknown = secret_hash(SecretKind::AuthorizationCode);
    let outcome = store.consume_code(&unknown, client.id, at).await.unwrap();
    assert_eq!(outcome, ConsumeCode::NotFound);

    let mut orphan = code_record(ClientId::generate(), user, at);
    let error = store.insert_code(&orphan).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
    orphan.client_id = client.id;
    orphan.user_id = UserId::generate();
    let error = store.insert_code(&orphan).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
}

/// Redemptions of one code from two stores at once: exactly one is first.
pub(super) async fn concurrent_code_redemptions_one_wins(fixture: Fixture) {
    const ATTEMPTS_PER_STORE: usize = 8;
    let first = fixture.store.clone();
    let second = fixture.open_another().await;
    let acme = create_tenant(&first, "acme").await;
    let client = create_client(&first, &acme).await;
    let user = create_user(&first, &acme, "ops@example.com").await;
    let code = code_record(client.id, user, now());
    first.insert_code(&code).await.unwrap();

    let mut tasks = JoinSet::new();
    for store in [first.clone(), second.clone()] {
        for _ in 0..ATTEMPTS_PER_STORE {
            let store = store.clone();
            let hash = code.hash.clone();
            tasks.spawn(async move { store.consume_code(&hash, client.id, now()).await });
        }
    }
    let mut fresh = 0;
    let mut already_used = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap().unwrap() {
            ConsumeCode::Fresh(_) => fresh += 1,
            ConsumeCode::AlreadyUsed(_) => already_used += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(already_used, 2 * ATTEMPTS_PER_STORE - 1);
    second.close().await;
}

/// A second redemption lets the caller revoke what the first one issued:
/// the family's refresh and access tokens, with a change row per live
/// access token and an audit record naming the client.
pub(super) async fn code_reuse_revokes_family(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let user = create_user(&store, &acme, "ops@example.com").await;
    let at = now();
    let code = code_record(client.id, user, at);
    store.insert_code(&code).await.unwrap();
    assert!(matches!(
        store.consume_code(&code.hash, client.id, at).await.unwrap(),
        ConsumeCode::Fresh(_)
    ));
    let access = access_record(client.id, Some(code.family_id), at + Duration::minutes(15));
    store.record_access_token(&access).await.unwrap();
    let refresh = refresh_record(client.id, Some(user), code.family_id, at);
    store.insert_refresh_token(&refresh).await.unwrap();
    let cursor = store.latest_change().await.unwrap();

    let reuse = store.consume_code(&code.hash, client.id, at).await.unwrap();
    let ConsumeCode::AlreadyUsed(used) = reuse else {
        panic!("reuse gave {reuse:?}");
    };
    let revoked = store
        .revoke_family(
            used.family_id,
            FamilyRevocationReason::CodeReused,
            &context(at),
        )
        .await
        .unwrap();
    assert_eq!(revoked, 1);

    let access_after = store.find_access_token(&access.jti).await.unwrap().unwrap();
    assert_eq!(access_after.revoked_at, Some(at));
    let refresh_after = store
        .find_refresh_token(&refresh.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refresh_after.revoked_at, Some(at));
    let changes = jti_changes(&store, cursor).await;
    assert_eq!(jtis(&changes), vec![access.jti.clone()]);
    assert_eq!(changes[0].jti_expires_at, Some(access.expires_at));
    assert_eq!(changes[0].client_id, Some(client.id));

    let events = store
        .list_audit(&audit_of(code.family_id.to_string()))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::TokenFamilyRevoked);
    assert_eq!(events[0].tenant_id, Some(acme.id));
    assert_eq!(events[0].details["client_id"], json!(client.id.to_string()));
    assert_eq!(
        events[0].details["reason"],
        json!("authorization_code_reused")
    );
    let details = events[0].details.to_string();
    assert!(!details.contains(&hex(code.hash.as_bytes())), "{details}");
}

// ---------------------------------------------------------------------
// Refresh tokens

/// Rotation spends the old token; presenting it again revokes the whole
/// family, its refresh and access tokens, in the same transaction.
pub(super) async fn refresh_reuse_revokes_family(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let user = create_user(&store, &acme, "ops@example.com").await;
    let at = now();
    let family = TokenFamilyId::generate();

    let first = refresh_record(client.id, Some(user), family, at);
    store.insert_refresh_token(&first).await.unwrap();
    let second = refresh_record(client.id, Some(user), family, at);
    let rotated = store
        .rotate_refresh_token(&first.hash, &second, at)
        .await
        .unwrap();
    assert_eq!(rotated, RotateRefresh::Rotated(first.clone()));
    let first_after = store
        .find_refresh_token(&first.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_after.used_at, Some(at));
    let second_stored = store.find_refresh_token(&second.hash).await.unwrap();
    assert_eq!(second_stored.as_ref(), Some(&second));
    assert!(second.is_live(at));

    let access = access_record(client.id, Some(family), at + Duration::minutes(15));
    store.record_access_token(&access).await.unwrap();
    let cursor = store.latest_change().await.unwrap();

    let third = refresh_record(client.id, Some(user), family, at);
    let later = at + Duration::seconds(5);
    let reused = store
        .rotate_refresh_token(&first.hash, &third, later)
        .await
        .unwrap();
    let RotateRefresh::Reused(record) = reused else {
        panic!("reuse gave {reused:?}");
    };
    assert_eq!(record.family_id, family);
    assert_eq!(store.find_refresh_token(&third.hash).await.unwrap(), None);
    let second_after = store
        .find_refresh_token(&second.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second_after.revoked_at, Some(later));
    let access_after = store.find_access_token(&access.jti).await.unwrap().unwrap();
    assert_eq!(access_after.revoked_at, Some(later));
    assert_eq!(
        jtis(&jti_changes(&store, cursor).await),
        vec![access.jti.clone()]
    );

    // The surviving token of the family is dead now.
    let fourth = refresh_record(client.id, Some(user), family, at);
    let dead = store
        .rotate_refresh_token(&second.hash, &fourth, later)
        .await
        .unwrap();
    assert_eq!(dead, RotateRefresh::Dead);

    let events = store
        .list_audit(&audit_of(family.to_string()))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::TokenFamilyRevoked);
    assert_eq!(events[0].actor, format!("client:{}", client.id));
    assert_eq!(events[0].details["reason"], json!("refresh_token_reused"));
}

/// Another client's attempt leaves the token unspent for its owner, and
/// expired, unknown or misfiled tokens change nothing.
pub(super) async fn refresh_bound_to_client(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let owner = create_client(&store, &acme).await;
    let intruder = create_client(&store, &acme).await;
    let at = now();
    let family = TokenFamilyId::generate();
    let token = refresh_record(owner.id, None, family, at);
    store.insert_refresh_token(&token).await.unwrap();

    let stolen = refresh_record(intruder.id, None, family, at);
    let outcome = store
        .rotate_refresh_token(&token.hash, &stolen, at)
        .await
        .unwrap();
    assert_eq!(outcome, RotateRefresh::WrongClient);
    assert_eq!(store.find_refresh_token(&stolen.hash).await.unwrap(), None);

    let mut other_family = refresh_record(owner.id, None, TokenFamilyId::generate(), at);
    let error = store
        .rotate_refresh_token(&token.hash, &other_family, at)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");

    other_family.family_id = family;
    let outcome = store
        .rotate_refresh_token(&token.hash, &other_family, at)
        .await
        .unwrap();
    assert!(matches!(outcome, RotateRefresh::Rotated(_)), "{outcome:?}");

    let mut expired = refresh_record(owner.id, None, TokenFamilyId::generate(), at);
    expired.expires_at = at - Duration::seconds(1);
    store.insert_refresh_token(&expired).await.unwrap();
    let next = refresh_record(owner.id, None, expired.family_id, at);
    let outcome = store
        .rotate_refresh_token(&expired.hash, &next, at)
        .await
        .unwrap();
    assert_eq!(outcome, RotateRefresh::Dead);

    let unknown = secret_hash(SecretKind::RefreshToken);
    let outcome = store
        .rotate_refresh_token(&unknown, &next, at)
        .await
        .unwrap();
    assert_eq!(outcome, RotateRefresh::NotFound);
}

/// Two stores rotate one token at once: one rotation succeeds and every
/// other attempt is a reuse that revokes the family.
pub(super) async fn concurrent_refresh_one_rotates(fixture: Fixture) {
    const ATTEMPTS_PER_STORE: usize = 4;
    let first = fixture.store.clone();
    let second = fixture.open_another().await;
    let acme = create_tenant(&first, "acme").await;
    let client = create_client(&first, &acme).await;
    let family = TokenFamilyId::generate();
    let token = refresh_record(client.id, None, family, now());
    first.insert_refresh_token(&token).await.unwrap();

    let mut tasks = JoinSet::new();
    for store in [first.clone(), second.clone()] {
        for _ in 0..ATTEMPTS_PER_STORE {
            let store = store.clone();
            let hash = token.hash.clone();
            let next = refresh_record(client.id, None, family, now());
            tasks.spawn(async move { store.rotate_refresh_token(&hash, &next, now()).await });
        }
    }
    let mut rotated = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap().unwrap() {
            RotateRefresh::Rotated(_) => rotated += 1,
            RotateRefresh::Reused(_) | RotateRefresh::Dead => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1);
    let after = first
        .find_refresh_token(&token.hash)
        .await
        .unwrap()
        .unwrap();
    assert!(after.revoked_at.is_some(), "the reuse revoked the family");
    second.close().await;
}

// ---------------------------------------------------------------------
// Access tokens

pub(super) async fn access_token_revocation_reaches_feed(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let at = now();
    let token = access_record(client.id, None, at + Duration::minutes(15));
    store.record_access_token(&token).await.unwrap();
    let error = store.record_access_token(&token).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(
        store.find_access_token(&token.jti).await.unwrap(),
        Some(token.clone())
    );
    assert!(store.live_revoked_jtis(at).await.unwrap().is_empty());
    let cursor = store.latest_change().await.unwrap();

    let revoked = store
        .revoke_access_token(&token.jti, &context(at))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    let changes = jti_changes(&store, cursor).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].jti.as_deref(), Some(token.jti.as_str()));
    assert_eq!(changes[0].jti_expires_at, Some(token.expires_at));
    assert_eq!(changes[0].client_id, Some(client.id));
    assert_eq!(changes[0].tenant_id, Some(acme.id));
    assert_eq!(changes[0].key_id, None);

    assert_eq!(
        store.live_revoked_jtis(at).await.unwrap(),
        vec![(token.jti.clone(), token.expires_at)]
    );
    assert!(
        store
            .live_revoked_jtis(token.expires_at)
            .await
            .unwrap()
            .is_empty(),
        "an expired token needs no deny-list entry"
    );

    let again = store
        .revoke_access_token(&token.jti, &context(at))
        .await
        .unwrap_err();
    assert!(
        matches!(again, StoreError::Revoked("access token")),
        "{again:?}"
    );
    let unknown = store
        .revoke_access_token("no-such-jti", &context(at))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound("access token")),
        "{unknown:?}"
    );
    let orphan = access_record(ClientId::generate(), None, at);
    let error = store.record_access_token(&orphan).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound("client")), "{error:?}");

    let events = store
        .list_audit(&audit_of(token.jti.clone()))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::AccessTokenRevoked);
    assert_eq!(events[0].tenant_id, Some(acme.id));
}

// ---------------------------------------------------------------------
// Consent, assertions and sessions

pub(super) async fn consent_upserted(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let user = create_user(&store, &acme, "ops@example.com").await;
    let at = now();
    assert_eq!(store.find_consent(user, client.id).await.unwrap(), None);

    let first = ConsentRecord {
        user_id: user,
        client_id: client.id,
        scopes: scopes("orders:read"),
        granted_at: at,
    };
    store.grant_consent(&first).await.unwrap();
    assert_eq!(
        store.find_consent(user, client.id).await.unwrap(),
        Some(first.clone())
    );

    let wider = ConsentRecord {
        scopes: scopes("orders:read orders:write"),
        granted_at: at + Duration::minutes(1),
        ..first
    };
    store.grant_consent(&wider).await.unwrap();
    let found = store.find_consent(user, client.id).await.unwrap().unwrap();
    assert_eq!(found, wider);
    assert!(found.covers(&scopes("orders:write")));

    let orphan = ConsentRecord {
        user_id: UserId::generate(),
        ..wider
    };
    let error = store.grant_consent(&orphan).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
}

pub(super) async fn assertion_jti_replay_rejected(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let other = create_client(&store, &acme).await;
    let expires_at = now() + Duration::minutes(1);

    assert!(
        store
            .use_assertion_jti(client.id, "jti-1", expires_at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_assertion_jti(client.id, "jti-1", expires_at)
            .await
            .unwrap()
    );
    assert!(
        store
            .use_assertion_jti(other.id, "jti-1", expires_at)
            .await
            .unwrap(),
        "jtis are per client"
    );
    assert!(
        store
            .use_assertion_jti(client.id, "jti-2", expires_at)
            .await
            .unwrap()
    );

    // A record of an expired assertion is pruned, so it no longer blocks;
    // the assertion itself fails its own `exp` check.
    let past = now() - Duration::minutes(1);
    assert!(
        store
            .use_assertion_jti(client.id, "old", past)
            .await
            .unwrap()
    );
    assert!(
        store
            .use_assertion_jti(client.id, "old", past)
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_assertion_jti(client.id, "jti-1", expires_at)
            .await
            .unwrap()
    );
}

/// A session of `user` that starts now, idles out after 30 minutes and
/// ends after 8 hours.
fn new_session(user: UserId) -> LoginSession {
    let at = now();
    LoginSession {
        hash: secret_hash(SecretKind::RefreshToken),
        user_id: user,
        created_at: at,
        idle_expires_at: at + Duration::minutes(30),
        absolute_expires_at: at + Duration::hours(8),
    }
}

pub(super) async fn sessions_created_touched_and_deleted(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let user = create_user(&store, &acme, "ops@example.com").await;
    let session = new_session(user);
    let at = session.created_at;
    store.create_session(&session).await.unwrap();
    let error = store.create_session(&session).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(
        store.find_session(&session.hash).await.unwrap(),
        Some(session.clone())
    );
    assert!(session.is_live(at));
    assert!(!session.is_live(at + Duration::minutes(30)));

    let moved = at + Duration::hours(1);
    assert!(store.touch_session(&session.hash, moved).await.unwrap());
    let found = store.find_session(&session.hash).await.unwrap().unwrap();
    assert_eq!(found.idle_expires_at, moved);
    // The idle expiry never passes the absolute one.
    assert!(
        store
            .touch_session(&session.hash, at + Duration::days(2))
            .await
            .unwrap()
    );
    let found = store.find_session(&session.hash).await.unwrap().unwrap();
    assert_eq!(found.idle_expires_at, session.absolute_expires_at);

    let second = LoginSession {
        hash: secret_hash(SecretKind::RefreshToken),
        ..session.clone()
    };
    store.create_session(&second).await.unwrap();
    assert!(store.delete_session(&session.hash).await.unwrap());
    assert!(!store.delete_session(&session.hash).await.unwrap());
    assert_eq!(store.find_session(&session.hash).await.unwrap(), None);
    assert!(!store.touch_session(&session.hash, moved).await.unwrap());
    assert_eq!(store.delete_user_sessions(user).await.unwrap(), 1);
    assert_eq!(store.find_session(&second.hash).await.unwrap(), None);

    let orphan = LoginSession {
        hash: secret_hash(SecretKind::RefreshToken),
        user_id: UserId::generate(),
        ..session
    };
    let error = store.create_session(&orphan).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound("user")), "{error:?}");
}

/// Starts a session of a new user of `acme` and returns it.
async fn live_session(store: &Store, email: &str) -> LoginSession {
    let acme = match store.find_tenant(&"acme".parse().unwrap()).await.unwrap() {
        Some(tenant) => tenant,
        None => create_tenant(store, "acme").await,
    };
    let user = create_user(store, &acme, email).await;
    let session = new_session(user);
    store.create_session(&session).await.unwrap();
    session
}

fn submission<'a>(session: &'a SecretHash, nonce: &'a str) -> NewSubmission<'a> {
    let at = now();
    NewSubmission {
        session_hash: session,
        nonce,
        kind: "key_create",
        created_at: at,
        expires_at: at + Duration::hours(12),
    }
}

pub(super) async fn submission_claimed_once_per_session(fixture: Fixture) {
    let store = fixture.store;
    let session = live_session(&store, "ops@example.com").await.hash;
    let other = live_session(&store, "dev@example.com").await.hash;

    let first = submission(&session, "nonce-a");
    assert_eq!(
        store.claim_submission(&first, 10).await.unwrap(),
        SubmissionClaim::Claimed
    );
    // Sent again before the action finished: used, with no target yet.
    assert_eq!(
        store.claim_submission(&first, 10).await.unwrap(),
        SubmissionClaim::Used {
            kind: "key_create".to_owned(),
            target: None
        }
    );
    store
        .finish_submission(&session, "nonce-a", "key-1")
        .await
        .unwrap();
    assert_eq!(
        store.claim_submission(&first, 10).await.unwrap(),
        SubmissionClaim::Used {
            kind: "key_create".to_owned(),
            target: Some("key-1".to_owned())
        }
    );
    // The same nonce is another claim in another session.
    assert_eq!(
        store
            .claim_submission(&submission(&other, "nonce-a"), 10)
            .await
            .unwrap(),
        SubmissionClaim::Claimed
    );

    // A released claim can be made again.
    let second = submission(&session, "nonce-b");
    assert_eq!(
        store.claim_submission(&second, 10).await.unwrap(),
        SubmissionClaim::Claimed
    );
    store.release_submission(&session, "nonce-b").await.unwrap();
    assert_eq!(
        store.claim_submission(&second, 10).await.unwrap(),
        SubmissionClaim::Claimed
    );

    // An unknown session claims nothing.
    let unknown = secret_hash(SecretKind::RefreshToken);
    let error = store
        .claim_submission(&submission(&unknown, "nonce-c"), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NotFound("session")),
        "{error:?}"
    );
}

pub(super) async fn submissions_bounded_and_deleted_with_session(fixture: Fixture) {
    let store = fixture.store;
    let login = live_session(&store, "ops@example.com").await;
    let session = login.hash.clone();
    for nonce in ["n1", "n2", "n3"] {
        let claim = store
            .claim_submission(&submission(&session, nonce), 3)
            .await
            .unwrap();
        assert_eq!(claim, SubmissionClaim::Claimed, "{nonce}");
    }
    let full = store
        .claim_submission(&submission(&session, "n4"), 3)
        .await
        .unwrap();
    assert_eq!(full, SubmissionClaim::SessionFull);
    // A token already claimed is still reported as used when full.
    let used = store
        .claim_submission(&submission(&session, "n1"), 3)
        .await
        .unwrap();
    assert!(matches!(used, SubmissionClaim::Used { .. }), "{used:?}");

    // An expired claim makes room, and only for its own session.
    let at = now();
    let expired = NewSubmission {
        expires_at: at - Duration::seconds(1),
        created_at: at - Duration::hours(13),
        ..submission(&session, "old")
    };
    store.release_submission(&session, "n3").await.unwrap();
    assert_eq!(
        store.claim_submission(&expired, 3).await.unwrap(),
        SubmissionClaim::Claimed
    );
    assert_eq!(
        store
            .claim_submission(&submission(&session, "n5"), 3)
            .await
            .unwrap(),
        SubmissionClaim::Claimed,
        "the expired claim was deleted to make room"
    );

    // Ending the session deletes its claims: without the session nothing
    // is claimed, and a session stored again under the same hash finds
    // none of the old claims.
    assert!(store.delete_session(&session).await.unwrap());
    let error = store
        .claim_submission(&submission(&session, "n1"), 3)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NotFound("session")),
        "{error:?}"
    );
    store.create_session(&login).await.unwrap();
    assert_eq!(
        store
            .claim_submission(&submission(&session, "n1"), 3)
            .await
            .unwrap(),
        SubmissionClaim::Claimed
    );
}

// ---------------------------------------------------------------------
// Signing keys

fn signing_key(kid: &str, state: SigningKeyState, at: OffsetDateTime) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        algorithm: SigningAlgorithm::Es256,
        state,
        public_jwk: format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}"}}"#),
        sealed_private_key: vec![1, 2, 3, 4],
        created_at: at,
        activates_at: at,
        retired_at: None,
        publish_until: None,
        revoked_at: None,
        revoked_reason: None,
    }
}

pub(super) async fn signing_key_revoked_pending_takes_over(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let active = signing_key("k1", SigningKeyState::Active, at);
    let older = signing_key("k2", SigningKeyState::Pending, at + Duration::seconds(1));
    let mut newer = signing_key("k3", SigningKeyState::Pending, at + Duration::seconds(2));
    newer.activates_at = at + Duration::hours(2);
    for key in [&active, &older, &newer] {
        store.insert_signing_key(key, &context(at)).await.unwrap();
    }
    let cursor = store.latest_change().await.unwrap();

    let revoked_at = at + Duration::minutes(5);
    let replacement = signing_key("unused", SigningKeyState::Pending, revoked_at);
    let takeover = SigningKeyTakeover {
        preferred: Some("k3"),
        replacement: Some(&replacement),
    };
    let outcome = store
        .revoke_signing_key("k1", "leaked", takeover, &context(revoked_at))
        .await
        .unwrap();

    assert_eq!(outcome.revoked.kid, "k1");
    assert_eq!(outcome.revoked.state, SigningKeyState::Revoked);
    assert_eq!(outcome.revoked.revoked_at, Some(revoked_at));
    assert_eq!(outcome.revoked.revoked_reason.as_deref(), Some("leaked"));
    assert!(outcome.revoked.sealed_private_key.is_empty());
    // The preferred pending key takes over, and signs from now on.
    let successor = outcome.successor.unwrap();
    assert_eq!(successor.kid, "k3");
    assert_eq!(successor.state, SigningKeyState::Active);
    assert_eq!(successor.activates_at, revoked_at);

    let keys = store.list_signing_keys().await.unwrap();
    let states: Vec<(&str, SigningKeyState)> = keys
        .iter()
        .map(|key| (key.kid.as_str(), key.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("k1", SigningKeyState::Revoked),
            ("k2", SigningKeyState::Pending),
            ("k3", SigningKeyState::Active),
        ],
        "the replacement is stored only when no key is pending"
    );
    assert_eq!(keys[0], outcome.revoked);

    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    let kids: Vec<&str> = changes.iter().filter_map(|c| c.kid.as_deref()).collect();
    assert_eq!(kids, vec!["k1", "k3"]);
    let audit = store.list_audit(&audit_of("k1".to_owned())).await.unwrap();
    let revoked: Vec<_> = audit
        .iter()
        .filter(|event| event.action == AuditAction::SigningKeyRevoked)
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].details["reason"], "leaked");
    assert_eq!(revoked[0].details["previous_state"], "active");
    assert_eq!(revoked[0].at, revoked_at);
    let activated = store.list_audit(&audit_of("k3".to_owned())).await.unwrap();
    assert!(
        activated
            .iter()
            .any(|event| event.action == AuditAction::SigningKeyActivated)
    );

    // A preferred key that is no longer pending gives way to the pending
    // key created first.
    let takeover = SigningKeyTakeover {
        preferred: Some("k1"),
        replacement: None,
    };
    let outcome = store
        .revoke_signing_key("k3", "leaked too", takeover, &context(revoked_at))
        .await
        .unwrap();
    assert_eq!(outcome.successor.map(|key| key.kid).as_deref(), Some("k2"));
}

pub(super) async fn signing_key_revoked_replacement_takes_over(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let active = signing_key("k1", SigningKeyState::Active, at);
    store
        .insert_signing_key(&active, &context(at))
        .await
        .unwrap();

    let revoked_at = at + Duration::minutes(5);
    let replacement = signing_key("k2", SigningKeyState::Pending, revoked_at);
    let outcome = store
        .revoke_signing_key(
            "k1",
            "leaked",
            SigningKeyTakeover {
                preferred: None,
                replacement: Some(&replacement),
            },
            &context(revoked_at),
        )
        .await
        .unwrap();
    let successor = outcome.successor.unwrap();
    assert_eq!(successor.kid, "k2");
    assert_eq!(successor.state, SigningKeyState::Active);
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1], successor);
    let created = store.list_audit(&audit_of("k2".to_owned())).await.unwrap();
    let actions: Vec<AuditAction> = created.iter().map(|event| event.action).collect();
    assert!(
        actions.contains(&AuditAction::SigningKeyCreated),
        "{actions:?}"
    );
    assert!(
        actions.contains(&AuditAction::SigningKeyActivated),
        "{actions:?}"
    );

    // A key that was not signing is revoked without a successor, and
    // the replacement offered is not stored.
    let pending = signing_key("k3", SigningKeyState::Pending, revoked_at);
    store
        .insert_signing_key(&pending, &context(revoked_at))
        .await
        .unwrap();
    let unused = signing_key("k4", SigningKeyState::Pending, revoked_at);
    let outcome = store
        .revoke_signing_key(
            "k3",
            "not needed",
            SigningKeyTakeover {
                preferred: Some("k3"),
                replacement: Some(&unused),
            },
            &context(revoked_at),
        )
        .await
        .unwrap();
    assert_eq!(outcome.successor, None);
    assert_eq!(outcome.revoked.state, SigningKeyState::Revoked);
    let kids: Vec<String> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|key| key.kid)
        .collect();
    assert_eq!(kids, ["k1", "k2", "k3"]);

    // Without a pending key or a replacement, no key is active afterwards.
    let outcome = store
        .revoke_signing_key(
            "k2",
            "leaked too",
            SigningKeyTakeover::default(),
            &context(revoked_at),
        )
        .await
        .unwrap();
    assert_eq!(outcome.successor, None);
    let active = store.list_signing_keys().await.unwrap();
    assert!(
        active
            .iter()
            .all(|key| key.state == SigningKeyState::Revoked),
        "{active:?}"
    );
}

pub(super) async fn signing_key_revoke_errors(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let mut retired = signing_key("k1", SigningKeyState::Retired, at);
    retired.retired_at = Some(at);
    retired.publish_until = Some(at + Duration::minutes(16));
    store
        .insert_signing_key(&retired, &context(at))
        .await
        .unwrap();

    let error = store
        .revoke_signing_key(
            "nope",
            "leaked",
            SigningKeyTakeover::default(),
            &context(at),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NotFound("signing key")),
        "{error:?}"
    );

    store
        .revoke_signing_key("k1", "leaked", SigningKeyTakeover::default(), &context(at))
        .await
        .unwrap();
    let cursor = store.latest_change().await.unwrap();
    let error = store
        .revoke_signing_key("k1", "again", SigningKeyTakeover::default(), &context(at))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Revoked("signing key")),
        "{error:?}"
    );
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(keys[0].revoked_reason.as_deref(), Some("leaked"));
    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    assert!(changes.is_empty(), "a failed revocation wrote {changes:?}");

    // A revoked key is never deleted with the retired keys whose
    // publication ended, so the record of the revocation stays.
    let deleted = store
        .delete_unpublished_signing_keys(&context(at + Duration::days(365)))
        .await
        .unwrap();
    assert!(deleted.is_empty(), "{deleted:?}");
}

pub(super) async fn signing_keys_activated_and_deleted(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let cursor = store.latest_change().await.unwrap();
    let first = signing_key("k1", SigningKeyState::Active, at);
    store
        .insert_signing_key(&first, &context(at))
        .await
        .unwrap();
    let second = signing_key("k2", SigningKeyState::Pending, at + Duration::seconds(1));
    store
        .insert_signing_key(&second, &context(at))
        .await
        .unwrap();

    let duplicate = store
        .insert_signing_key(&first, &context(at))
        .await
        .unwrap_err();
    assert!(
        matches!(duplicate, StoreError::Conflict(_)),
        "{duplicate:?}"
    );
    let another_active = signing_key("k3", SigningKeyState::Active, at);
    let error = store
        .insert_signing_key(&another_active, &context(at))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![first.clone(), second.clone()]
    );

    let switch = at + Duration::hours(1);
    let publish_until = switch + Duration::minutes(15);
    let active = store
        .activate_signing_key("k2", publish_until, &context(switch))
        .await
        .unwrap();
    assert_eq!(active.state, SigningKeyState::Active);
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(keys[0].state, SigningKeyState::Retired);
    assert_eq!(keys[0].retired_at, Some(switch));
    assert_eq!(keys[0].publish_until, Some(publish_until));
    assert_eq!(keys[1], active);

    let error = store
        .activate_signing_key("k2", publish_until, &context(switch))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    let error = store
        .activate_signing_key("nope", publish_until, &context(switch))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NotFound("signing key")),
        "{error:?}"
    );

    let early = store
        .delete_unpublished_signing_keys(&context(switch))
        .await
        .unwrap();
    assert!(early.is_empty(), "k1 is still published");
    let deleted = store
        .delete_unpublished_signing_keys(&context(publish_until))
        .await
        .unwrap();
    assert_eq!(deleted, vec!["k1".to_owned()]);
    assert_eq!(store.list_signing_keys().await.unwrap(), vec![active]);

    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    let kids: Vec<&str> = changes.iter().filter_map(|c| c.kid.as_deref()).collect();
    assert_eq!(kids, vec!["k1", "k2", "k2", "k1", "k1"]);
    let created = store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::SigningKeyCreated),
            target: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(created.len(), 2);
    for event in created {
        assert!(
            !event.details.to_string().contains("sealed"),
            "{:?}",
            event.details
        );
    }
}

// ---------------------------------------------------------------------
// Pruning

/// Pruning deletes only rows that no check needs: expired tokens,
/// assertions and sessions, and codes a day past their expiry.
pub(super) async fn expired_oauth_rows_pruned(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let user = create_user(&store, &acme, "ops@example.com").await;
    let at = now();
    let past = at - Duration::minutes(1);

    let expired_access = access_record(client.id, None, past);
    let live_access = access_record(client.id, None, at + Duration::minutes(15));
    let mut expired_refresh = refresh_record(client.id, None, TokenFamilyId::generate(), at);
    expired_refresh.expires_at = past;
    let live_refresh = refresh_record(client.id, None, TokenFamilyId::generate(), at);
    let old_code = code_record(client.id, user, at - Duration::days(2));
    let recent_code = code_record(client.id, user, at - Duration::minutes(5));
    let expired_session = LoginSession {
        hash: secret_hash(SecretKind::RefreshToken),
        user_id: user,
        created_at: past,
        idle_expires_at: past,
        absolute_expires_at: at + Duration::hours(1),
    };
    store.record_access_token(&expired_access).await.unwrap();
    store.record_access_token(&live_access).await.unwrap();
    store.insert_refresh_token(&expired_refresh).await.unwrap();
    store.insert_refresh_token(&live_refresh).await.unwrap();
    store.insert_code(&old_code).await.unwrap();
    store.insert_code(&recent_code).await.unwrap();
    store.create_session(&expired_session).await.unwrap();
    assert!(
        store
            .use_assertion_jti(client.id, "old", past)
            .await
            .unwrap()
    );

    assert_eq!(store.prune_oauth(at).await.unwrap(), 5);
    assert_eq!(
        store.find_access_token(&expired_access.jti).await.unwrap(),
        None
    );
    assert!(
        store
            .find_access_token(&live_access.jti)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .find_refresh_token(&expired_refresh.hash)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .find_refresh_token(&live_refresh.hash)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.find_session(&expired_session.hash).await.unwrap(),
        None
    );
    let old = store
        .consume_code(&old_code.hash, client.id, at)
        .await
        .unwrap();
    assert_eq!(old, ConsumeCode::NotFound);
    let recent = store
        .consume_code(&recent_code.hash, client.id, at)
        .await
        .unwrap();
    assert_eq!(
        recent,
        ConsumeCode::Expired,
        "a recently expired code is kept"
    );
    assert_eq!(store.prune_oauth(at).await.unwrap(), 0);
}

// ---------------------------------------------------------------------
// Clients that authenticate with a TLS client certificate (RFC 8705)

pub(super) async fn certificate_clients_stored(fixture: Fixture) {
    let store = &fixture.store;
    let acme = create_tenant(store, "acme").await;
    let subjects = [
        (TlsSubjectKind::SubjectDn, "CN=Payments,O=Acme\\, Inc.,C=DE"),
        (TlsSubjectKind::SanDns, "partner-svc.example.com"),
        (TlsSubjectKind::SanUri, "urn:portcullis:client:x"),
        (TlsSubjectKind::SanIp, "2001:db8::7"),
        (TlsSubjectKind::SanEmail, "ops@example.com"),
    ];
    for (kind, value) in subjects {
        let subject = TlsClientAuthSubject::parse(kind, value).unwrap();
        let client = NewClient {
            auth_method: ClientAuthMethod::TlsClientAuth,
            tls_client_auth_subject: Some(subject.clone()),
            ..new_client(&acme, true, now())
        };
        let created = store
            .create_client(&client, None, &context(now()))
            .await
            .unwrap();
        assert_eq!(created.auth_method, ClientAuthMethod::TlsClientAuth);
        let found = store.find_client(client.id).await.unwrap().unwrap();
        assert_eq!(found.tls_client_auth_subject, Some(subject), "{kind}");
    }

    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})
    .to_string();
    let self_signed = NewClient {
        auth_method: ClientAuthMethod::SelfSignedTlsClientAuth,
        jwks: Some(jwks.clone()),
        ..new_client(&acme, true, now())
    };
    store
        .create_client(&self_signed, None, &context(now()))
        .await
        .unwrap();
    let found = store.find_client(self_signed.id).await.unwrap().unwrap();
    assert_eq!(found.auth_method, ClientAuthMethod::SelfSignedTlsClientAuth);
    assert_eq!(found.jwks, Some(jwks));
    assert_eq!(found.tls_client_auth_subject, None);
}

pub(super) async fn invalid_certificate_clients_rejected(fixture: Fixture) {
    let store = &fixture.store;
    let acme = create_tenant(store, "acme").await;
    let subject = TlsClientAuthSubject::parse(TlsSubjectKind::SanDns, "svc.example.com").unwrap();
    let cases = [
        NewClient {
            auth_method: ClientAuthMethod::TlsClientAuth,
            ..new_client(&acme, true, now())
        },
        NewClient {
            tls_client_auth_subject: Some(subject.clone()),
            ..new_client(&acme, true, now())
        },
        NewClient {
            auth_method: ClientAuthMethod::SelfSignedTlsClientAuth,
            ..new_client(&acme, true, now())
        },
    ];
    for client in cases {
        let error = store
            .create_client(&client, None, &context(now()))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
        assert!(store.find_client(client.id).await.unwrap().is_none());
    }

    let with_secret = NewClient {
        auth_method: ClientAuthMethod::TlsClientAuth,
        tls_client_auth_subject: Some(subject),
        ..new_client(&acme, true, now())
    };
    let error = store
        .create_client(&with_secret, Some(&new_secret(now())), &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
}

pub(super) async fn access_token_thumbprint_stored(fixture: Fixture) {
    let store = &fixture.store;
    let acme = create_tenant(store, "acme").await;
    let client = create_client(store, &acme).await;
    let bound = AccessTokenRecord {
        certificate_thumbprint: Some("2r2Nn1fY1mJ4xV9Yz8t0m1sN4b3kq3l2W1q0Z9y8X7w".to_owned()),
        ..access_record(client.id, None, now() + Duration::minutes(5))
    };
    let unbound = access_record(client.id, None, now() + Duration::minutes(5));
    store.record_access_token(&bound).await.unwrap();
    store.record_access_token(&unbound).await.unwrap();
    let found = store.find_access_token(&bound.jti).await.unwrap().unwrap();
    assert_eq!(found, bound);
    let found = store
        .find_access_token(&unbound.jti)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.certificate_thumbprint, None);
}
