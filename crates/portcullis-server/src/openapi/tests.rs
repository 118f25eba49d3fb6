//! Structural checks of the OpenAPI document.

use std::collections::BTreeSet;

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
    assert_eq!(admin.len(), 40, "admin operations");
    let mut ids = BTreeSet::new();
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

fn public_json() -> Value {
    serde_json::to_value(super::public::public_document()).unwrap()
}

/// Returns the `.route("…")` paths that `app::router` registers by hand,
/// outside the two documented route lists.
fn hand_registered_routes() -> Vec<String> {
    let source = include_str!("../app.rs");
    let router = source
        .split("pub fn router(")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .unwrap();
    router
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn public_document_covers_consumer_routes() {
    let api = public_json();
    let mut found: Vec<String> = operations(&api)
        .into_iter()
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    found.sort();
    let mut expected = vec![
        "get /.well-known/jwks.json",
        "get /.well-known/oauth-authorization-server",
        "get /ca/ca.pem",
        "get /ca/crl.pem",
        "get /oauth/authorize",
        "get /openapi.json",
        "post /oauth/authorize",
        "post /oauth/introspect",
        "post /oauth/revoke",
        "post /oauth/token",
        "post /v1/keys/verify",
        "post /v1/leaks",
    ];
    expected.sort_unstable();
    assert_eq!(found, expected);
}

#[test]
fn router_serves_no_undocumented_route() {
    // Health checks are for load balancers and orchestrators, which need
    // no description. Every other route of the application router comes
    // from a documented list, or from the dashboard and the docs site.
    let undocumented = ["/healthz", "/readyz"];
    for path in hand_registered_routes() {
        assert!(
            undocumented.contains(&path.as_str()),
            "app::router registers {path} by hand; add it to openapi::public::public_routes \
             with a #[utoipa::path] description"
        );
    }
}

#[test]
fn public_operations_described() {
    let api = public_json();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&api) {
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
fn oauth_requests_are_forms() {
    let api = public_json();
    let forms = [
        ("/oauth/token", "TokenRequest"),
        ("/oauth/introspect", "IntrospectionRequest"),
        ("/oauth/revoke", "RevocationRequest"),
    ];
    for (path, schema) in forms {
        let content = &api["paths"][path]["post"]["requestBody"]["content"];
        let form = &content["application/x-www-form-urlencoded"];
        assert_eq!(
            form["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{path}"
        );
        assert_eq!(content.as_object().unwrap().len(), 1, "{path}");
    }
}

#[test]
fn client_authentication_schemes_declared() {
    let api = public_json();
    let schemes = &api["components"]["securitySchemes"];
    assert_eq!(schemes["client_secret_basic"]["type"], "http");
    assert_eq!(schemes["client_secret_basic"]["scheme"], "basic");
    assert_eq!(schemes["tls_client_auth"]["type"], "mutualTLS");
    assert_eq!(schemes["operator_key"]["scheme"], "bearer");
    assert_eq!(
        schemes["leak_signature"]["name"],
        "github-public-key-signature"
    );
    assert_eq!(
        schemes["leak_key_id"]["name"],
        "github-public-key-identifier"
    );

    let token = &api["paths"]["/oauth/token"]["post"]["security"];
    let requirements: Vec<String> = token
        .as_array()
        .unwrap()
        .iter()
        .map(|requirement| {
            let names: Vec<&String> = requirement.as_object().unwrap().keys().collect();
            format!("{names:?}")
        })
        .collect();
    // The empty requirement covers the methods that authenticate in the
    // body: client_secret_post, private_key_jwt and public clients.
    assert_eq!(
        requirements,
        ["[]", "[\"client_secret_basic\"]", "[\"tls_client_auth\"]"]
    );

    let verify = &api["paths"]["/v1/keys/verify"]["post"]["security"][0]["operator_key"];
    assert_eq!(verify, &serde_json::json!(["keys:verify"]));
}

/// Returns the property names of a schema and the ones it requires, each
/// sorted.
fn members(api: &Value, schema: &str) -> (Vec<String>, Vec<String>) {
    let schema = &api["components"]["schemas"][schema];
    let properties: Vec<String> = schema["properties"]
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default();
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    required.sort();
    (properties, required)
}

#[test]
fn oauth_schemas_use_rfc_members() {
    let api = public_json();
    // RFC 6749 §5.1.
    let (properties, required) = members(&api, "TokenResponse");
    assert_eq!(
        properties,
        [
            "access_token",
            "expires_in",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(
        required,
        ["access_token", "expires_in", "scope", "token_type"]
    );
    // RFC 6749 §5.2.
    let (properties, required) = members(&api, "OAuthError");
    assert_eq!(properties, ["error", "error_description"]);
    assert_eq!(required, ["error", "error_description"]);

    // RFC 7662 §2.2: only `active` is always present.
    let (properties, required) = members(&api, "IntrospectionResponse");
    assert_eq!(required, ["active"]);
    for member in [
        "scope",
        "client_id",
        "token_type",
        "exp",
        "iat",
        "sub",
        "aud",
        "iss",
        "jti",
    ] {
        assert!(properties.contains(&member.to_owned()), "{member}");
    }

    // RFC 8414 §2 and RFC 8705 §5.
    let (properties, required) = members(&api, "AuthorizationServerMetadata");
    for member in [
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
    ] {
        assert!(required.contains(&member.to_owned()), "{member}");
    }
    assert!(properties.contains(&"mtls_endpoint_aliases".to_owned()));
    assert!(!required.contains(&"mtls_endpoint_aliases".to_owned()));
    // RFC 7517 §5.
    let (properties, required) = members(&api, "JwkSet");
    assert_eq!(properties, ["keys"]);
    assert_eq!(required, ["keys"]);
}

#[test]
fn verify_errors_are_problems() {
    let api = public_json();
    for path in ["/v1/keys/verify", "/v1/leaks"] {
        let operation = &api["paths"][path]["post"];
        for (status, response) in operation["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(is_problem_ref(response), "{path} {status}");
            }
        }
    }
}

#[test]
fn public_document_links_admin_document() {
    let api = public_json();
    let description = api["info"]["description"].as_str().unwrap();
    assert!(description.contains("/admin/v1/openapi.json"));
    let admin = document_json();
    let description = admin["info"]["description"].as_str().unwrap();
    assert!(description.contains("/openapi.json"));
}

#[test]
fn redirect_uri_limit_documented() {
    let api = document_json();
    let property = &api["components"]["schemas"]["ClientInput"]["properties"]["redirect_uris"];
    assert_eq!(
        property["maxItems"],
        crate::clients::MAX_REDIRECT_URIS,
        "{property}"
    );
}

/// Returns whether a property schema admits `null`: a 3.1 type list with
/// `"null"`, or a `oneOf` with a null branch, utoipa's form for an
/// optional reference.
fn is_nullable(property: &Value) -> bool {
    let in_type = property["type"]
        .as_array()
        .is_some_and(|types| types.iter().any(|kind| kind == "null"));
    let in_one_of = property["oneOf"]
        .as_array()
        .is_some_and(|branches| branches.iter().any(|branch| branch["type"] == "null"));
    in_type || in_one_of
}

/// Collects the names of the component schemas that the `$ref`s inside
/// `roots` reach, directly or through other components.
fn referenced_schemas<'a>(
    api: &'a Value,
    roots: impl IntoIterator<Item = &'a Value>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut visited_refs = BTreeSet::new();
    let mut pending: Vec<&Value> = roots.into_iter().collect();
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(members) => {
                if let Some(Value::String(reference)) = members.get("$ref")
                    && visited_refs.insert(reference.clone())
                {
                    let pointer = reference.strip_prefix('#').unwrap();
                    let target = api.pointer(pointer);
                    assert!(target.is_some(), "{reference} points nowhere");
                    pending.push(target.unwrap());
                    if let Some(name) = pointer.strip_prefix("/components/schemas/") {
                        names.insert(name.to_owned());
                    }
                }
                pending.extend(members.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    names
}

#[test]
fn referenced_schemas_follow_nested_refs() {
    let api = public_json();
    let bodies: Vec<Value> = operations(&api)
        .into_iter()
        .filter(|(method, path, _)| method == "post" && path == "/v1/leaks")
        .map(|(_, _, operation)| operation["requestBody"].clone())
        .collect();
    assert_eq!(bodies.len(), 1);
    // The body is an array, so `ReportItem` is only reached through
    // `items`.
    let names = referenced_schemas(&api, &bodies);
    assert!(names.contains("ReportItem"), "{names:?}");
}

#[test]
fn nullable_members_required() {
    // The handlers build most bodies with `json!`, which writes `None` as
    // `null`, so an optional member is present and nullable. These two are
    // also left out of some bodies: a usage series of a whole tenant has no
    // `tenant`, and an inactive token's introspection has only `active`.
    let omitted = [("UsageSubject", "tenant"), ("IntrospectionResponse", "aud")];
    for api in [document_json(), public_json()] {
        let operations = operations(&api);
        // A client may leave an optional member out of a request body, so
        // only schemas that the server writes must require their nullable
        // members. A schema used in both directions is still checked.
        let requests = referenced_schemas(
            &api,
            operations
                .iter()
                .map(|(_, _, operation)| &operation["requestBody"]),
        );
        let responses = referenced_schemas(
            &api,
            operations
                .iter()
                .map(|(_, _, operation)| &operation["responses"]),
        );
        let schemas = api["components"]["schemas"].as_object().unwrap();
        for (name, schema) in schemas {
            if requests.contains(name) && !responses.contains(name) {
                continue;
            }
            let Some(properties) = schema["properties"].as_object() else {
                continue;
            };
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            for (member, property) in properties {
                if !is_nullable(property) || omitted.contains(&(name.as_str(), member.as_str())) {
                    continue;
                }
                assert!(
                    required.contains(&Value::from(member.as_str())),
                    "{name}.{member} is nullable but not required; mark the field \
                     #[schema(required = true)] when the server writes null for it, \
                     or #[schema(nullable = false)] when serde skips it"
                );
            }
        }
    }
}

/// Checks a serialized body against its schema: every member is a
/// property, every required property is present, and `null` appears only
/// where the schema allows it.
fn assert_matches_schema(api: &Value, name: &str, body: &Value) {
    let schema = &api["components"]["schemas"][name];
    let properties = schema["properties"].as_object().unwrap();
    let body = body.as_object().unwrap();
    for (member, value) in body {
        let property = properties.get(member);
        assert!(property.is_some(), "{name} has no property {member}");
        if value.is_null() {
            assert!(is_nullable(property.unwrap()), "{name}.{member} is null");
        }
    }
    for member in schema["required"].as_array().cloned().unwrap_or_default() {
        let member = member.as_str().unwrap();
        assert!(body.contains_key(member), "{name} lacks required {member}");
    }
}

#[test]
fn real_bodies_match_schemas() {
    use crate::oauth::error::ErrorResponse;
    use crate::oauth::issue::TokenResponse;
    use crate::verify::{InvalidKey, ValidKey};

    let api = public_json();
    for refresh_token in [None, Some("pc_rt_example")] {
        let token = TokenResponse {
            access_token: "header.payload.signature",
            token_type: "Bearer",
            expires_in: 300,
            scope: "orders:read".to_owned(),
            refresh_token,
        };
        let body = serde_json::to_value(&token).unwrap();
        assert_matches_schema(&api, "TokenResponse", &body);
    }

    let error = ErrorResponse {
        error: "invalid_grant",
        error_description: "the code is invalid or expired".to_owned(),
    };
    assert_matches_schema(&api, "OAuthError", &serde_json::to_value(&error).unwrap());

    let scopes = portcullis_core::scope::ScopeSet::default();
    let tenant = portcullis_core::name::TenantName::parse("acme").unwrap();
    let valid = ValidKey {
        valid: true,
        tenant: Some(&tenant),
        key_id: portcullis_core::ids::KeyId::generate(),
        scopes: &scopes,
        environment: portcullis_core::key::Environment::Live,
        expires_at: None,
    };
    assert_matches_schema(&api, "ValidKey", &serde_json::to_value(&valid).unwrap());

    for (retry_after, limit) in [(None, None), (Some(1), Some("key"))] {
        let invalid = InvalidKey {
            valid: false,
            code: "rate_limited",
            retry_after,
            limit,
        };
        let body = serde_json::to_value(&invalid).unwrap();
        assert_matches_schema(&api, "InvalidKey", &body);
    }
}

/// Returns the names of the extension members that the server writes into
/// problem bodies, read from the `.with_extension("…"` calls in the source.
fn problem_extensions_in_source() -> BTreeSet<String> {
    let call = ".with_extension(\"";
    let mut names = BTreeSet::new();
    for (_, text) in crate::problem::reference_tests::source_files() {
        for (at, _) in text.match_indices(call) {
            let rest = &text[at + call.len()..];
            if let Some(end) = rest.find('"') {
                names.insert(rest[..end].to_owned());
            }
        }
    }
    names
}

#[test]
fn problem_schema_matches_written_members() {
    // RFC 9457 §3.1 members and the stable code, written for every problem.
    let mut written: BTreeSet<String> = ["type", "title", "status", "detail", "code"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let extensions = problem_extensions_in_source();
    assert!(extensions.contains("violated-policies"), "{extensions:?}");
    written.extend(extensions);

    for (name, api) in [("admin", document_json()), ("public", public_json())] {
        let (properties, required) = members(&api, "Problem");
        let properties: BTreeSet<String> = properties.into_iter().collect();
        assert_eq!(properties, written, "{name} document");
        assert_eq!(
            required,
            ["code", "detail", "status", "title", "type"],
            "{name}"
        );
    }
}

#[test]
fn rate_limited_problem_matches_schema() {
    use std::time::Duration;

    use crate::ratelimit::{Decision, LimitName, LimitStatus, Verdict};

    let status = |name: &str, retry_after: Option<Duration>| LimitStatus {
        name: LimitName::new(name).unwrap(),
        rate: "1/s".parse().unwrap(),
        remaining: 0,
        reset: Duration::from_secs(1),
        retry_after,
    };
    let decision = Decision {
        verdict: Verdict::Limited {
            limit: LimitName::new("key-2").unwrap(),
            retry_after: Duration::from_secs(2),
        },
        limits: vec![
            status("key", None),
            status("key-2", Some(Duration::from_secs(2))),
            status("route", Some(Duration::from_secs(1))),
        ],
        uses: None,
    };
    let body = crate::gateway::limits::problem_for(&decision)
        .unwrap()
        .body();
    assert_eq!(
        body["violated-policies"],
        serde_json::json!(["key-2", "route"])
    );
    for api in [document_json(), public_json()] {
        assert_matches_schema(&api, "Problem", &body);
        let property = &api["components"]["schemas"]["Problem"]["properties"]["violated-policies"];
        assert_eq!(property["type"], "array", "{property}");
        assert_eq!(property["items"]["type"], "string", "{property}");
    }
}
