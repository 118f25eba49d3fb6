//! Problems for JSON bodies that do not fit the handler's input type.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::RequestBody;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only the parse result is under test")]
struct Input {
    name: String,
    scopes: Option<Vec<String>>,
    limits: Option<Limits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only the parse result is under test")]
struct Limits {
    max_uses: Option<u32>,
}

fn parse(body: &str) -> Problem {
    let request = RequestBody {
        content_type: Some("application/json".to_owned()),
        bytes: Bytes::from(body.to_owned()),
    };
    request.json::<Input>().unwrap_err()
}

fn field(problem: &Problem) -> Option<&str> {
    problem.extension("field").and_then(Value::as_str)
}

#[test]
fn missing_member_named() {
    let problem = parse("{}");
    assert_eq!(problem.code(), "invalid_body");
    assert_eq!(field(&problem), Some("name"));
}

#[test]
fn unknown_member_named() {
    let problem = parse(r#"{"name": "a", "colour": 1}"#);
    assert_eq!(field(&problem), Some("colour"));
}

#[test]
fn wrong_type_named_by_path() {
    let problem = parse(r#"{"name": true}"#);
    assert_eq!(field(&problem), Some("name"));
    assert!(problem.detail().contains("name"), "{}", problem.detail());
}

#[test]
fn array_element_named_with_index() {
    let problem = parse(r#"{"name": "a", "scopes": ["x", 2]}"#);
    assert_eq!(field(&problem), Some("scopes[1]"));
}

#[test]
fn nested_members_named_with_parent() {
    let wrong_type = parse(r#"{"name": "a", "limits": {"max_uses": 1.5}}"#);
    assert_eq!(field(&wrong_type), Some("limits.max_uses"));
    let unknown = parse(r#"{"name": "a", "limits": {"plan": "x"}}"#);
    assert_eq!(field(&unknown), Some("limits.plan"));
}

#[test]
fn non_object_body_names_no_member() {
    let problem = parse("[1]");
    assert_eq!(problem.detail(), "the body must be a JSON object");
    assert_eq!(field(&problem), None);
}

#[test]
fn syntax_error_names_no_member() {
    let problem = parse(r#"{"name": "#);
    assert!(
        problem.detail().starts_with("the body is not valid JSON"),
        "{}",
        problem.detail()
    );
    assert_eq!(field(&problem), None);
}

#[test]
fn trailing_data_rejected() {
    let problem = parse(r#"{"name": "a"} {}"#);
    assert_eq!(problem.detail(), "trailing data after the JSON body");
}

#[test]
fn nested_object_of_wrong_type_hides_rust_name() {
    let problem = parse(r#"{"name": "a", "limits": 5}"#);
    assert_eq!(field(&problem), Some("limits"));
    assert!(!problem.detail().contains("struct"), "{}", problem.detail());
}

#[test]
fn object_for_enum_member_named() {
    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only the parse result is under test")]
    struct WithEnum {
        environment: Environment,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Environment {
        Live,
    }
    let request = RequestBody {
        content_type: Some("application/json".to_owned()),
        bytes: Bytes::from_static(br#"{"environment": {}}"#),
    };
    let problem = request.json::<WithEnum>().unwrap_err();
    assert_eq!(field(&problem), Some("environment"));
}

#[test]
fn unknown_empty_member_named() {
    let problem = parse(r#"{"": 1, "name": "a"}"#);
    assert_eq!(field(&problem), Some(""));
}
