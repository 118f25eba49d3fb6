//! Structural checks of the OpenAPI document.

use serde_json::Value;

use super::document;

fn document_json() -> Value {
    serde_json::to_value(document()).unwrap()
}

/// Every operation of the document, as `(method, path, operation)`.
fn operations(api: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in api["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if let Some(operation) = item.get(method) {
                found.push((method.to_owned(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

fn is_problem_ref(response: &Value) -> bool {
    response["content"]["application/problem+json"]["schema"]["$ref"]
        == "#/components/schemas/Problem"
}

#[test]
fn document_is_openapi_3_1() {
    let api = document_json();
    assert_eq!(api["openapi"], "3.1.0");
    assert!(api["components"]["schemas"]["Problem"].is_object());
    assert!(api["components"]["securitySchemes"]["operator_key"].is_object());
    assert!(api["components"]["securitySchemes"]["operator_key_header"].is_object());
}

#[test]
fn every_admin_operation_documented() {
    let api = document_json();
    let admin: Vec<_> = operations(&api)
        .into_iter()
        .filter(|(_, path, _)| path.starts_with("/admin/v1/"))
        .collect();
    // Update the count when an operation is added or removed.
    assert_eq!(admin.len(), 37, "admin operations");
    let mut ids = std::collections::BTreeSet::new();
    for (method, path, operation) in &admin {
        let name = format!("{method} {path}");
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{name} has no operationId");
        assert!(ids.insert(id.to_owned()), "{name} repeats operationId {id}");
        let summary = operation["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{name} has no summary");
        assert!(
            operation["tags"]
                .as_array()
                .is_some_and(|tags| !tags.is_empty()),
            "{name} has no tag"
        );
    }
}

#[test]
fn admin_operations_need_operator_key() {
    let api = document_json();
    for (method, path, operation) in operations(&api) {
        if !path.starts_with("/admin/v1/") || path == "/admin/v1/openapi.json" {
            continue;
        }
        let name = format!("{method} {path}");
        let requirements = operation["security"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let bearer = requirements
            .iter()
            .find_map(|requirement| requirement.get("operator_key"));
        let scopes = bearer
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let expected = if method == "get" {
            "admin:read"
        } else {
            "admin:write"
        };
        assert_eq!(scopes, vec![Value::from(expected)], "{name}");
        for status in ["401", "403", "429", "503"] {
            let response = &operation["responses"][status];
            assert!(
                is_problem_ref(response),
                "{name} lacks a problem+json {status}"
            );
        }
        assert!(
            operation["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(),
            "{name} lacks the challenge header"
        );
    }
}

#[test]
fn document_served_without_credential() {
    let api = document_json();
    let operation = &api["paths"]["/admin/v1/openapi.json"]["get"];
    assert!(operation.is_object());
    assert!(operation.get("security").is_none());
}

#[test]
fn error_responses_are_problems() {
    let api = document_json();
    for (method, path, operation) in operations(&api) {
        if path.starts_with("/oauth/") || path.starts_with("/.well-known/") {
            continue;
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(is_problem_ref(response), "{method} {path} {status}");
            }
        }
    }
}

#[test]
fn request_bodies_reject_unknown_members() {
    let api = document_json();
    let schemas = api["components"]["schemas"].as_object().unwrap();
    for name in [
        "TenantInput",
        "KeyInput",
        "ClientInput",
        "UserInput",
        "SignInput",
    ] {
        let schema = &schemas[name];
        assert_eq!(schema["additionalProperties"], false, "{name}");
    }
}
