//! Audit records in the admin API, and their JSON form, which
//! `portcullis audit-log export` writes too.
//!
//! `GET /admin/v1/audit-events` lists records in chain order with filters
//! and pages by sequence number: pass the `next_after` of one page as
//! `after` to get the next.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use portcullis_core::escape::escape_json_line;
use portcullis_store::chain::hex;
use portcullis_store::{AuditAction, AuditQuery, ChainedAuditEvent};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ADMIN_READ, authenticate_operator, problem_of, respond, timestamp};
use crate::app::AppState;
use crate::openapi::schemas;
use crate::problem::Problem;

/// Records per page when the request names no `limit`.
pub const DEFAULT_AUDIT_PAGE: i64 = 100;

/// Maximum records per page. A page of this size is a few hundred KiB of
/// JSON (an estimate from records of a few hundred bytes each).
pub const MAX_AUDIT_PAGE: i64 = 1000;

/// Longest accepted text filter (`actor`, `credential`). Actors and
/// targets that Portcullis writes are ids and short names, well below it.
const MAX_FILTER_LEN: usize = 256;

/// Returns the audit routes, nested under `/admin/v1`.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit_events_list))
}

/// Builds the JSON form of one audit record, with its place in the chain.
/// Field names are stable. Times are RFC 3339, hashes lower-case hex.
pub fn audit_record_json(record: &ChainedAuditEvent) -> Value {
    let event = &record.event;
    json!({
        "seq": record.seq,
        "id": event.id,
        "at": timestamp(Some(event.at)),
        "actor": event.actor,
        "action": event.action.as_str(),
        "tenant_id": event.tenant_id,
        "target": event.target,
        "remote_addr": event.remote_addr,
        "details": event.details,
        "prev_hash": hex(&record.prev_hash),
        "hash": hex(&record.hash),
    })
}

/// Serializes `value` as one JSON Lines line, without the line break.
/// Besides the escapes JSON requires, it escapes U+2028, U+2029, U+0085
/// and the other characters of [`escape_json_line`], so no value can
/// start a new line in any reader.
pub fn json_line(value: &Value) -> String {
    escape_json_line(&value.to_string())
}

/// Parses an RFC 3339 time of a filter, such as `since`.
pub fn parse_filter_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        "expected an RFC 3339 time with an offset, such as 2026-12-04T00:00:00Z".to_owned()
    })
}

/// The query of `GET /admin/v1/audit-events`, before the tenant name is
/// resolved.
#[derive(Debug, Default)]
struct ListParameters {
    tenant: Option<String>,
    query: AuditQuery,
}

/// Parses the query string. Unknown and repeated parameters are rejected,
/// so a mistyped filter never widens the result silently.
fn parse_parameters(query: Option<&str>) -> Result<ListParameters, Problem> {
    let mut parameters = ListParameters {
        query: AuditQuery {
            limit: DEFAULT_AUDIT_PAGE,
            ..AuditQuery::default()
        },
        ..ListParameters::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let name = name.into_owned();
        if seen.contains(&name) {
            return Err(Problem::invalid_field(
                &name,
                format!("the parameter {name} is given more than once"),
            ));
        }
        set_parameter(&mut parameters, &name, value.into_owned())?;
        seen.push(name);
    }
    Ok(parameters)
}

fn set_parameter(
    parameters: &mut ListParameters,
    name: &str,
    value: String,
) -> Result<(), Problem> {
    let invalid = |detail: String| Problem::invalid_field(name, detail);
    let query = &mut parameters.query;
    match name {
        "tenant" => parameters.tenant = Some(value),
        "actor" => query.actor = Some(bounded_text(name, value)?),
        "credential" => query.target = Some(bounded_text(name, value)?),
        "action" => {
            let action: AuditAction = value.parse().map_err(|_| {
                invalid("unknown action; use a name such as key.revoked or auth.failed".to_owned())
            })?;
            query.action = Some(action);
        }
        "since" => query.since = Some(parse_filter_time(&value).map_err(invalid)?),
        "until" => query.until = Some(parse_filter_time(&value).map_err(invalid)?),
        "after" => {
            query.after_seq = value
                .parse::<i64>()
                .ok()
                .filter(|seq| *seq >= 0)
                .ok_or_else(|| {
                    invalid(
                        "expected a sequence number: the next_after of the last page".to_owned(),
                    )
                })?;
        }
        "limit" => {
            query.limit = value
                .parse::<i64>()
                .ok()
                .filter(|limit| (1..=MAX_AUDIT_PAGE).contains(limit))
                .ok_or_else(|| {
                    invalid(format!(
                        "expected a whole number from 1 to {MAX_AUDIT_PAGE}"
                    ))
                })?;
        }
        _ => {
            return Err(invalid(format!(
                "unknown parameter {name}; use tenant, actor, action, credential, since, until, \
                 after or limit"
            )));
        }
    }
    Ok(())
}

fn bounded_text(name: &str, value: String) -> Result<String, Problem> {
    if value.is_empty() || value.len() > MAX_FILTER_LEN {
        return Err(Problem::invalid_field(
            name,
            format!("{name} must be 1 to {MAX_FILTER_LEN} bytes long"),
        ));
    }
    Ok(value)
}

/// List audit records
///
/// Records come in chain order. Pass the `next_after` of one page as
/// `after` to read the next.
#[utoipa::path(
    get,
    path = "/audit-events",
    tag = "audit",
    params(
        ("tenant" = Option<String>, Query, description = "Only records about this tenant"),
        ("actor" = Option<String>, Query, min_length = 1, max_length = 256, description = "Only records by this actor, such as `operator-key:ID`"),
        ("action" = Option<String>, Query, description = "Only this action, such as `key.revoked`"),
        ("credential" = Option<String>, Query, min_length = 1, max_length = 256, description = "Only records about this key or client id"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339; records at or after this time, and auth.succeeded minutes with a success at or after it"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339; records before this time, and auth.succeeded minutes with a success before it"),
        ("after" = Option<i64>, Query, minimum = 0, description = "The `next_after` of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Records per page, 100 by default"),
    ),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "A page of records", body = schemas::AuditEventPage),
        (status = 400, description = "A parameter is invalid, unknown or given twice"),
        (status = 404, description = "No tenant of this name"),
    ),
)]
async fn audit_events_list(State(state): State<AppState>, request: Request) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let ListParameters { tenant, mut query } = parse_parameters(parts.uri.query())?;
            if let (Some(since), Some(until)) = (query.since, query.until)
                && since >= until
            {
                return Err(Problem::invalid_field(
                    "until",
                    "until must be later than since",
                ));
            }
            if let Some(name) = tenant {
                let tenant = state.manager.tenant(&name).await.map_err(problem_of)?;
                query.tenant_id = Some(tenant.id);
            }
            let records = state
                .manager
                .audit_records(&query)
                .await
                .map_err(problem_of)?;
            let next_after = match records.last() {
                Some(last) if i64::try_from(records.len()) == Ok(query.limit) => json!(last.seq),
                _ => Value::Null,
            };
            let items: Vec<Value> = records.iter().map(audit_record_json).collect();
            Ok(axum::Json(json!({"events": items, "next_after": next_after})).into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(problem: &Problem) -> String {
        let field = problem.extension("field").and_then(Value::as_str);
        field.unwrap_or_default().to_owned()
    }

    #[test]
    fn parameters_parsed() {
        let parsed = parse_parameters(Some(
            "tenant=acme&actor=cli&action=key.revoked&credential=k1&since=2026-12-01T00:00:00Z\
             &until=2026-12-02T00:00:00%2B01:00&after=42&limit=5",
        ))
        .unwrap();
        assert_eq!(parsed.tenant.as_deref(), Some("acme"));
        assert_eq!(parsed.query.actor.as_deref(), Some("cli"));
        assert_eq!(parsed.query.action, Some(AuditAction::KeyRevoked));
        assert_eq!(parsed.query.target.as_deref(), Some("k1"));
        assert_eq!(parsed.query.after_seq, 42);
        assert_eq!(parsed.query.limit, 5);
        assert!(parsed.query.since.is_some());
        assert!(parsed.query.until.is_some());
    }

    #[test]
    fn defaults_without_query() {
        let parsed = parse_parameters(None).unwrap();
        assert_eq!(parsed.query.limit, DEFAULT_AUDIT_PAGE);
        assert_eq!(parsed.query.after_seq, 0);
        assert!(parsed.tenant.is_none());
    }

    #[test]
    fn bad_parameters_name_their_field() {
        for (query, field) in [
            ("since=yesterday", "since"),
            ("until=2026-12-01", "until"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("after=-1", "after"),
            ("action=key.deleted", "action"),
            ("actr=cli", "actr"),
            ("limit=5&limit=6", "limit"),
            ("actor=", "actor"),
        ] {
            let problem = parse_parameters(Some(query)).unwrap_err();
            assert_eq!(field_of(&problem), field, "{query}");
        }
    }

    #[test]
    fn json_line_escapes_line_separators() {
        let line = json_line(&json!({"reason": "a\u{2028}b\nc\u{85}"}));
        assert_eq!(line, r#"{"reason":"a\u2028b\nc\u0085"}"#);
    }
}
