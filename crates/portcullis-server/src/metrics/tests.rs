use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::oauth::GrantType;

use super::labels::{RequestLabels, RouteLabel};
use super::*;

/// Returns whether `text` is a metric name of the text format,
/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, or a label name (`colon` false), without `:`.
fn is_name(text: &str, colon: bool) -> bool {
    let mut chars = text.chars();
    let valid_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(valid_first) && chars.all(|c| valid_first(c) || c.is_ascii_digit())
}

/// Parses `{a="x",b="y"}` at the start of `text`, returning the labels and
/// the rest of the line, or `None` when it is malformed.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut rest = text.strip_prefix('{')?;
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after_name) = rest.split_once("=\"")?;
        if !is_name(name, false) {
            return None;
        }
        let mut value = String::new();
        let mut chars = after_name.char_indices();
        let end = loop {
            let (index, c) = chars.next()?;
            match c {
                '"' => break index,
                '\\' => match chars.next()?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                '\n' => return None,
                other => value.push(other),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after_name[end + 1..];
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return None;
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// One sample line: name, labels and value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Checks that `text` is valid Prometheus text format 0.0.4 and returns its
/// samples. Every sample must belong to the family declared by the last
/// `# TYPE` line, and each family is declared once.
fn parse_exposition(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "the text must end with a line break");
    let mut families = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, _) = help.split_once(' ').expect("HELP without text");
            assert!(is_name(name, true), "invalid name in {line:?}");
            continue;
        }
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').expect("TYPE without a type");
            assert!(is_name(name, true), "invalid name in {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "unknown type in {line:?}"
            );
            assert!(families.insert(name.to_owned()), "{name} declared twice");
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "invalid metric name in {line:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).unwrap_or_else(|| panic!("bad labels in {line:?}"))
        } else {
            (Vec::new(), &line[name_end..])
        };
        let value_text = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
        let value = parse_value(value_text).unwrap_or_else(|| panic!("invalid value in {line:?}"));
        let (family, kind) = current
            .as_ref()
            .unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let belongs = match kind.as_str() {
            "histogram" => [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_owned()),
            _ => name == family,
        };
        assert!(belongs, "{name} is not part of family {family}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// Builds metrics with at least one sample in every family.
fn recorded_metrics() -> Metrics {
    let metrics = Metrics::new();

    metrics.record_request(
        &RequestLabels {
            route: RouteLabel::Gateway(Arc::from("/api")),
            method: MethodLabel::Get,
            status_class: StatusClass::Success,
            auth_method: AuthMethodLabel::ApiKey,
            auth_outcome: AuthOutcome::Success,
        },
        Duration::from_millis(3),
    );
    metrics.record_request(
        &RequestLabels {
            route: RouteLabel::Unmatched,
            method: MethodLabel::Other,
            status_class: StatusClass::ClientError,
            auth_method: AuthMethodLabel::None,
            auth_outcome: AuthOutcome::None,
        },
        Duration::from_secs(40),
    );
    metrics
        .authentication_duration
        .get_or_create(&AuthLabels {
            method: AuthMethodLabel::Jwt,
            outcome: AuthOutcome::Rejected,
        })
        .observe(0.0002);

    metrics.record_cache_lookup(true);
    metrics.record_cache_lookup(false);
    metrics.record_rate_limit_rejection(LimitKind::Tenant);
    metrics.record_brute_force_block();
    metrics.record_redis_call(RedisComponent::RateLimit, Duration::from_micros(300));
    metrics.record_redis_error(RedisComponent::BruteForce, RedisErrorKind::Timeout);
    metrics.record_redis_state(RedisComponent::BruteForce, false);
    metrics.record_redis_fallback(RedisComponent::BruteForce);

    metrics.record_token_issued(GrantType::ClientCredentials);
    metrics.record_certificate_verification(Some("expired"));
    metrics.record_certificate_verification(None);
    metrics
        .alerts_raised
        .get_or_create(&AlertLabels { rule: "rate_spike" })
        .inc();
    StoreObserver::observe(&metrics, "find_key_by_hash", Duration::from_millis(1), None);
    metrics
}

#[test]
fn exposition_parses_as_text_format() {
    let text = recorded_metrics().encode().unwrap();
    let samples = parse_exposition(&text);
    assert!(!samples.is_empty());
    for sample in &samples {
        assert!(
            sample.name.starts_with("portcullis_"),
            "{} lacks the prefix",
            sample.name
        );
    }
}

#[test]
fn counters_end_in_total_once() {
    let text = recorded_metrics().encode().unwrap();
    assert!(text.contains("# TYPE portcullis_http_requests_total counter\n"));
    assert!(!text.contains("_total_total"));
}

#[test]
fn request_labels_encoded() {
    let text = recorded_metrics().encode().unwrap();
    let expected = "portcullis_http_requests_total{route=\"gateway:/api\",method=\"GET\",\
                    status_class=\"2xx\",auth_method=\"api_key\",auth_outcome=\"success\"} 1\n";
    assert!(text.contains(expected), "{text}");
    assert!(
        text.contains("route=\"unmatched\",method=\"OTHER\""),
        "{text}"
    );
}

#[test]
fn histogram_buckets_cumulative() {
    let samples = parse_exposition(&recorded_metrics().encode().unwrap());
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|sample| sample.name == "portcullis_http_request_duration_seconds_bucket")
        .filter(|sample| {
            sample
                .labels
                .contains(&("route".into(), "unmatched".into()))
        })
        .collect();
    assert_eq!(buckets.len(), REQUEST_BUCKETS.len() + 1);
    let counts: Vec<f64> = buckets.iter().map(|sample| sample.value).collect();
    assert!(
        counts.windows(2).all(|pair| pair[0] <= pair[1]),
        "{counts:?}"
    );
    // The 40 s request is above every finite bound, so only +Inf counts it.
    let last = buckets.last().unwrap();
    assert!(last.labels.contains(&("le".into(), "+Inf".into())));
    assert_eq!(last.value, 1.0);
    assert_eq!(counts[counts.len() - 2], 0.0);
}

#[test]
fn store_errors_skip_answers_about_data() {
    let metrics = Metrics::new();
    let not_found = StoreError::NotFound("key");
    StoreObserver::observe(&metrics, "find_key", Duration::ZERO, Some(&not_found));
    let corrupt = StoreError::Corrupt("bad scopes".to_owned());
    StoreObserver::observe(&metrics, "find_key", Duration::ZERO, Some(&corrupt));
    let text = metrics.encode().unwrap();
    assert!(
        text.contains("portcullis_store_errors_total{operation=\"find_key\",kind=\"corrupt\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("kind=\"not_found\""), "{text}");
    assert!(
        text.contains(
            "portcullis_store_operation_duration_seconds_count{operation=\"find_key\"} 2\n"
        ),
        "{text}"
    );
}

#[test]
fn build_info_and_start_time_present() {
    let text = Metrics::new().encode().unwrap();
    let build = format!(
        "portcullis_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    assert!(text.contains("portcullis_start_time_seconds "), "{text}");
}

#[test]
fn auth_outcome_follows_problem() {
    assert_eq!(auth_outcome::<()>(&Ok(())), AuthOutcome::Success);
    assert_eq!(
        auth_outcome::<()>(&Err(Problem::missing_credential())),
        AuthOutcome::Missing
    );
    assert_eq!(
        auth_outcome::<()>(&Err(Problem::authentication_blocked(3))),
        AuthOutcome::Blocked
    );
    assert_eq!(
        auth_outcome::<()>(&Err(Problem::store_unavailable())),
        AuthOutcome::Error
    );
    assert_eq!(
        auth_outcome::<()>(&Err(Problem::rejected_key(
            portcullis_core::credential::KeyRejection::NotFound
        ))),
        AuthOutcome::Rejected
    );
}

#[test]
fn checker_rejects_malformed_text() {
    let malformed = [
        "portcullis_x 1\n",
        "# TYPE portcullis_x counter\nportcullis_x{a=\"1} 1\n",
        "# TYPE portcullis_x counter\nportcullis_y 1\n",
        "# TYPE portcullis_x counter\nportcullis_x one\n",
        "# TYPE portcullis_x counter\n# TYPE portcullis_x counter\n",
        "# TYPE portcullis_x count\n",
        "# TYPE portcullis_x counter\nportcullis_x{a=\"\\q\"} 1\n",
        "# TYPE portcullis_x counter\nportcullis_x 1",
    ];
    for text in malformed {
        let outcome = std::panic::catch_unwind(|| parse_exposition(text));
        assert!(outcome.is_err(), "accepted {text:?}");
    }
    let valid = "# HELP portcullis_x Some text.\n# TYPE portcullis_x counter\n\
                 portcullis_x{a=\"q\\\"\\\\\\n\",b=\"\"} 1.5\n";
    let samples = parse_exposition(valid);
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].labels[0].1, "q\"\\\n");
}
