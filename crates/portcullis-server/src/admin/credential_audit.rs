//! The credential audit in the admin API: `GET /admin/v1/audit/credentials`,
//! optionally `?tenant=NAME`, with the JSON of `portcullis audit --output
//! json`.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ADMIN_READ, authenticate_operator, problem_of, respond};
use crate::app::AppState;
use crate::auth::extract::is_query_credential;
use crate::credential_audit;
use crate::openapi::schemas;
use crate::problem::Problem;

/// Builds the credential audit route, to be merged into the admin router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit_credentials))
}

/// Audit credential hygiene
///
/// Reports keys and secrets past their rotation age, unused credentials
/// and scopes, long token lifetimes and certificates near expiry.
#[utoipa::path(
    get,
    path = "/audit/credentials",
    tag = "audit",
    params(("tenant" = Option<String>, Query, description = "Only this tenant's credentials")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The report", body = schemas::CredentialAuditReport),
        (status = 400, description = "A parameter is unknown or given twice"),
        (status = 404, description = "No tenant of this name"),
    ),
)]
async fn audit_credentials(State(state): State<AppState>, request: Request) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let tenant_name = tenant_parameter(parts.uri.query())?;
            let tenant = match tenant_name {
                Some(name) => Some(state.manager.tenant(&name).await.map_err(problem_of)?),
                None => None,
            };
            let report = credential_audit::run(
                &state.store,
                &state.audit_settings,
                tenant.as_ref(),
                OffsetDateTime::now_utc(),
            )
            .await
            .map_err(|error| {
                tracing::error!(error = %crate::telemetry::ErrorChain(&error), "credential audit failed in the store");
                Problem::store_failed()
            })?;
            Ok(axum::Json(report.to_json()).into_response())
        }
        .await,
    )
}

/// Reads the optional `tenant` parameter. Credential parameters are
/// skipped; any other parameter, or `tenant` given twice, is an error.
fn tenant_parameter(query: Option<&str>) -> Result<Option<String>, Problem> {
    let mut tenant = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "tenant" if tenant.is_some() => {
                return Err(Problem::invalid_field("tenant", "give tenant at most once"));
            }
            "tenant" => tenant = Some(value.into_owned()),
            other if is_query_credential(other) => {}
            other => {
                return Err(Problem::invalid_field(
                    other,
                    format!("unknown parameter {other:?}; the only parameter is tenant"),
                ));
            }
        }
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_parameter_checked() {
        assert_eq!(tenant_parameter(None).unwrap(), None);
        assert_eq!(
            tenant_parameter(Some("tenant=acme")).unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(tenant_parameter(Some("api_key=x")).unwrap(), None);
        let twice = tenant_parameter(Some("tenant=a&tenant=b")).unwrap_err();
        assert_eq!(twice.extension("field").unwrap(), "tenant");
        let unknown = tenant_parameter(Some("severity=high")).unwrap_err();
        assert_eq!(unknown.extension("field").unwrap(), "severity");
    }
}
