//! Alerts in the admin API: list them with filters and paging, and show
//! the webhook deliveries of one.
//!
//! `GET /admin/v1/alerts` takes the query parameters `tenant` (a name),
//! `credential` (a key or client id), `rule`, `severity`, `since` and
//! `until` (RFC 3339 times), `limit` (1 to [`MAX_PAGE`], default
//! [`DEFAULT_PAGE`]) and `before` (the `next_before` of the previous page).
//! Alerts come newest first.

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use portcullis_core::ids::AlertId;
use portcullis_store::{AlertFilter, AlertRule, AlertSeverity, Delivery};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ADMIN_READ, authenticate_operator, problem_of, timestamp};
use crate::alerts::alert_json;
use crate::app::AppState;
use crate::openapi::schemas;
use crate::problem::Problem;
use crate::telemetry::ErrorChain;

/// Alerts per page when the request sets no `limit`.
pub const DEFAULT_PAGE: u32 = 100;

/// Maximum alerts per page.
pub const MAX_PAGE: u32 = 1000;

/// Builds the alert routes, nested under `/admin/v1`.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(alerts_list))
        .routes(routes!(alerts_deliveries))
}

/// The query of `GET /admin/v1/alerts`.
// `IntoParams` stays qualified and not imported: the code `utoipa::path`
// generates names `utoipa::IntoParams`, which an import would make an
// unnecessary qualification.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only alerts about this tenant (a name).
    tenant: Option<String>,
    /// Only alerts about this key or client id.
    credential: Option<String>,
    /// Only alerts of this rule.
    rule: Option<String>,
    /// `info`, `warning` or `critical`.
    severity: Option<String>,
    /// RFC 3339; alerts at or after this time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339; alerts before this time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// The `next_before` of the previous page.
    #[param(format = Uuid)]
    before: Option<String>,
    /// Alerts per page, 1 to 1000, 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// List alerts
///
/// Alerts come newest first. Pass the `next_before` of one page as
/// `before` to read the next.
#[utoipa::path(
    get,
    path = "/alerts",
    tag = "alerts",
    params(ListQuery),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "A page of alerts", body = schemas::AlertPage),
        (status = 400, description = "A parameter is invalid or unknown"),
        (status = 404, description = "No tenant of this name"),
    ),
)]
async fn alerts_list(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let result = async {
        authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
        check_parameter_names(parts.uri.query())?;
        let Query(query) = Query::<ListQuery>::try_from_uri(&parts.uri).map_err(|_| {
            // Names are checked above, so only `limit` can fail to parse.
            Problem::invalid_field(
                "limit",
                format!("expected a whole number from 1 to {MAX_PAGE}"),
            )
        })?;
        let mut filter = filter_of(&query)?;
        if let Some(name) = &query.tenant {
            let tenant = state.manager.tenant(name).await.map_err(problem_of)?;
            filter.tenant_id = Some(tenant.id);
        }
        let alerts = state
            .store
            .list_alerts(&filter)
            .await
            .map_err(|error| store_problem(&error))?;
        let full_page = i64::try_from(alerts.len()).is_ok_and(|count| count == filter.limit);
        let next_before = alerts.last().filter(|_| full_page).map(|alert| alert.id);
        let items: Vec<Value> = alerts.iter().map(alert_json).collect();
        Ok::<_, Problem>(
            axum::Json(json!({"alerts": items, "next_before": next_before})).into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The query parameters of `GET /admin/v1/alerts`.
const LIST_PARAMETERS: [&str; 8] = [
    "tenant",
    "credential",
    "rule",
    "severity",
    "since",
    "until",
    "before",
    "limit",
];

/// Rejects an unknown or repeated query parameter by name, before serde
/// would report it in its own words.
fn check_parameter_names(query: Option<&str>) -> Result<(), Problem> {
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let name = name.into_owned();
        if !LIST_PARAMETERS.contains(&name.as_str()) {
            return Err(Problem::invalid_field(
                &name,
                format!(
                    "unknown parameter {name}; use {}",
                    LIST_PARAMETERS.join(", ")
                ),
            ));
        }
        if seen.contains(&name) {
            return Err(Problem::invalid_field(
                &name,
                format!("the parameter {name} is given more than once"),
            ));
        }
        seen.push(name);
    }
    Ok(())
}

/// List an alert's webhook deliveries
#[utoipa::path(
    get,
    path = "/alerts/{id}/deliveries",
    tag = "alerts",
    params(("id" = String, Path, format = Uuid, description = "The alert id")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The deliveries, without their bodies", body = schemas::DeliveryList),
        (status = 400, description = "`id` is not a UUID"),
    ),
)]
async fn alerts_deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let result = async {
        authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
        let id: AlertId = id.parse().map_err(|_| {
            Problem::invalid_field("id", "alert ids are UUIDs, as the alert list shows them")
        })?;
        let deliveries = state
            .store
            .list_deliveries(id)
            .await
            .map_err(|error| store_problem(&error))?;
        let items: Vec<Value> = deliveries.iter().map(delivery_json).collect();
        Ok::<_, Problem>(axum::Json(json!({"deliveries": items})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Checks every query parameter but the tenant, which needs the store.
fn filter_of(query: &ListQuery) -> Result<AlertFilter, Problem> {
    let rule = query
        .rule
        .as_deref()
        .map(|text| {
            text.parse::<AlertRule>().map_err(|_| {
                let names: Vec<&str> = AlertRule::ALL.iter().map(|rule| rule.as_str()).collect();
                Problem::invalid_field("rule", format!("expected one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let severity = query
        .severity
        .as_deref()
        .map(|text| {
            text.parse::<AlertSeverity>().map_err(|_| {
                Problem::invalid_field("severity", "expected info, warning or critical")
            })
        })
        .transpose()?;
    let before = query
        .before
        .as_deref()
        .map(|text| {
            text.parse::<AlertId>().map_err(|_| {
                Problem::invalid_field("before", "pass the next_before value of the last page")
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            format!("expected 1 to {MAX_PAGE}"),
        ));
    }
    Ok(AlertFilter {
        tenant_id: None,
        credential: query.credential.clone(),
        rule,
        severity,
        since: parse_time("since", query.since.as_deref())?,
        until: parse_time("until", query.until.as_deref())?,
        before,
        limit: i64::from(limit),
    })
}

fn parse_time(field: &str, text: Option<&str>) -> Result<Option<OffsetDateTime>, Problem> {
    text.map(|text| {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            Problem::invalid_field(
                field,
                "expected an RFC 3339 time such as 2026-12-04T10:00:00Z",
            )
        })
    })
    .transpose()
}

/// Returns the view of one delivery: its state and attempts, without the
/// body.
fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "webhook": delivery.webhook,
        "state": delivery.state.as_str(),
        "attempts": delivery.attempts,
        "next_attempt_at": timestamp(Some(delivery.next_attempt_at)),
        "last_error": delivery.last_error,
        "created_at": timestamp(Some(delivery.created_at)),
        "finished_at": timestamp(delivery.finished_at),
    })
}

fn store_problem(error: &portcullis_store::StoreError) -> Problem {
    tracing::error!(error = %ErrorChain(error), "reading alerts failed in the store");
    Problem::store_failed()
}
