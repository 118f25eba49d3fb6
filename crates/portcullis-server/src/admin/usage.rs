//! Usage series in the admin API, for charts: requests and failures per
//! hour or day of one key, one OAuth client or a whole tenant.
//!
//! `GET …/usage?granularity=hour|day&since=T&until=T` with RFC 3339 times.
//! The series covers every period that starts in `since..until`, rounded
//! out to whole periods, with zeros where nothing was counted. Counts
//! reach the store within about a second of a request (one flush).

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use portcullis_store::{CredentialRef, Granularity, UsagePoint, UsageQuery, UsageSubject};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::clients::parse_client_id;
use super::{ADMIN_READ, authenticate_operator, parse_key_id, problem_of, respond, timestamp};
use crate::app::AppState;
use crate::auth::extract::is_query_credential;
use crate::openapi::schemas;
use crate::problem::Problem;

/// Maximum hourly points in one series: 31 days. Hour rows are kept for
/// 35 days ([`crate::usage::HOUR_RETENTION`]), so a longer hourly range
/// would show zeros for pruned hours. Longer ranges go by day.
pub const MAX_HOUR_POINTS: i64 = 31 * 24;

/// Maximum daily points in one series: two years, the day retention.
pub const MAX_DAY_POINTS: i64 = 731;

/// The series that a request selects, parsed and bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageRange {
    /// Hours or days.
    pub granularity: Granularity,
    /// The start of the first period.
    pub since: OffsetDateTime,
    /// The start of the period after the last one.
    pub until: OffsetDateTime,
}

impl UsageRange {
    /// Parses `granularity`, `since` and `until` from a query string.
    /// Defaults: hours, until now, since 24 hours (by hour) or 30 days (by
    /// day) before `until`. Credential parameters are skipped. Any other
    /// parameter is an error. So is a range that is empty or longer than
    /// [`MAX_HOUR_POINTS`] hours or [`MAX_DAY_POINTS`] days.
    pub fn parse(query: Option<&str>, now: OffsetDateTime) -> Result<Self, Problem> {
        let mut granularity = None;
        let mut since = None;
        let mut until = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "granularity" => granularity = Some(parse_granularity(&value)?),
                "since" => since = Some(parse_time("since", &value)?),
                "until" => until = Some(parse_time("until", &value)?),
                other if is_query_credential(other) => {}
                other => {
                    return Err(Problem::invalid_field(
                        other,
                        format!("unknown parameter {other:?}; use granularity, since and until"),
                    ));
                }
            }
        }
        let granularity = granularity.unwrap_or(Granularity::Hour);
        Self::new(granularity, since, until, now)
    }

    /// Rounds and checks a range; see [`UsageRange::parse`].
    pub fn new(
        granularity: Granularity,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Self, Problem> {
        let period = granularity.period();
        let until = until.unwrap_or(now);
        let default_span = match granularity {
            Granularity::Hour => Duration::DAY,
            Granularity::Day => Duration::days(30),
        };
        let since = since.unwrap_or(until - default_span);

        // The exclusive end rounds up to the next period boundary, so the
        // period that contains `until` is part of the series.
        let mut end = granularity.period_start(until);
        if end < until {
            end += period;
        }
        let start = granularity.period_start(since);
        if start >= end {
            return Err(Problem::invalid_field(
                "since",
                "since must be earlier than until",
            ));
        }
        let points = (end - start).whole_seconds() / period.whole_seconds();
        let max = match granularity {
            Granularity::Hour => MAX_HOUR_POINTS,
            Granularity::Day => MAX_DAY_POINTS,
        };
        if points > max {
            return Err(Problem::invalid_field(
                "since",
                format!(
                    "the range spans {points} {}s, more than the maximum of {max}; move since \
                     closer to until{}",
                    granularity.as_str(),
                    if granularity == Granularity::Hour {
                        " or use granularity=day"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(Self {
            granularity,
            since: start,
            until: end,
        })
    }

    /// Returns the store query of this range for `subject`.
    pub const fn query(&self, subject: UsageSubject) -> UsageQuery {
        UsageQuery {
            subject,
            granularity: self.granularity,
            since: self.since,
            until: self.until,
        }
    }
}

/// Builds the JSON of a series: one point per period of `range`, zeros
/// where `points` has none, and the totals.
pub fn usage_json(subject: &Value, range: &UsageRange, points: &[UsagePoint]) -> Value {
    let mut items = Vec::new();
    let mut stored = points.iter().peekable();
    let (mut requests, mut failures) = (0_i64, 0_i64);
    let mut start = range.since;
    while start < range.until {
        let point = stored.next_if(|point| point.start == start);
        let (period_requests, period_failures) =
            point.map_or((0, 0), |point| (point.requests, point.failures));
        requests += period_requests;
        failures += period_failures;
        items.push(json!({
            "start": timestamp(Some(start)),
            "requests": period_requests,
            "failures": period_failures,
        }));
        start += range.granularity.period();
    }
    json!({
        "subject": subject,
        "granularity": range.granularity.as_str(),
        "since": timestamp(Some(range.since)),
        "until": timestamp(Some(range.until)),
        "totals": {"requests": requests, "failures": failures},
        "points": items,
    })
}

/// Builds the usage routes, to be merged into the admin router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(keys_usage))
        .routes(routes!(clients_usage))
        .routes(routes!(tenants_usage))
}

fn parse_granularity(value: &str) -> Result<Granularity, Problem> {
    match value {
        "hour" => Ok(Granularity::Hour),
        "day" => Ok(Granularity::Day),
        _ => Err(Problem::invalid_field(
            "granularity",
            "granularity must be hour or day",
        )),
    }
}

fn parse_time(field: &'static str, value: &str) -> Result<OffsetDateTime, Problem> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        Problem::invalid_field(
            field,
            format!("{field} must be an RFC 3339 time such as 2026-12-01T00:00:00Z"),
        )
    })
}

/// The owner of a series, as the request path names it.
enum Target {
    Key(String),
    Client(String),
    Tenant(String),
}

/// Show an API key's usage over time
#[utoipa::path(
    get,
    path = "/keys/{id}/usage",
    tag = "usage",
    params(
        ("id" = String, Path, format = Uuid, description = "The key id"),
        ("granularity" = Option<schemas::Granularity>, Query, description = "`hour` (the default) or `day`"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339; the default is 24 hours (by hour) or 30 days (by day) before `until`"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339; the default is now"),
    ),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The key's series", body = schemas::UsageSeries),
        (status = 400, description = "A parameter is invalid, unknown, or the range is empty or too long"),
        (status = 404, description = "No key with this id"),
    ),
)]
async fn keys_usage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(series(&state, request, Target::Key(id)).await)
}

/// Show an OAuth client's usage over time
#[utoipa::path(
    get,
    path = "/clients/{id}/usage",
    tag = "usage",
    params(
        ("id" = String, Path, format = Uuid, description = "The client id"),
        ("granularity" = Option<schemas::Granularity>, Query, description = "`hour` (the default) or `day`"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339; the default is 24 hours (by hour) or 30 days (by day) before `until`"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339; the default is now"),
    ),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The client's series", body = schemas::UsageSeries),
        (status = 400, description = "A parameter is invalid, unknown, or the range is empty or too long"),
        (status = 404, description = "No client with this id"),
    ),
)]
async fn clients_usage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(series(&state, request, Target::Client(id)).await)
}

/// Show a tenant's usage over time
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/usage",
    tag = "usage",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("granularity" = Option<schemas::Granularity>, Query, description = "`hour` (the default) or `day`"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339; the default is 24 hours (by hour) or 30 days (by day) before `until`"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339; the default is now"),
    ),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The tenant's series", body = schemas::UsageSeries),
        (status = 400, description = "A parameter is invalid, unknown, or the range is empty or too long"),
        (status = 404, description = "No tenant of this name"),
    ),
)]
async fn tenants_usage(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(series(&state, request, Target::Tenant(tenant)).await)
}

/// Authenticates the operator, parses the range, resolves `target` (404
/// when it does not exist) and answers its series.
async fn series(state: &AppState, request: Request, target: Target) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    authenticate_operator(state, &parts, &ADMIN_READ, "admin").await?;
    let range = UsageRange::parse(parts.uri.query(), OffsetDateTime::now_utc())?;

    let (subject, about) = match target {
        Target::Key(id) => {
            let key = state
                .manager
                .key(parse_key_id(&id)?)
                .await
                .map_err(problem_of)?;
            let about = json!({"kind": "key", "id": key.id, "tenant": key.tenant});
            (UsageSubject::Credential(CredentialRef::Key(key.id)), about)
        }
        Target::Client(id) => {
            let client = state
                .manager
                .client(parse_client_id(&id)?)
                .await
                .map_err(problem_of)?;
            let about = json!({"kind": "client", "id": client.id, "tenant": client.tenant});
            (
                UsageSubject::Credential(CredentialRef::Client(client.id)),
                about,
            )
        }
        Target::Tenant(name) => {
            let tenant = state.manager.tenant(&name).await.map_err(problem_of)?;
            let about = json!({"kind": "tenant", "id": tenant.id, "name": tenant.name});
            (UsageSubject::Tenant(tenant.id), about)
        }
    };

    let points = state
        .manager
        .usage(&range.query(subject))
        .await
        .map_err(problem_of)?;
    Ok(axum::Json(usage_json(&about, &range, &points)).into_response())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-04 15:42 UTC);

    fn field_of(problem: &Problem) -> Option<&str> {
        problem.extension("field").and_then(Value::as_str)
    }

    #[test]
    fn defaults_cover_last_day_by_hour() {
        let range = UsageRange::parse(None, NOW).unwrap();
        assert_eq!(range.granularity, Granularity::Hour);
        assert_eq!(range.until, datetime!(2026-12-04 16:00 UTC));
        assert_eq!(range.since, datetime!(2026-12-03 15:00 UTC));
    }

    #[test]
    fn days_round_out_to_whole_days() {
        let range = UsageRange::parse(
            Some("granularity=day&since=2026-11-01T12:00:00Z&until=2026-11-03T00:00:00Z"),
            NOW,
        )
        .unwrap();
        assert_eq!(range.since, datetime!(2026-11-01 00:00 UTC));
        assert_eq!(range.until, datetime!(2026-11-03 00:00 UTC));
    }

    #[test]
    fn bad_parameters_name_field() {
        for (query, field) in [
            ("granularity=week", "granularity"),
            ("since=yesterday", "since"),
            ("until=2026-13-01T00:00:00Z", "until"),
            (
                "since=2026-12-05T00:00:00Z&until=2026-12-04T00:00:00Z",
                "since",
            ),
            ("since=2026-01-01T00:00:00Z", "since"),
            ("granularity=day&since=2020-01-01T00:00:00Z", "since"),
            ("limit=5", "limit"),
        ] {
            let problem = UsageRange::parse(Some(query), NOW).unwrap_err();
            assert_eq!(problem.code(), "invalid_field", "{query}");
            assert_eq!(field_of(&problem), Some(field), "{query}");
        }
    }

    #[test]
    fn credential_parameter_skipped() {
        assert!(UsageRange::parse(Some("api_key=pc_live_x&granularity=day"), NOW).is_ok());
    }

    #[test]
    fn series_filled_with_zeros() {
        let range = UsageRange::new(
            Granularity::Hour,
            Some(datetime!(2026-12-04 10:00 UTC)),
            Some(datetime!(2026-12-04 13:00 UTC)),
            NOW,
        )
        .unwrap();
        let stored = [UsagePoint {
            start: datetime!(2026-12-04 11:00 UTC),
            requests: 5,
            failures: 2,
        }];
        let value = usage_json(&json!({"kind": "tenant"}), &range, &stored);
        let points = value["points"].as_array().unwrap();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0]["requests"], 0);
        assert_eq!(points[1]["start"], "2026-12-04T11:00:00Z");
        assert_eq!(points[1]["requests"], 5);
        assert_eq!(points[1]["failures"], 2);
        assert_eq!(value["totals"]["requests"], 5);
        assert_eq!(value["totals"]["failures"], 2);
    }
}
