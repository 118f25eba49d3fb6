//! Store cases of a tenant's members: role changes, disabling with the
//! last-admin rule and the revocation of the member's OAuth grants,
//! enabling again, sign-in times, and invites.

use portcullis_core::crypto::{MasterKey, SecretHash};
use portcullis_core::ids::{InviteId, UserId};
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::{Email, Role};
use portcullis_store::{
    AcceptInvite, AuditAction, AuditFilter, ConsumeCode, InviteState, LoginSession, NewInvite,
    NewUser, Store, StoreError, Tenant,
};
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;

use super::oauth::{access_record, code_record, create_client, jti_changes, refresh_record};
use super::{Fixture, audit_of, context, create_tenant, now};

fn token_hash() -> SecretHash {
    let secret = OpaqueSecret::generate(SecretKind::RefreshToken).unwrap();
    let pepper = MasterKey::generate().unwrap().derive_pepper();
    pepper.hash(secret.expose().as_bytes())
}

fn member(tenant: &Tenant, email: &str, role: Role) -> NewUser {
    NewUser {
        id: UserId::generate(),
        tenant_id: tenant.id,
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned(),
        role,
        created_at: now(),
    }
}

async fn add_member(store: &Store, tenant: &Tenant, email: &str, role: Role) -> UserId {
    let user = member(tenant, email, role);
    store.create_user(&user, &context(now())).await.unwrap().id
}

fn invite(tenant: &Tenant, email: &str, role: Role, at: OffsetDateTime) -> NewInvite {
    NewInvite {
        id: InviteId::generate(),
        tenant_id: tenant.id,
        email: Email::parse(email).unwrap(),
        role,
        token_hash: token_hash(),
        created_by: "user:admin".to_owned(),
        created_at: at,
        expires_at: at + Duration::hours(72),
    }
}

async fn session_of(store: &Store, user_id: UserId, at: OffsetDateTime) -> LoginSession {
    let session = LoginSession {
        hash: token_hash(),
        user_id,
        created_at: at,
        idle_expires_at: at + Duration::minutes(30),
        absolute_expires_at: at + Duration::hours(8),
    };
    store.create_session(&session).await.unwrap();
    session
}

/// Returns the actions of the audit records about `target`, newest first.
async fn actions_of(store: &Store, target: String) -> Vec<AuditAction> {
    let filter: AuditFilter = audit_of(target);
    store
        .list_audit(&filter)
        .await
        .unwrap()
        .iter()
        .map(|event| event.action)
        .collect()
}

// ---------------------------------------------------------------------
// Members

pub(super) async fn member_roles_keep_one_admin(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let first = add_member(&store, &acme, "first@example.com", Role::Admin).await;
    let second = add_member(&store, &acme, "second@example.com", Role::Viewer).await;
    // Another tenant's admin does not count for acme.
    add_member(&store, &globex, "other@example.com", Role::Admin).await;

    let error = store
        .change_user_role(first, Role::Developer, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::LastAdmin), "{error:?}");
    assert_eq!(
        store.find_user(first).await.unwrap().unwrap().role,
        Role::Admin
    );

    let promoted = store
        .change_user_role(second, Role::Admin, &context(now()))
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Admin);
    let demoted = store
        .change_user_role(first, Role::Viewer, &context(now()))
        .await
        .unwrap();
    assert_eq!(demoted.role, Role::Viewer);
    // The same role again changes nothing and writes no record.
    store
        .change_user_role(first, Role::Viewer, &context(now()))
        .await
        .unwrap();
    assert_eq!(
        actions_of(&store, first.to_string()).await,
        vec![AuditAction::UserRoleChanged, AuditAction::UserCreated]
    );

    let error = store
        .change_user_role(UserId::generate(), Role::Admin, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound("user")), "{error:?}");
}

pub(super) async fn disabled_member_loses_sessions(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let admin = add_member(&store, &acme, "admin@example.com", Role::Admin).await;
    let dev = add_member(&store, &acme, "dev@example.com", Role::Developer).await;
    let at = now();
    let first = session_of(&store, dev, at).await;
    let second = session_of(&store, dev, at).await;
    let kept = session_of(&store, admin, at).await;

    let disabled = store.disable_user(dev, &context(at)).await.unwrap();
    assert_eq!(disabled.disabled_at, Some(at));
    assert_eq!(store.find_session(&first.hash).await.unwrap(), None);
    assert_eq!(store.find_session(&second.hash).await.unwrap(), None);
    assert!(store.find_session(&kept.hash).await.unwrap().is_some());
    let records = store.list_audit(&audit_of(dev.to_string())).await.unwrap();
    let record = records
        .iter()
        .find(|event| event.action == AuditAction::UserDisabled)
        .unwrap();
    assert_eq!(record.details["sessions_ended"], 2);

    let error = store.disable_user(dev, &context(now())).await.unwrap_err();
    assert!(matches!(error, StoreError::Revoked("user")), "{error:?}");
    // The last enabled admin cannot be disabled, and a disabled admin
    // does not count as one.
    let error = store
        .disable_user(admin, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::LastAdmin), "{error:?}");
    assert!(
        store
            .find_user(admin)
            .await
            .unwrap()
            .unwrap()
            .disabled_at
            .is_none()
    );
}

pub(super) async fn disabled_member_loses_oauth_grants(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    add_member(&store, &acme, "admin@example.com", Role::Admin).await;
    let dev = add_member(&store, &acme, "dev@example.com", Role::Developer).await;
    let other = add_member(&store, &acme, "other@example.com", Role::Developer).await;
    let at = now();

    // The developer has an exchanged code whose grant has a refresh and an
    // access token, and a code not exchanged yet.
    let exchanged = code_record(client.id, dev, at);
    store.insert_code(&exchanged).await.unwrap();
    let consumed = store
        .consume_code(&exchanged.hash, client.id, at)
        .await
        .unwrap();
    assert!(matches!(consumed, ConsumeCode::Fresh(_)), "{consumed:?}");
    let refresh = refresh_record(client.id, Some(dev), exchanged.family_id, at);
    store.insert_refresh_token(&refresh).await.unwrap();
    let access = access_record(
        client.id,
        Some(exchanged.family_id),
        at + Duration::minutes(15),
    );
    store.record_access_token(&access).await.unwrap();
    let pending = code_record(client.id, dev, at);
    store.insert_code(&pending).await.unwrap();

    // Another member's grant stays as it is.
    let kept_code = code_record(client.id, other, at);
    store.insert_code(&kept_code).await.unwrap();
    let kept_refresh = refresh_record(client.id, Some(other), kept_code.family_id, at);
    store.insert_refresh_token(&kept_refresh).await.unwrap();
    let kept_access = access_record(
        client.id,
        Some(kept_code.family_id),
        at + Duration::minutes(15),
    );
    store.record_access_token(&kept_access).await.unwrap();
    let cursor = store.latest_change().await.unwrap();

    store.disable_user(dev, &context(at)).await.unwrap();

    let refresh = store.find_refresh_token(&refresh.hash).await.unwrap();
    assert_eq!(refresh.unwrap().revoked_at, Some(at));
    let access = store.find_access_token(&access.jti).await.unwrap().unwrap();
    assert_eq!(access.revoked_at, Some(at));
    let pending = store
        .consume_code(&pending.hash, client.id, at)
        .await
        .unwrap();
    assert_eq!(pending, ConsumeCode::NotFound);
    let changes = jti_changes(&store, cursor).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].jti.as_deref(), Some(access.jti.as_str()));

    let kept_refresh = store.find_refresh_token(&kept_refresh.hash).await.unwrap();
    assert_eq!(kept_refresh.unwrap().revoked_at, None);
    let kept_access = store.find_access_token(&kept_access.jti).await.unwrap();
    assert_eq!(kept_access.unwrap().revoked_at, None);
    let kept_code = store
        .consume_code(&kept_code.hash, client.id, at)
        .await
        .unwrap();
    assert!(matches!(kept_code, ConsumeCode::Fresh(_)), "{kept_code:?}");

    let records = store.list_audit(&audit_of(dev.to_string())).await.unwrap();
    let record = records
        .iter()
        .find(|event| event.action == AuditAction::UserDisabled)
        .unwrap();
    assert_eq!(record.details["access_tokens_revoked"], 1);
    assert_eq!(record.details["refresh_tokens_revoked"], 1);
    assert_eq!(record.details["codes_revoked"], 1);
}

pub(super) async fn disabled_member_enabled_again(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let admin = add_member(&store, &acme, "admin@example.com", Role::Admin).await;
    let dev = add_member(&store, &acme, "dev@example.com", Role::Developer).await;
    store.disable_user(dev, &context(now())).await.unwrap();

    let enabled = store.enable_user(dev, &context(now())).await.unwrap();
    assert_eq!(enabled.disabled_at, None);
    assert_eq!(enabled.role, Role::Developer);
    let records = store.list_audit(&audit_of(dev.to_string())).await.unwrap();
    assert_eq!(records[0].action, AuditAction::UserEnabled);
    assert_eq!(records[0].details["email"], "dev@example.com");

    let error = store.enable_user(dev, &context(now())).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let error = store.enable_user(admin, &context(now())).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let error = store
        .enable_user(UserId::generate(), &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound("user")), "{error:?}");

    // An enabled admin counts for the last-admin rule again.
    let second = add_member(&store, &acme, "second@example.com", Role::Admin).await;
    store.disable_user(second, &context(now())).await.unwrap();
    let error = store
        .disable_user(admin, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::LastAdmin), "{error:?}");
    store.enable_user(second, &context(now())).await.unwrap();
    let disabled = store.disable_user(admin, &context(now())).await.unwrap();
    assert!(disabled.disabled_at.is_some());
}

pub(super) async fn parallel_admin_changes_keep_one_admin(fixture: Fixture) {
    const ROUNDS: usize = 15;
    let store = fixture.store;
    for round in 0..ROUNDS {
        let tenant = create_tenant(&store, &format!("acme-{round}")).await;
        let mut admins = Vec::new();
        for index in 0..3 {
            let email = format!("admin{index}@example.com");
            admins.push(add_member(&store, &tenant, &email, Role::Admin).await);
        }

        // Each task takes its own pooled connection, so the three
        // transactions run at once. Odd rounds demote one admin instead
        // of disabling it, so that role changes take part in the race.
        let mut tasks = JoinSet::new();
        for (index, admin) in admins.iter().copied().enumerate() {
            let store = store.clone();
            let demote = round % 2 == 1 && index == 1;
            tasks.spawn(async move {
                if demote {
                    store
                        .change_user_role(admin, Role::Developer, &context(now()))
                        .await
                } else {
                    store.disable_user(admin, &context(now())).await
                }
            });
        }
        let mut last_admin_errors = 0;
        while let Some(outcome) = tasks.join_next().await {
            match outcome.unwrap() {
                Ok(_) => {}
                Err(StoreError::LastAdmin) => last_admin_errors += 1,
                Err(error) => panic!("round {round}: unexpected store error {error:?}"),
            }
        }
        assert_eq!(last_admin_errors, 1, "round {round}");

        let mut enabled_admins = 0;
        for admin in &admins {
            let user = store.find_user(*admin).await.unwrap().unwrap();
            if user.role == Role::Admin && user.disabled_at.is_none() {
                enabled_admins += 1;
            }
        }
        assert_eq!(enabled_admins, 1, "round {round}");
    }
}

pub(super) async fn last_sign_in_recorded(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let signed_in = add_member(&store, &acme, "in@example.com", Role::Viewer).await;
    add_member(&store, &acme, "never@example.com", Role::Viewer).await;
    let other = add_member(&store, &globex, "in@example.com", Role::Viewer).await;
    let at = now();
    session_of(&store, signed_in, at - Duration::hours(2)).await;
    session_of(&store, signed_in, at).await;
    session_of(&store, other, at).await;
    assert_eq!(
        store.last_sign_ins(acme.id).await.unwrap(),
        vec![(signed_in, at)]
    );
}

// ---------------------------------------------------------------------
// Invites

pub(super) async fn invites_created_listed_and_revoked(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    add_member(&store, &acme, "member@example.com", Role::Viewer).await;
    let at = now();

    let error = store
        .create_invite(
            &invite(&acme, "Member@Example.com", Role::Admin, at),
            &context(at),
        )
        .await
        .unwrap_err();
    match error {
        StoreError::Conflict(message) => {
            assert!(message.contains("already a member"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let new = invite(&acme, "new@example.com", Role::Developer, at);
    let stored = store.create_invite(&new, &context(at)).await.unwrap();
    assert_eq!(stored.id, new.id);
    assert_eq!(stored.token_hash, new.token_hash);
    assert_eq!(stored.state(at), InviteState::Pending);
    assert_eq!(stored.state(new.expires_at), InviteState::Expired);
    let error = store
        .create_invite(
            &invite(&acme, "new@example.com", Role::Viewer, at),
            &context(at),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    // The same address may be invited into another tenant.
    let elsewhere = invite(&globex, "new@example.com", Role::Viewer, at);
    store.create_invite(&elsewhere, &context(at)).await.unwrap();

    assert_eq!(
        store.list_pending_invites(acme.id, at).await.unwrap(),
        vec![stored.clone()]
    );
    assert_eq!(
        store
            .list_pending_invites(acme.id, new.expires_at)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store.find_invite_by_hash(&new.token_hash).await.unwrap(),
        Some(stored.clone())
    );

    let revoked = store.revoke_invite(new.id, &context(at)).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    assert_eq!(revoked.state(at), InviteState::Revoked);
    let error = store.revoke_invite(new.id, &context(at)).await.unwrap_err();
    assert!(matches!(error, StoreError::Revoked("invite")), "{error:?}");
    let error = store
        .revoke_invite(InviteId::generate(), &context(at))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound("invite")), "{error:?}");
    assert!(
        store
            .list_pending_invites(acme.id, at)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        actions_of(&store, new.id.to_string()).await,
        vec![AuditAction::InviteRevoked, AuditAction::InviteCreated]
    );
}

pub(super) async fn invite_accepted_once(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();
    let sent = invite(&acme, "new@example.com", Role::Developer, at);
    store.create_invite(&sent, &context(at)).await.unwrap();

    // The invite's tenant, address and role win over the ones passed.
    let globex = create_tenant(&store, "globex").await;
    let typed = member(&globex, "other@example.com", Role::Admin);
    let outcome = store
        .accept_invite(&sent.token_hash, &typed, &context(at))
        .await
        .unwrap();
    let AcceptInvite::Accepted(user) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(user.id, typed.id);
    assert_eq!(user.tenant_id, acme.id);
    assert_eq!(user.email.as_str(), "new@example.com");
    assert_eq!(user.role, Role::Developer);
    let used = store.find_invite(sent.id).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(at));
    assert_eq!(used.user_id, Some(user.id));
    let records = store
        .list_audit(&audit_of(user.id.to_string()))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, AuditAction::UserCreated);
    assert_eq!(records[0].details["invite_id"], sent.id.to_string());

    // Used once only.
    let again = member(&acme, "x@example.com", Role::Viewer);
    assert_eq!(
        store
            .accept_invite(&sent.token_hash, &again, &context(at))
            .await
            .unwrap(),
        AcceptInvite::NotPending(InviteState::Used)
    );
    assert_eq!(
        store
            .accept_invite(&token_hash(), &again, &context(at))
            .await
            .unwrap(),
        AcceptInvite::Unknown
    );
    assert_eq!(store.find_user(again.id).await.unwrap(), None);
}

pub(super) async fn expired_or_revoked_invite_refused(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();
    let late = invite(&acme, "late@example.com", Role::Viewer, at);
    store.create_invite(&late, &context(at)).await.unwrap();
    let user = member(&acme, "ignored@example.com", Role::Viewer);
    assert_eq!(
        store
            .accept_invite(&late.token_hash, &user, &context(late.expires_at))
            .await
            .unwrap(),
        AcceptInvite::NotPending(InviteState::Expired)
    );

    let revoked = invite(&acme, "revoked@example.com", Role::Viewer, at);
    store.create_invite(&revoked, &context(at)).await.unwrap();
    store.revoke_invite(revoked.id, &context(at)).await.unwrap();
    assert_eq!(
        store
            .accept_invite(&revoked.token_hash, &user, &context(at))
            .await
            .unwrap(),
        AcceptInvite::NotPending(InviteState::Revoked)
    );

    // An address that became a member after the invite was sent.
    let raced = invite(&acme, "raced@example.com", Role::Viewer, at);
    store.create_invite(&raced, &context(at)).await.unwrap();
    add_member(&store, &acme, "raced@example.com", Role::Viewer).await;
    assert_eq!(
        store
            .accept_invite(&raced.token_hash, &user, &context(at))
            .await
            .unwrap(),
        AcceptInvite::EmailTaken
    );
    assert!(
        store
            .find_invite(raced.id)
            .await
            .unwrap()
            .unwrap()
            .used_at
            .is_none()
    );
    assert_eq!(store.find_user(user.id).await.unwrap(), None);
}
