//! One-time submission tokens of the forms whose response shows a secret
//! once: key create and rotate, client create and secret rotation, and the
//! member invite.
//!
//! A browser sends such a POST again on reload, on back and forward, and
//! on a double click. Each form therefore carries a token made when the
//! form is rendered: `<issued>.<nonce>.<mac>`. The MAC is a keyed hash of
//! the session id, the form, its subject (the key or client id of a
//! rotation), the issue time and the nonce. The first POST claims the
//! nonce in the store before it acts, then records the id of what it made.
//! A later POST with the same token finds the claim, changes nothing and
//! gets [`already_submitted`]: a page that links to what the first POST
//! made, because the secret itself is never stored and cannot be shown
//! again.
//!
//! The claims live in the database of the sign-in sessions
//! ([`portcullis_store::Store::claim_submission`]), so every node that
//! shares it sees them. Each claim belongs to one session and is deleted
//! with it. A token is accepted for [`SUBMISSION_LIFETIME`], which no
//! session outlives, and a session holds at most
//! [`MAX_SUBMISSIONS_PER_SESSION`] claims.

use askama::Template;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use portcullis_core::crypto::{CryptoError, Pepper, constant_time_eq};
use portcullis_store::{NewSubmission, StoreError, SubmissionClaim};
use time::OffsetDateTime;

use super::account::store_failure;
use super::pages::{Layout, error_page, html, see_other, signed_in_layout};
use crate::app::AppState;
use crate::oauth::csrf::session_token;
use crate::oauth::session::{ActiveSession, SESSION_ABSOLUTE_TIMEOUT, SessionId, random_token};
use crate::telemetry::ErrorChain;

/// Name of the hidden form field that carries the submission token.
pub(super) const SUBMISSION_FIELD: &str = "submission_token";

/// How long a submission token is accepted after its form was rendered:
/// the sessions' absolute lifetime, so a claim never has to outlive the
/// session it belongs to.
pub(super) const SUBMISSION_LIFETIME: time::Duration =
    time::Duration::seconds(SESSION_ABSOLUTE_TIMEOUT.as_secs() as i64);

/// Maximum unexpired claims of one session. Each claim is one key, client
/// or invite made in the dashboard, so a person at a browser stays far
/// below it, and a stolen session cannot fill the table.
pub(super) const MAX_SUBMISSIONS_PER_SESSION: u32 = 500;

/// Length of a token's nonce, in random bytes: 128 bits.
const NONCE_LEN: usize = 16;

/// Label hashed in front of a token's fields, so that its MAC never equals
/// another keyed hash of the same pepper.
const TOKEN_LABEL: &[u8] = b"portcullis dashboard submission token\0";

const SIGN_IN: &str = "/dashboard/sign-in";

/// A form whose response shows a secret once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SubmissionForm {
    KeyCreate,
    KeyRotate,
    ClientCreate,
    ClientRotate,
    InviteCreate,
}

impl SubmissionForm {
    /// Returns the form's name, stored with each claim.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::KeyCreate => "key_create",
            Self::KeyRotate => "key_rotate",
            Self::ClientCreate => "client_create",
            Self::ClientRotate => "client_rotate",
            Self::InviteCreate => "invite_create",
        }
    }
}

/// Makes the submission token of a form of `form` about `subject` (the id
/// of the key or client it rotates, or `""`), for the hidden field
/// [`SUBMISSION_FIELD`].
pub(super) fn issue_token(
    pepper: &Pepper,
    session: &SessionId,
    form: SubmissionForm,
    subject: &str,
    now: OffsetDateTime,
) -> Result<String, CryptoError> {
    let nonce = random_token(NONCE_LEN)?;
    let issued = now.unix_timestamp();
    let mac = token_mac(pepper, session, form, subject, issued, &nonce);
    Ok(format!("{issued}.{nonce}.{mac}"))
}

/// Makes a token as [`issue_token`] does for the signed-in session. When
/// the random generator fails, it logs the failure and returns `""`, so the
/// page is still shown and its form is rejected as missing the token.
pub(super) fn form_token(
    state: &AppState,
    session: &ActiveSession,
    form: SubmissionForm,
    subject: &str,
) -> String {
    let now = OffsetDateTime::now_utc();
    match issue_token(state.manager.pepper(), &session.id, form, subject, now) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(error = %error, "generating a submission token failed");
            String::new()
        }
    }
}

fn token_mac(
    pepper: &Pepper,
    session: &SessionId,
    form: SubmissionForm,
    subject: &str,
    issued: i64,
    nonce: &str,
) -> String {
    let mut input = TOKEN_LABEL.to_vec();
    for field in [
        session.expose(),
        form.as_str(),
        subject,
        &issued.to_string(),
        nonce,
    ] {
        input.extend_from_slice(field.as_bytes());
        input.push(0);
    }
    URL_SAFE_NO_PAD.encode(pepper.hash(&input).as_bytes())
}

/// The reason a submitted token was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TokenRejection {
    /// The form has no token.
    Missing,
    /// The token is malformed, or was made for another session, form or
    /// subject.
    Foreign,
    /// The token is older than [`SUBMISSION_LIFETIME`].
    Expired,
}

/// A token that passed [`check_token`]: the token as sent, the nonce to
/// claim and when the claim may go.
#[derive(Debug)]
pub(super) struct CheckedToken {
    token: String,
    nonce: String,
    expires_at: OffsetDateTime,
}

/// Checks that `submitted` was made by [`issue_token`] for this session,
/// form and subject, and has not expired at `now`. The MAC is compared in
/// constant time.
pub(super) fn check_token(
    pepper: &Pepper,
    session: &SessionId,
    form: SubmissionForm,
    subject: &str,
    submitted: &str,
    now: OffsetDateTime,
) -> Result<CheckedToken, TokenRejection> {
    if submitted.is_empty() {
        return Err(TokenRejection::Missing);
    }
    let mut fields = submitted.split('.');
    let (Some(issued), Some(nonce), Some(mac), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(TokenRejection::Foreign);
    };
    let Ok(issued) = issued.parse::<i64>() else {
        return Err(TokenRejection::Foreign);
    };
    let expected = token_mac(pepper, session, form, subject, issued, nonce);
    if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
        return Err(TokenRejection::Foreign);
    }
    let Ok(issued_at) = OffsetDateTime::from_unix_timestamp(issued) else {
        return Err(TokenRejection::Foreign);
    };
    let expires_at = issued_at + SUBMISSION_LIFETIME;
    if now >= expires_at {
        return Err(TokenRejection::Expired);
    }
    Ok(CheckedToken {
        token: submitted.to_owned(),
        nonce: nonce.to_owned(),
        expires_at,
    })
}

/// Returns the submission token of a page that shows the form of `form`:
/// `sent`, the checked token of a POST whose fields were rejected, or a
/// new token when `sent` is `None`. A form shown again carries the token
/// it was sent with, so the corrected form and an earlier copy of it share
/// one token, and only the first of them to arrive acts. It gets a new
/// token only when the old one stays claimed ([`Claim::release`] failed).
pub(super) fn page_token(
    state: &AppState,
    session: &ActiveSession,
    form: SubmissionForm,
    subject: &str,
    sent: Option<&CheckedToken>,
) -> String {
    match sent {
        Some(checked) => checked.token.clone(),
        None => form_token(state, session, form, subject),
    }
}

/// Checks the submission token of a posted form as [`check_token`] does,
/// and logs a rejection. Nothing is stored yet, so the caller may still
/// show the form again with field errors.
pub(super) fn checked_token(
    state: &AppState,
    session: &ActiveSession,
    form: SubmissionForm,
    subject: &str,
    submitted: &str,
) -> Result<CheckedToken, TokenRejection> {
    let pepper = state.manager.pepper();
    let now = OffsetDateTime::now_utc();
    check_token(pepper, &session.id, form, subject, submitted, now).inspect_err(|rejection| {
        tracing::info!(
            user_id = %session.user.id,
            form = form.as_str(),
            rejection = ?rejection,
            "dashboard form rejected: submission token missing, foreign or expired"
        );
    })
}

/// A claimed submission token. The caller runs the action and then calls
/// [`Claim::finish`] with what it made, or [`Claim::release`] when the
/// action changed nothing.
#[must_use = "a claim must be finished or released"]
pub(super) struct Claim {
    session_hash: portcullis_core::crypto::SecretHash,
    token: CheckedToken,
}

/// Claims a checked token for the session. A token claimed before gets the
/// page of [`already_submitted`] and the action must not run.
pub(super) async fn claim(
    state: &AppState,
    session: &ActiveSession,
    form: SubmissionForm,
    token: CheckedToken,
) -> Result<Claim, Response> {
    let session_hash = session.id.hash(state.manager.pepper());
    let submission = NewSubmission {
        session_hash: &session_hash,
        nonce: &token.nonce,
        kind: form.as_str(),
        created_at: OffsetDateTime::now_utc(),
        expires_at: token.expires_at,
    };
    match state
        .store
        .claim_submission(&submission, MAX_SUBMISSIONS_PER_SESSION)
        .await
    {
        Ok(SubmissionClaim::Claimed) => Ok(Claim {
            session_hash,
            token,
        }),
        Ok(SubmissionClaim::Used { target, .. }) => {
            tracing::info!(
                user_id = %session.user.id,
                form = form.as_str(),
                target = ?target,
                "dashboard form sent again: nothing changed"
            );
            Err(already_submitted(state, session, form, target.as_deref()))
        }
        Ok(SubmissionClaim::SessionFull) => {
            tracing::info!(
                user_id = %session.user.id,
                limit = MAX_SUBMISSIONS_PER_SESSION,
                "dashboard form rejected: the session holds the maximum of submissions"
            );
            Err(error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many forms sent",
                "This sign-in session has sent the maximum number of forms that create keys, \
                 clients or invites. Nothing was changed. Sign out, sign in again and resend \
                 the form.",
            ))
        }
        // The session ended between loading it and the claim.
        Err(StoreError::NotFound(_)) => Err(see_other(SIGN_IN)),
        Err(error) => Err(store_failure(&error)),
    }
}

impl Claim {
    /// Records `target`, the id of what the action made, so a POST sent
    /// again links to it. A failure is logged only: the action is done and
    /// its secret must still be shown, and the claim alone already stops a
    /// second action.
    pub(super) async fn finish(self, state: &AppState, target: &str) {
        if let Err(error) = state
            .store
            .finish_submission(&self.session_hash, &self.token.nonce, target)
            .await
        {
            tracing::error!(
                error = %ErrorChain(&error),
                target,
                "recording a dashboard submission's result failed"
            );
        }
    }

    /// Deletes the claim after an action that changed nothing, such as one
    /// that the store rejected, so the form can be corrected and sent again
    /// with the same token. Returns that token for the form shown again
    /// ([`page_token`]), or `None` when the delete failed: the token then
    /// stays claimed, and the form needs a new one.
    ///
    /// NOTE: callers also release after a store failure. Each action writes
    /// in one transaction, so a failure normally means nothing was stored,
    /// but a connection lost during COMMIT leaves that unknown, and the
    /// form sent again could then make a second key, client or invite.
    pub(super) async fn release(self, state: &AppState) -> Option<CheckedToken> {
        match state
            .store
            .release_submission(&self.session_hash, &self.token.nonce)
            .await
        {
            Ok(()) => Some(self.token),
            Err(error) => {
                tracing::error!(
                    error = %ErrorChain(&error),
                    "releasing a dashboard submission failed"
                );
                None
            }
        }
    }
}

/// The page of a form sent again: what the first submission made, that
/// its secret was shown once, and where to go from here.
#[derive(Template)]
#[template(path = "dashboard/submission_used.html")]
struct UsedPage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    heading: &'static str,
    message: &'static str,
    /// The links to what was made and to its rotation, as (path, text).
    links: Vec<(String, &'static str)>,
}

/// Renders the 409 page of a form whose token was used before. `target`
/// is the id of what the first submission made, or `None` when it is not
/// recorded (it still runs, or it failed after its claim).
pub(super) fn already_submitted(
    state: &AppState,
    session: &ActiveSession,
    form: SubmissionForm,
    target: Option<&str>,
) -> Response {
    let (heading, message, links) = used_page_text(form, target);
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::CONFLICT,
        &UsedPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            heading,
            message,
            links,
        },
    )
}

/// Returns the heading, message and links of [`already_submitted`].
fn used_page_text(
    form: SubmissionForm,
    target: Option<&str>,
) -> (&'static str, &'static str, Vec<(String, &'static str)>) {
    match form {
        SubmissionForm::KeyCreate | SubmissionForm::KeyRotate => {
            let heading = if form == SubmissionForm::KeyCreate {
                "Key already created"
            } else {
                "Key already rotated"
            };
            let message = "This form was already sent, so nothing was changed this time. A \
                key's secret is shown only once, in the answer to the first submission, and it \
                cannot be shown again. If you did not copy it, rotate the key to get a new secret.";
            let links = match target {
                Some(id) => vec![
                    (format!("/dashboard/keys/{id}"), "Go to the key"),
                    (format!("/dashboard/keys/{id}/rotate"), "Rotate the key"),
                ],
                None => vec![("/dashboard/keys".to_owned(), "All keys")],
            };
            (heading, message, links)
        }
        SubmissionForm::ClientCreate | SubmissionForm::ClientRotate => {
            let heading = if form == SubmissionForm::ClientCreate {
                "Client already registered"
            } else {
                "Client secret already rotated"
            };
            let message = "This form was already sent, so nothing was changed this time. A \
                client secret is shown only once, in the answer to the first submission, and it \
                cannot be shown again. If you did not copy it, rotate the client's secret to get \
                a new one.";
            let links = match target {
                Some(id) => vec![
                    (format!("/dashboard/clients/{id}"), "Go to the client"),
                    (
                        format!("/dashboard/clients/{id}/rotate"),
                        "Rotate the client secret",
                    ),
                ],
                None => vec![("/dashboard/clients".to_owned(), "All clients")],
            };
            (heading, message, links)
        }
        SubmissionForm::InviteCreate => {
            let message = "This form was already sent, so nothing was changed this time. An \
                invite link is shown only once, in the answer to the first submission, and it \
                cannot be shown again. If you did not copy it, revoke the pending invite on the \
                members page and invite the person again.";
            let links = vec![(
                "/dashboard/members".to_owned(),
                "Go to the members and pending invites",
            )];
            ("Invite already created", message, links)
        }
    }
}

impl TokenRejection {
    /// Renders the error page that names the problem and the next step.
    pub(super) fn page(&self) -> Response {
        match self {
            Self::Missing => error_page(
                StatusCode::BAD_REQUEST,
                "Form rejected",
                "The form has no submission token, so it cannot be told apart from a copy sent \
                 again. Nothing was changed. Open the form again from the dashboard and resend it.",
            ),
            Self::Foreign => error_page(
                StatusCode::FORBIDDEN,
                "Form rejected",
                "The form's submission token is invalid: it was made for another sign-in session \
                 or another form. Nothing was changed. Open the form again from the dashboard and \
                 resend it.",
            ),
            Self::Expired => error_page(
                StatusCode::BAD_REQUEST,
                "Form expired",
                "The form was opened too long ago. Nothing was changed. Open the form again from \
                 the dashboard and resend it.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::crypto::MasterKey;

    use super::*;

    fn pepper() -> Pepper {
        MasterKey::generate().unwrap().derive_pepper()
    }

    #[test]
    fn token_accepted_for_its_session_and_form() {
        let pepper = pepper();
        let session = SessionId::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let form = SubmissionForm::KeyCreate;
        let token = issue_token(&pepper, &session, form, "", now).unwrap();
        let checked = check_token(&pepper, &session, form, "", &token, now).unwrap();
        assert_eq!(
            checked.expires_at.unix_timestamp(),
            (now + SUBMISSION_LIFETIME).unix_timestamp()
        );
    }

    #[test]
    fn token_rejected_elsewhere() {
        let pepper = pepper();
        let session = SessionId::generate().unwrap();
        let other = SessionId::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let form = SubmissionForm::KeyRotate;
        let token = issue_token(&pepper, &session, form, "key-a", now).unwrap();

        let check = |session: &SessionId, form, subject: &str, token: &str| {
            check_token(&pepper, session, form, subject, token, now).err()
        };
        assert_eq!(
            check(&other, form, "key-a", &token),
            Some(TokenRejection::Foreign)
        );
        assert_eq!(
            check(&session, SubmissionForm::ClientRotate, "key-a", &token),
            Some(TokenRejection::Foreign)
        );
        assert_eq!(
            check(&session, form, "key-b", &token),
            Some(TokenRejection::Foreign)
        );
        assert_eq!(
            check(&session, form, "key-a", ""),
            Some(TokenRejection::Missing)
        );
        assert_eq!(
            check(&session, form, "key-a", "1.2"),
            Some(TokenRejection::Foreign)
        );
        let tampered = token.replacen('.', "0.", 1);
        assert_eq!(
            check(&session, form, "key-a", &tampered),
            Some(TokenRejection::Foreign)
        );
    }

    #[test]
    fn token_expires_after_lifetime() {
        let pepper = pepper();
        let session = SessionId::generate().unwrap();
        let issued = OffsetDateTime::now_utc();
        let form = SubmissionForm::InviteCreate;
        let token = issue_token(&pepper, &session, form, "", issued).unwrap();
        let later = issued + SUBMISSION_LIFETIME + time::Duration::seconds(1);
        let rejection = check_token(&pepper, &session, form, "", &token, later).unwrap_err();
        assert_eq!(rejection, TokenRejection::Expired);
    }
}
