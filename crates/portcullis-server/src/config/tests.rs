use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8443"
# plain_http = true
# trusted_proxies = ["10.0.0.0/8"]
# log_format = "json"
[server.tls]
cert = "/etc/portcullis/server.pem"
key = "/etc/portcullis/server-key.pem"

[[routes]]
path_prefix = "/api"
upstream = "http://127.0.0.1:9000"
strip_prefix = true
[routes.scopes]
GET = ["customers:read"]
POST = ["customers:write"]
"*" = ["customers:admin"]
"#;

/// A route without its required scopes table, for tests that add one.
const ROUTE_HEAD: &str = r#"
[[routes]]
path_prefix = "/api"
upstream = "http://127.0.0.1:9000"
"#;

/// A complete route, with `extra` route keys before its scopes table.
fn one_route(extra: &str) -> String {
    format!("{ROUTE_HEAD}{extra}[routes.scopes]\n\"*\" = []\n")
}

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn scopes(list: &str) -> ScopeSet {
    ScopeSet::parse_list(list).unwrap()
}

/// Parses `text` and returns the error message, failing if it parsed.
fn error_of(text: &str) -> String {
    match from_toml(text, &no_env()) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error.to_string(),
    }
}

fn assert_names(message: &str, setting: &str) {
    assert!(
        message.starts_with(&format!("{setting}: ")),
        "expected the error to name {setting}, got: {message}"
    );
}

#[test]
fn example_parses() {
    let config = from_toml(EXAMPLE, &no_env()).unwrap();

    assert_eq!(config.server.listen, DEFAULT_LISTEN);
    assert_eq!(
        config.server.tls,
        TlsMode::Files {
            cert: "/etc/portcullis/server.pem".into(),
            key: "/etc/portcullis/server-key.pem".into(),
        }
    );
    assert_eq!(config.server.log_format, LogFormat::Human);
    assert_eq!(config.server.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(config.server.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(config.server.max_connections_per_address, Some(1_000));
    assert!(config.server.trusted_proxies.is_empty());

    let [route] = config.routes.as_slice() else {
        panic!("expected one route, got {:?}", config.routes);
    };
    assert_eq!(route.path_prefix, "/api");
    assert_eq!(route.upstream.as_str(), "http://127.0.0.1:9000/");
    assert!(route.strip_prefix);
    assert_eq!(route.auth, vec![AuthMethod::ApiKey]);
    assert_eq!(route.timeout, DEFAULT_ROUTE_TIMEOUT);
    assert_eq!(route.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(
        route.scopes.required(&http::Method::GET),
        Some(&scopes("customers:read"))
    );
    assert_eq!(
        route.scopes.required(&http::Method::POST),
        Some(&scopes("customers:write"))
    );
    assert_eq!(
        route.scopes.required(&http::Method::DELETE),
        Some(&scopes("customers:admin"))
    );
}

#[test]
fn empty_file_gives_defaults() {
    let config = from_toml("", &no_env()).unwrap();
    assert_eq!(config.server.listen, DEFAULT_LISTEN);
    assert_eq!(config.server.tls, TlsMode::Development);
    assert_eq!(
        config.server.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT
    );
    assert_eq!(config.server.body_read_timeout, DEFAULT_BODY_READ_TIMEOUT);
    assert_eq!(config.server.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert!(config.routes.is_empty());
}

#[test]
fn all_server_settings_parse() {
    let config = from_toml(
        r#"
        [server]
        listen = "0.0.0.0:8080"
        plain_http = true
        trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
        log_format = "json"
        shutdown_grace = "2m"
        max_connections = 50
        header_read_timeout = "5s"
        body_read_timeout = "20s"
        idle_timeout = "2m"
        forwarded_header = "Forwarded"
        "#,
        &no_env(),
    )
    .unwrap();
    let server = config.server;
    assert_eq!(server.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(server.tls, TlsMode::PlainHttp);
    assert_eq!(
        server.trusted_proxies,
        vec![
            "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
            "192.168.1.7/32".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]
    );
    assert_eq!(server.log_format, LogFormat::Json);
    assert_eq!(server.shutdown_grace, Duration::from_secs(120));
    assert_eq!(server.max_connections, 50);
    assert_eq!(server.header_read_timeout, Duration::from_secs(5));
    assert_eq!(server.body_read_timeout, Duration::from_secs(20));
    assert_eq!(server.idle_timeout, Duration::from_secs(120));
    assert_eq!(
        server.forwarded_header,
        crate::client_ip::ForwardedHeader::Forwarded
    );
}

#[test]
fn route_without_scopes_rejected() {
    let error = from_toml(ROUTE_HEAD, &no_env()).unwrap_err().to_string();
    assert!(error.contains("routes[0].scopes: missing"), "{error}");
}

#[test]
fn star_with_no_scopes_requires_authentication_only() {
    let config = from_toml(
        &format!("{ROUTE_HEAD}[routes.scopes]\n\"*\" = []\n"),
        &no_env(),
    )
    .unwrap();
    let route = &config.routes[0];
    for method in [http::Method::GET, http::Method::DELETE, http::Method::PATCH] {
        assert_eq!(route.scopes.required(&method), Some(&ScopeSet::default()));
    }
}

#[test]
fn head_follows_get() {
    let config = from_toml(
        &format!("{ROUTE_HEAD}[routes.scopes]\nGET = [\"a:read\"]\n"),
        &no_env(),
    )
    .unwrap();
    let route = &config.routes[0];
    let get = route.scopes.required(&http::Method::GET);
    assert!(get.is_some());
    assert_eq!(route.scopes.required(&http::Method::HEAD), get);
    assert_eq!(route.scopes.allowed_methods(), vec!["GET", "HEAD"]);
}

#[test]
fn reserved_prefixes_rejected() {
    for prefix in [
        "/admin/v1",
        "/admin/v1/x",
        "/oauth",
        "/.well-known/jwks.json",
        "/healthz",
        "/v1/keys",
        "/openapi.json",
    ] {
        let config = format!(
            "[[routes]]\npath_prefix = \"{prefix}\"\nupstream = \"http://127.0.0.1:9\"\n[routes.scopes]\n\"*\" = []\n"
        );
        let error = from_toml(&config, &no_env()).unwrap_err().to_string();
        assert!(error.contains("routes[0].path_prefix"), "{prefix}: {error}");
    }
    for prefix in ["/admin", "/", "/v1", "/oauthx"] {
        let config = format!(
            "[[routes]]\npath_prefix = \"{prefix}\"\nupstream = \"http://127.0.0.1:9\"\n[routes.scopes]\n\"*\" = []\n"
        );
        assert!(from_toml(&config, &no_env()).is_ok(), "{prefix}");
    }
}

#[test]
fn unlisted_method_not_allowed_without_star() {
    let config = from_toml(
        &format!("{ROUTE_HEAD}timeout = \"5s\"\nmax_body_bytes = 1024\n[routes.scopes]\nget = [\"a:read\"]\n"),
        &no_env(),
    )
    .unwrap();
    let route = &config.routes[0];
    assert_eq!(
        route.scopes.required(&http::Method::GET),
        Some(&scopes("a:read"))
    );
    assert_eq!(route.scopes.required(&http::Method::POST), None);
    assert_eq!(route.timeout, Duration::from_secs(5));
    assert_eq!(route.max_body_bytes, 1024);
}

#[test]
fn lower_case_request_method_gets_upper_case_scopes() {
    let config = from_toml(
        &format!("{ROUTE_HEAD}[routes.scopes]\nGET = [\"a:read\"]\n\"*\" = []\n"),
        &no_env(),
    )
    .unwrap();
    let lower_get = http::Method::from_bytes(b"get").unwrap();
    assert_eq!(
        config.routes[0].scopes.required(&lower_get),
        Some(&scopes("a:read"))
    );
}

#[test]
fn env_overrides_scalar_strings() {
    let config = from_toml(
        EXAMPLE,
        &env(&[
            ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:9443"),
            ("PORTCULLIS_ROUTES__0__UPSTREAM", "http://127.0.0.1:9001"),
            ("PORTCULLIS_ROUTES__0__STRIP_PREFIX", "false"),
            ("PORTCULLIS_SERVER__SHUTDOWN_GRACE", "5s"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:9443".parse().unwrap());
    assert_eq!(config.routes[0].upstream.as_str(), "http://127.0.0.1:9001/");
    assert!(!config.routes[0].strip_prefix);
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(5));
}

#[test]
fn connections_per_address_parsed() {
    let cases: [(&str, Option<usize>); 5] = [
        ("max_connections = 50", Some(5)),
        ("max_connections = 5", Some(1)),
        ("max_connections_per_address = 20", Some(20)),
        ("max_connections_per_address = 0", None),
        ("max_connections_per_address = \"Off\"", None),
    ];
    for (line, expected) in cases {
        let config = from_toml(&format!("[server]\n{line}\n"), &no_env()).unwrap();
        assert_eq!(
            config.server.max_connections_per_address, expected,
            "{line}"
        );
    }
    let config = from_toml(
        "",
        &env(&[("PORTCULLIS_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "off")]),
    )
    .unwrap();
    assert_eq!(config.server.max_connections_per_address, None);
}

#[test]
fn bad_connections_per_address_named() {
    for line in [
        "max_connections_per_address = -1",
        "max_connections_per_address = \"none\"",
        "max_connections = 10\nmax_connections_per_address = 11",
    ] {
        let error = error_of(&format!("[server]\n{line}\n"));
        assert_names(&error, "server.max_connections_per_address");
    }
}

#[test]
fn env_overrides_with_toml_values() {
    let config = from_toml(
        "",
        &env(&[
            ("PORTCULLIS_SERVER__TRUSTED_PROXIES", r#"["10.0.0.0/8"]"#),
            ("PORTCULLIS_SERVER__MAX_CONNECTIONS", "12"),
            ("PORTCULLIS_SERVER__PLAIN_HTTP", "true"),
            ("PORTCULLIS_SERVER__LISTEN", "0.0.0.0:8080"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.server.trusted_proxies,
        vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(config.server.max_connections, 12);
    assert_eq!(config.server.tls, TlsMode::PlainHttp);
}

#[test]
fn env_creates_routes_in_index_order() {
    let mut pairs = Vec::new();
    let names: Vec<(String, String, String, String, String)> = (0..12)
        .map(|i| {
            (
                format!("PORTCULLIS_ROUTES__{i}__PATH_PREFIX"),
                format!("/r{i}"),
                format!("PORTCULLIS_ROUTES__{i}__UPSTREAM"),
                format!("http://127.0.0.1:{}", 9000 + i),
                format!("PORTCULLIS_ROUTES__{i}__SCOPES__GET"),
            )
        })
        .collect();
    for (prefix_name, prefix, upstream_name, upstream, scopes_name) in &names {
        pairs.push((prefix_name.as_str(), prefix.as_str()));
        pairs.push((upstream_name.as_str(), upstream.as_str()));
        pairs.push((scopes_name.as_str(), r#"["a:read"]"#));
    }
    let config = from_toml("", &env(&pairs)).unwrap();
    let prefixes: Vec<&str> = config
        .routes
        .iter()
        .map(|r| r.path_prefix.as_str())
        .collect();
    let expected: Vec<String> = (0..12).map(|i| format!("/r{i}")).collect();
    assert_eq!(prefixes, expected);
}

#[test]
fn env_overrides_nested_tables_and_indexes() {
    let config = from_toml(
        EXAMPLE,
        &env(&[
            ("PORTCULLIS_SERVER__TLS__CERT", "/other/cert.pem"),
            ("PORTCULLIS_ROUTES__0__SCOPES__GET", r#"["orders:read"]"#),
            ("PORTCULLIS_ROUTES__0__AUTH__0", "api_key"),
            ("PORTCULLIS_ROUTES__1__PATH_PREFIX", "/orders"),
            (
                "PORTCULLIS_ROUTES__1__UPSTREAM",
                "https://orders.internal:8443/base",
            ),
            ("PORTCULLIS_ROUTES__1__SCOPES__GET", r#"["orders:read"]"#),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.server.tls,
        TlsMode::Files {
            cert: "/other/cert.pem".into(),
            key: "/etc/portcullis/server-key.pem".into(),
        }
    );
    assert_eq!(
        config.routes[0].scopes.required(&http::Method::GET),
        Some(&scopes("orders:read")),
        "the variable replaces the file's GET key instead of adding a second one"
    );
    assert_eq!(config.routes[1].path_prefix, "/orders");
    assert_eq!(config.routes[1].upstream.path(), "/base");
}

#[test]
fn env_without_double_underscore_ignored() {
    let config = from_toml(
        "",
        &env(&[
            ("PORTCULLIS_DATA_DIR", "/var/lib/portcullis"),
            ("PORTCULLIS_MASTER_KEY", "not a setting"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(config, from_toml("", &no_env()).unwrap());
}

#[test]
fn env_errors_name_variable() {
    let cases = [
        ("PORTCULLIS_ROUTES__3__UPSTREAM", "index 3 is past the end"),
        ("PORTCULLIS_SERVER____LISTEN", "empty path segment"),
        (
            "PORTCULLIS_SERVER__LISTEN__PORT",
            "so it has no settings below it",
        ),
    ];
    for (variable, expected) in cases {
        let error = from_toml(EXAMPLE, &env(&[(variable, "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("environment variable {variable}: ")),
            "{error}"
        );
        assert!(error.contains(expected), "{error}");
    }
}

#[test]
fn env_unknown_setting_names_it() {
    let error = from_toml("", &env(&[("PORTCULLIS_SERVER__LISEN", "127.0.0.1:1")]))
        .unwrap_err()
        .to_string();
    assert_names(&error, "server");
    assert!(error.contains("lisen"), "{error}");
}

#[test]
fn unknown_keys_named() {
    let error = error_of("[server]\nlisen = \"127.0.0.1:1\"\n");
    assert_names(&error, "server");
    assert!(error.contains("unknown field `lisen`"), "{error}");

    let error = error_of(&one_route("strip = true\n"));
    assert_names(&error, "routes[0]");
    assert!(error.contains("`strip`"), "{error}");

    let error = error_of("[server.tls]\ncert = \"a\"\nkye = \"b\"\n");
    assert_names(&error, "server.tls");
    assert!(error.contains("`kye`"), "{error}");

    let error = error_of("[sever]\n");
    assert!(error.contains("unknown field `sever`"), "{error}");
}

#[test]
fn wrong_type_names_setting() {
    let error = error_of("[server]\nmax_connections = \"many\"\n");
    assert_names(&error, "server.max_connections");

    let error = error_of(&format!("{}[[routes]]\npath_prefix = 5\n", one_route("")));
    assert_names(&error, "routes[1].path_prefix");
}

#[test]
fn bad_listen_address_named() {
    for listen in ["localhost:8443", "127.0.0.1", "127.0.0.1:99999", ""] {
        let error = error_of(&format!("[server]\nlisten = {listen:?}\n"));
        assert_names(&error, "server.listen");
    }
}

#[test]
fn bad_upstreams_named() {
    let cases = [
        ("127.0.0.1:9000", "not a valid URL"),
        ("localhost:9000", "scheme \"localhost\""),
        ("ftp://127.0.0.1/", "scheme \"ftp\""),
        ("http://127.0.0.1:9000/?a=b", "query"),
        ("http://127.0.0.1:9000/#top", "fragment"),
        ("http://user:secret@127.0.0.1:9000", "user name or password"),
        ("unix:/run/app.sock", "scheme \"unix\""),
    ];
    for (upstream, expected) in cases {
        let text = format!("[[routes]]\npath_prefix = \"/a\"\nupstream = {upstream:?}\n");
        let error = error_of(&text);
        assert_names(&error, "routes[0].upstream");
        assert!(error.contains(expected), "{upstream}: {error}");
    }
}

#[test]
fn missing_route_fields_named() {
    let error = error_of("[[routes]]\nupstream = \"http://127.0.0.1:1\"\n");
    assert_names(&error, "routes[0].path_prefix");
    let error = error_of("[[routes]]\npath_prefix = \"/a\"\n");
    assert_names(&error, "routes[0].upstream");
}

#[test]
fn bad_path_prefixes_named() {
    for prefix in [
        "api",
        "/api/",
        "/api//v1",
        "/api/./v1",
        "/api/..",
        "/a%2fb",
        "/a\\b",
        "/a?b",
        "/a#b",
        "/a;b",
        "/a b",
        "/\u{0430}pi",
        "",
    ] {
        let text =
            format!("[[routes]]\npath_prefix = {prefix:?}\nupstream = \"http://127.0.0.1:1\"\n");
        let error = error_of(&text);
        assert_names(&error, "routes[0].path_prefix");
    }
    for prefix in ["/", "/api", "/api/v1", "/a-b_c.d~e"] {
        let text = format!(
            "[[routes]]\npath_prefix = {prefix:?}\nupstream = \"http://127.0.0.1:1\"\n[routes.scopes]\n\"*\" = []\n"
        );
        assert!(from_toml(&text, &no_env()).is_ok(), "{prefix}");
    }
}

#[test]
fn bad_method_key_named() {
    let error = error_of(&format!(
        "{ROUTE_HEAD}[routes.scopes]\n\"GET POST\" = [\"a:read\"]\n"
    ));
    assert_names(&error, "routes[0].scopes.\"GET POST\"");
    assert!(error.contains("not an HTTP method"), "{error}");

    let error = error_of(&format!(
        "{ROUTE_HEAD}[routes.scopes]\nGET = [\"a:read\"]\nget = [\"a:write\"]\n"
    ));
    assert!(error.contains("listed twice"), "{error}");
}

#[test]
fn look_alike_scope_named() {
    let error = error_of(&format!(
        "{ROUTE_HEAD}[routes.scopes]\nGET = [\"\u{043e}rders:read\"]\n"
    ));
    assert_names(&error, "routes[0].scopes.GET[0]");
    assert!(error.contains("U+043E"), "{error}");
}

#[test]
fn wildcard_scope_rejected_on_route() {
    let error = error_of(&format!("{ROUTE_HEAD}[routes.scopes]\nGET = [\"a:*\"]\n"));
    assert_names(&error, "routes[0].scopes.GET[0]");
}

#[test]
fn empty_scopes_table_rejected() {
    let error = error_of(&format!("{ROUTE_HEAD}[routes.scopes]\n"));
    assert_names(&error, "routes[0].scopes");
}

#[test]
fn unknown_auth_method_named() {
    let error = error_of(&one_route("auth = [\"api_key\", \"oidc\"]\n"));
    assert_names(&error, "routes[0].auth[1]");
    let error = error_of(&one_route("auth = [\"api_key\", \"api_key\"]\n"));
    assert_names(&error, "routes[0].auth[1]");
    let error = error_of(&one_route("auth = [\"api_key\", \"jwt\"]\n"));
    assert_names(&error, "routes[0].audience");
    let config = from_toml(
        &one_route("auth = [\"api_key\", \"jwt\"]\naudience = \"https://api.example.com\"\n"),
        &no_env(),
    )
    .unwrap();
    assert_eq!(
        config.routes[0].audience.as_deref(),
        Some("https://api.example.com")
    );
    let error = error_of(&one_route("auth = []\n"));
    assert_names(&error, "routes[0].auth");
}

#[test]
fn mtls_route_needs_client_certificates() {
    let error = error_of(&one_route(
        "auth = [\"jwt\", \"mtls\"]\naudience = \"https://api.example.com\"\n",
    ));
    assert_names(&error, "routes[0].auth[1]");
    assert!(error.contains("server.client_certificates"), "{error}");

    for server in [
        "[server]\nclient_certificates = \"optional\"\n",
        "[server]\nclient_certificates = \"required\"\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nforwarded_client_certificate = \"envoy\"\n",
    ] {
        let text = format!("{server}{}", one_route("auth = [\"mtls\"]\n"));
        let config = from_toml(&text, &no_env()).unwrap();
        assert_eq!(config.routes[0].auth, vec![AuthMethod::Mtls], "{server}");
    }
}

#[test]
fn route_client_certificate_checked() {
    let jwt = "auth = [\"jwt\"]\naudience = \"https://api.example.com\"\n";
    let optional = "[server]\nclient_certificates = \"optional\"\n";

    let config = from_toml(&format!("{optional}{}", one_route(jwt)), &no_env()).unwrap();
    assert!(!config.routes[0].client_certificate_required);

    let text = format!(
        "{optional}{}",
        one_route(&format!("{jwt}client_certificate = \"required\"\n"))
    );
    let config = from_toml(&text, &no_env()).unwrap();
    assert!(config.routes[0].client_certificate_required);

    let error = error_of(&one_route(&format!(
        "{jwt}client_certificate = \"required\"\n"
    )));
    assert_names(&error, "routes[0].client_certificate");
    assert!(error.contains("server.client_certificates"), "{error}");

    let text = format!(
        "{optional}{}",
        one_route(&format!("{jwt}client_certificate = \"yes\"\n"))
    );
    assert_names(&error_of(&text), "routes[0].client_certificate");

    let keys = "auth = [\"api_key\"]\nclient_certificate = \"required\"\n";
    let error = error_of(&format!("{optional}{}", one_route(keys)));
    assert_names(&error, "routes[0].client_certificate");
    assert!(error.contains("api_key"), "{error}");
}

#[test]
fn duplicate_prefix_named() {
    let error = error_of(&format!("{}{}", one_route(""), one_route("")));
    assert_names(&error, "routes[1].path_prefix");
    assert!(error.contains("routes[0]"), "{error}");
}

#[test]
fn plain_http_on_any_address_needs_trusted_proxy() {
    let error = error_of("[server]\nlisten = \"0.0.0.0:8080\"\nplain_http = true\n");
    assert_names(&error, "server.plain_http");

    for allowed in [
        "[server]\nlisten = \"127.0.0.1:8080\"\nplain_http = true\n",
        "[server]\nlisten = \"[::1]:8080\"\nplain_http = true\n",
        "[server]\nlisten = \"0.0.0.0:8080\"\nplain_http = true\ntrusted_proxies = [\"10.1.2.3\"]\n",
    ] {
        let config = from_toml(allowed, &no_env()).unwrap();
        assert_eq!(config.server.tls, TlsMode::PlainHttp, "{allowed}");
    }
}

#[test]
fn plain_http_with_tls_rejected() {
    let error =
        error_of("[server]\nplain_http = true\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
    assert_names(&error, "server.plain_http");
}

#[test]
fn cert_without_key_named() {
    let error = error_of("[server.tls]\ncert = \"c.pem\"\n");
    assert_names(&error, "server.tls.key");
    let error = error_of("[server.tls]\nkey = \"k.pem\"\n");
    assert_names(&error, "server.tls.cert");
}

#[test]
fn bad_proxies_and_durations_named() {
    let error = error_of("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.5/8\"]\n");
    assert_names(&error, "server.trusted_proxies[1]");
    let error = error_of("[server]\ntrusted_proxies = [\"proxy.internal\"]\n");
    assert_names(&error, "server.trusted_proxies[0]");
    let error = error_of("[server]\nshutdown_grace = \"30\"\n");
    assert_names(&error, "server.shutdown_grace");
    let error = error_of(&one_route("timeout = \"0s\"\n"));
    assert_names(&error, "routes[0].timeout");
    let error = error_of("[server]\nbody_read_timeout = \"0s\"\n");
    assert_names(&error, "server.body_read_timeout");
    let error = error_of("[server]\nidle_timeout = \"soon\"\n");
    assert_names(&error, "server.idle_timeout");
    let error = error_of("[server]\nforwarded_header = \"x-real-ip\"\n");
    assert_names(&error, "server.forwarded_header");
    let error = error_of("[server]\nidle_timeout = \"100d\"\n");
    assert_names(&error, "server.idle_timeout");
    let error = error_of("[server]\nheader_read_timeout = \"30d\"\n");
    assert_names(&error, "server.header_read_timeout");
    let error = error_of("[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\n");
    assert_names(&error, "server.trusted_proxies[0]");
    let error = error_of("[server]\ntrusted_proxies = [\"::/0\"]\n");
    assert_names(&error, "server.trusted_proxies[0]");
    let error = error_of("[server]\nmax_connections = 0\n");
    assert_names(&error, "server.max_connections");
}

#[test]
fn load_reads_default_file_and_explicit_path() {
    let dir = tempfile::tempdir().unwrap();

    let config = load(None, dir.path(), &no_env()).unwrap();
    assert_eq!(
        config.server.tls,
        TlsMode::Development,
        "no file means defaults"
    );

    let missing = dir.path().join("missing.toml");
    let error = load(Some(&missing), dir.path(), &no_env()).unwrap_err();
    assert!(matches!(error, ConfigError::NotFound { .. }), "{error}");

    std::fs::write(
        dir.path().join(CONFIG_FILE_NAME),
        "[server]\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let config = load(None, dir.path(), &no_env()).unwrap();
    assert_eq!(config.server.listen.port(), 1);

    let explicit = dir.path().join("other.toml");
    std::fs::write(&explicit, "[server]\nlisten = \"127.0.0.1:2\"\n").unwrap();
    let config = load(Some(&explicit), Path::new("/nonexistent"), &no_env()).unwrap();
    assert_eq!(config.server.listen.port(), 2);
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_FILE_NAME);
    std::fs::write(&path, "[server]\nlisten = \n").unwrap();
    let error = load(None, dir.path(), &no_env()).unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn client_certificates_default_off() {
    let config = from_toml("", &no_env()).unwrap();
    assert_eq!(
        config.server.client_certificates,
        ClientCertificateMode::Off
    );
    assert!(config.server.partner_crls.is_empty());
}

#[test]
fn client_certificate_modes_parse() {
    for (text, expected) in [
        ("off", ClientCertificateMode::Off),
        ("optional", ClientCertificateMode::Optional),
        ("required", ClientCertificateMode::Required),
    ] {
        let toml = format!("[server]\nclient_certificates = \"{text}\"\n");
        let config = from_toml(&toml, &no_env()).unwrap();
        assert_eq!(config.server.client_certificates, expected, "{text}");
    }

    let config = from_toml(
        "[server]\nclient_certificates = \"required\"\npartner_crls = [\"a.pem\", \"b.pem\"]\n",
        &no_env(),
    )
    .unwrap();
    assert_eq!(
        config.server.partner_crls,
        vec![PathBuf::from("a.pem"), PathBuf::from("b.pem")]
    );
}

#[test]
fn client_certificates_invalid_rejected() {
    let error = error_of("[server]\nclient_certificates = \"yes\"\n");
    assert_names(&error, "server.client_certificates");

    let error = error_of("[server]\nplain_http = true\nclient_certificates = \"optional\"\n");
    assert_names(&error, "server.client_certificates");

    let error = error_of("[server]\npartner_crls = [\"a.pem\"]\n");
    assert_names(&error, "server.partner_crls");
}

#[test]
fn forwarded_certificate_default_off() {
    let config = from_toml("", &no_env()).unwrap();
    assert_eq!(config.server.forwarded_client_certificate, None);
}

#[test]
fn forwarded_certificate_formats_parse() {
    for (text, format, header) in [
        (
            "envoy",
            ForwardedCertificateFormat::Envoy,
            "x-forwarded-client-cert",
        ),
        (
            "nginx",
            ForwardedCertificateFormat::Nginx,
            "x-ssl-client-cert",
        ),
    ] {
        let toml = format!(
            "[server]\ntrusted_proxies = [\"10.0.0.1\"]\nforwarded_client_certificate = \"{text}\"\n"
        );
        let forwarded = from_toml(&toml, &no_env())
            .unwrap()
            .server
            .forwarded_client_certificate
            .unwrap();
        assert_eq!(forwarded.format, format, "{text}");
        assert_eq!(forwarded.header, header, "{text}");
    }
}

#[test]
fn forwarded_certificate_header_from_env() {
    let config = from_toml(
        "[server]\ntrusted_proxies = [\"10.0.0.1\"]\n",
        &env(&[
            ("PORTCULLIS_SERVER__FORWARDED_CLIENT_CERTIFICATE", "nginx"),
            (
                "PORTCULLIS_SERVER__FORWARDED_CLIENT_CERTIFICATE_HEADER",
                "X-Client-Cert",
            ),
        ]),
    )
    .unwrap();
    let forwarded = config.server.forwarded_client_certificate.unwrap();
    assert_eq!(forwarded.format, ForwardedCertificateFormat::Nginx);
    assert_eq!(forwarded.header, "x-client-cert");
}

#[test]
fn forwarded_certificate_invalid_rejected() {
    let error = error_of("[server]\nforwarded_client_certificate = \"envoy\"\n");
    assert_names(&error, "server.forwarded_client_certificate");
    assert!(error.contains("server.trusted_proxies"), "{error}");

    let error = error_of(
        "[server]\ntrusted_proxies = [\"10.0.0.1\"]\nforwarded_client_certificate = \"haproxy\"\n",
    );
    assert_names(&error, "server.forwarded_client_certificate");

    let error = error_of("[server]\nforwarded_client_certificate_header = \"x-cert\"\n");
    assert_names(&error, "server.forwarded_client_certificate_header");

    let error = error_of(
        "[server]\ntrusted_proxies = [\"10.0.0.1\"]\nforwarded_client_certificate = \"envoy\"\n\
         forwarded_client_certificate_header = \"x cert\"\n",
    );
    assert_names(&error, "server.forwarded_client_certificate_header");
}

#[test]
fn partner_crls_allowed_with_forwarding() {
    let config = from_toml(
        "[server]\ntrusted_proxies = [\"10.0.0.1\"]\nforwarded_client_certificate = \"envoy\"\n\
         partner_crls = [\"a.pem\"]\n",
        &no_env(),
    )
    .unwrap();
    assert_eq!(config.server.partner_crls, vec![PathBuf::from("a.pem")]);
}

const LIMITS: &str = r#"
[limits]
redis_url = "redis://:secret-password@127.0.0.1:6390/2"
redis_failure = "deny"
tenant = "1000/s burst 2000"
[limits.plans.basic]
rate = "10/s burst 20"
hourly = "5000/h"
"#;

#[test]
fn limits_table_parses() {
    let text = format!("{LIMITS}{}", one_route("rate_limit = \"50/s\"\n"));
    let config = from_toml(&text, &no_env()).unwrap();
    let limits = &config.limits;

    let url = limits.redis_url.as_ref().unwrap();
    assert_eq!(url.expose(), "redis://:secret-password@127.0.0.1:6390/2");
    assert_eq!(url.redacted(), "redis://127.0.0.1:6390");
    assert!(!format!("{config:?}").contains("secret-password"));
    assert_eq!(limits.redis_failure, crate::ratelimit::FailurePolicy::Deny);
    assert_eq!(limits.tenant, Some("1000/s burst 2000".parse().unwrap()));

    let plan = &limits.plans["basic"];
    let names: Vec<&str> = plan.limits.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["hourly", "rate"]);
    assert_eq!(plan.limits[0].1, "5000/h".parse().unwrap());
    assert_eq!(plan.limits[1].1, "10/s burst 20".parse().unwrap());

    assert_eq!(config.routes[0].rate_limit, Some("50/s".parse().unwrap()));
}

#[test]
fn limits_default_to_memory() {
    let config = from_toml(&one_route(""), &no_env()).unwrap();
    assert_eq!(config.limits, LimitsConfig::default());
    assert_eq!(
        config.limits.redis_failure,
        crate::ratelimit::FailurePolicy::Local
    );
    assert_eq!(config.routes[0].rate_limit, None);
}

#[test]
fn redis_url_from_variable() {
    let config = from_toml(
        "",
        &env(&[("PORTCULLIS_REDIS_URL", "redis://127.0.0.1:6391")]),
    )
    .unwrap();
    let url = config.limits.redis_url.unwrap();
    assert_eq!(url.redacted(), "redis://127.0.0.1:6391");

    let config = from_toml(
        LIMITS,
        &env(&[
            ("PORTCULLIS_REDIS_URL", "redis://127.0.0.1:6391"),
            ("PORTCULLIS_LIMITS__REDIS_URL", "redis://127.0.0.1:6392"),
        ]),
    )
    .unwrap();
    let url = config.limits.redis_url.unwrap();
    assert_eq!(url.redacted(), "redis://127.0.0.1:6392");
    assert_eq!(config.limits.plans.len(), 1);
}

#[test]
fn limits_invalid_values_rejected() {
    let cases = [
        (
            "[limits]\nredis_url = \"http://127.0.0.1:6379\"\n",
            "limits.redis_url",
        ),
        ("[limits]\nredis_url = \"not a url\"\n", "limits.redis_url"),
        (
            "[limits]\nredis_failure = \"open\"\n",
            "limits.redis_failure",
        ),
        ("[limits]\ntenant = \"0/s\"\n", "limits.tenant"),
        ("[limits]\ntenant = \"10/week\"\n", "limits.tenant"),
        (
            "[limits.plans.basic]\nkey = \"10/s\"\n",
            "limits.plans.basic.key",
        ),
        (
            "[limits.plans.basic]\nkey-2 = \"10/s\"\n",
            "limits.plans.basic.key-2",
        ),
        (
            "[limits.plans.basic]\nclient-10 = \"10/s\"\n",
            "limits.plans.basic.client-10",
        ),
        (
            "[limits.plans.basic]\nrate = \"fast\"\n",
            "limits.plans.basic.rate",
        ),
        (
            "[limits.plans.basic]\nRate = \"10/s\"\n",
            "limits.plans.basic.Rate",
        ),
        (
            "[limits.plans.Basic]\nrate = \"10/s\"\n",
            "limits.plans.Basic",
        ),
        ("[limits.plans.basic]\n", "limits.plans.basic"),
        ("[limits]\nfallback = \"deny\"\n", "limits"),
        (
            "[limits.plans.basic]\nrate = 10\n",
            "limits.plans.basic.rate",
        ),
    ];
    for (text, setting) in cases {
        let error = error_of(text);
        assert_names(&error, setting);
    }

    let error = error_of(&one_route("rate_limit = \"10 per second\"\n"));
    assert_names(&error, "routes[0].rate_limit");
    assert!(error.contains("COUNT/UNIT"), "{error}");
}

#[test]
fn plan_limit_count_bounded() {
    let mut text = String::from("[limits.plans.big]\n");
    for index in 0..=MAX_PLAN_LIMITS {
        text.push_str(&format!("l{index} = \"10/s\"\n"));
    }
    let error = error_of(&text);
    assert_names(&error, "limits.plans.big");
    assert!(error.contains("at most 8"), "{error}");
}

#[test]
fn redis_timeout_parsed_and_bounded() {
    let config = from_toml("", &no_env()).unwrap();
    assert_eq!(config.limits.redis_timeout, Duration::from_millis(250));

    let config = from_toml("[limits]\nredis_timeout_ms = 40\n", &no_env()).unwrap();
    assert_eq!(config.limits.redis_timeout, Duration::from_millis(40));

    let config = from_toml("", &env(&[("PORTCULLIS_LIMITS__REDIS_TIMEOUT_MS", "1200")])).unwrap();
    assert_eq!(config.limits.redis_timeout, Duration::from_millis(1200));

    for bound in ["10", "5000"] {
        let text = format!("[limits]\nredis_timeout_ms = {bound}\n");
        assert!(from_toml(&text, &no_env()).is_ok(), "{bound} ms rejected");
    }
    for outside in ["0", "9", "5001", "60000"] {
        let error = error_of(&format!("[limits]\nredis_timeout_ms = {outside}\n"));
        assert_names(&error, "limits.redis_timeout_ms");
        assert!(error.contains("from 10 to 5000 milliseconds"), "{error}");
        assert!(error.contains(outside), "{error}");
    }
    let error = error_of("[limits]\nredis_timeout_ms = \"fast\"\n");
    assert_names(&error, "limits.redis_timeout_ms");
}

#[test]
fn redis_url_error_hides_password() {
    let error = error_of("[limits]\nredis_url = \"http://user:hunter2@127.0.0.1\"\n");
    assert_names(&error, "limits.redis_url");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn leaks_table_parses() {
    let text = r#"
[leaks]
action = "flag"
public_keys = [
    { id = "file-key", pem_file = "/etc/portcullis/github.pem" },
    { id = "inline-key", pem = "-----BEGIN PUBLIC KEY-----" },
]
"#;
    let config = from_toml(text, &no_env()).unwrap();
    let leaks = &config.leaks;
    assert_eq!(leaks.action, LeakAction::Flag);
    assert_eq!(leaks.public_keys.len(), 2);
    assert_eq!(leaks.public_keys[0].id, "file-key");
    assert_eq!(
        leaks.public_keys[0].pem,
        PemSource::File(PathBuf::from("/etc/portcullis/github.pem"))
    );
    assert_eq!(
        leaks.public_keys[1].pem,
        PemSource::Inline("-----BEGIN PUBLIC KEY-----".to_owned())
    );
}

#[test]
fn leaks_default_to_revoke_without_keys() {
    let config = from_toml(&one_route(""), &no_env()).unwrap();
    assert_eq!(config.leaks, LeaksConfig::default());
    assert_eq!(config.leaks.action, LeakAction::Revoke);
}

#[test]
fn leaks_invalid_values_rejected() {
    let cases = [
        ("[leaks]\naction = \"ignore\"\n", "leaks.action"),
        (
            "[leaks]\npublic_keys = [{ id = \"\", pem = \"x\" }]\n",
            "leaks.public_keys[0].id",
        ),
        (
            "[leaks]\npublic_keys = [{ id = \"k\" }]\n",
            "leaks.public_keys[0]",
        ),
        (
            "[leaks]\npublic_keys = [{ id = \"k\", pem = \"x\", pem_file = \"/k.pem\" }]\n",
            "leaks.public_keys[0]",
        ),
        (
            "[leaks]\npublic_keys = [{ id = \"k\", pem = \"x\" }, { id = \"k\", pem = \"y\" }]\n",
            "leaks.public_keys[1].id",
        ),
        ("[leaks]\nkeys = []\n", "leaks"),
    ];
    for (text, setting) in cases {
        let error = error_of(text);
        assert_names(&error, setting);
    }
}

#[test]
fn brute_force_defaults_and_overrides() {
    let defaults = from_toml("", &no_env()).unwrap();
    assert_eq!(
        defaults.limits.brute_force,
        crate::ratelimit::brute_force::BruteForcePolicy::default()
    );

    let text = r#"
[limits.brute_force.client_ip]
slow_after = 4
block_after = 8
window = "10m"
first_block = "2m"
max_block = "2h"
delay_step_ms = 100
max_delay_ms = 1000
"#;
    let config = from_toml(text, &no_env()).unwrap();
    let client_ip = config.limits.brute_force.client_ip;
    assert_eq!(client_ip.slow_after, 4);
    assert_eq!(client_ip.block_after, 8);
    assert_eq!(client_ip.window, Duration::from_secs(600));
    assert_eq!(client_ip.first_block, Duration::from_secs(120));
    assert_eq!(client_ip.max_block, Duration::from_secs(7200));
    assert_eq!(client_ip.delay_step, Duration::from_millis(100));
    assert_eq!(client_ip.max_delay, Duration::from_millis(1000));
    assert_eq!(
        config.limits.brute_force.identity, defaults.limits.brute_force.identity,
        "the table left out keeps its defaults"
    );
}

#[test]
fn bad_brute_force_thresholds_named() {
    let cases = [
        ("identity", "block_after = 0", "block_after"),
        ("identity", "slow_after = 10001", "slow_after"),
        (
            "client_ip",
            "slow_after = 30\nblock_after = 20",
            "slow_after",
        ),
        ("client_ip", "window = \"2d\"", "window"),
        ("client_ip", "max_block = \"25h\"", "max_block"),
        (
            "client_ip",
            "first_block = \"2h\"\nmax_block = \"1h\"",
            "first_block",
        ),
        ("identity", "max_delay_ms = 10001", "max_delay_ms"),
        ("identity", "delay_step_ms = 3000", "delay_step_ms"),
        ("identity", "window = \"soon\"", "window"),
    ];
    for (table, line, field) in cases {
        let error = error_of(&format!("[limits.brute_force.{table}]\n{line}\n"));
        assert_names(&error, &format!("limits.brute_force.{table}.{field}"));
    }
    let unknown = from_toml("[limits.brute_force]\nblock_after = 5\n", &no_env());
    assert!(unknown.is_err(), "an unknown key is rejected");
}

const WEBHOOK_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

fn secret_env() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "PORTCULLIS_ALERT_WEBHOOK_SECRET".to_owned(),
        WEBHOOK_SECRET.to_owned(),
    )])
}

#[test]
fn alerts_default_without_table() {
    let config = from_toml("", &no_env()).unwrap();
    assert_eq!(config.alerts, AlertsConfig::default());
    assert!(config.alerts.enabled);
    assert_eq!(config.alerts.retention, DEFAULT_ALERT_RETENTION);
    assert!(config.alerts.webhooks.is_empty());
}

#[test]
fn alerts_thresholds_parse() {
    let text = r#"
[alerts]
retention = "30d"
[alerts.rate_spike]
window = "10s"
factor = 4
floor = 30
learning_windows = 3
cooldown = "1m"
[alerts.failures]
window = "1m"
per_credential = 5
per_source = 7
[alerts.revoked_key]
window = "2m"
[alerts.new_network]
ipv4_prefix = 16
ipv6_prefix = 64
learning_period = "1s"
max_networks = 5
[alerts.delivery]
max_attempts = 3
first_retry = "1s"
max_retry = "2s"
timeout = "5s"
"#;
    let alerts = from_toml(text, &no_env()).unwrap().alerts;
    assert_eq!(alerts.retention, Duration::from_secs(30 * 24 * 60 * 60));
    assert_eq!(alerts.rate_spike.window, Duration::from_secs(10));
    assert_eq!(alerts.rate_spike.factor, 4);
    assert_eq!(alerts.rate_spike.floor, 30);
    assert_eq!(alerts.rate_spike.learning_windows, 3);
    assert_eq!(alerts.rate_spike.cooldown, Duration::from_secs(60));
    assert_eq!(alerts.failures.window, Duration::from_secs(60));
    assert_eq!(alerts.failures.per_credential, 5);
    assert_eq!(alerts.failures.per_source, 7);
    assert_eq!(alerts.revoked_key.window, Duration::from_secs(120));
    assert_eq!(alerts.new_network.ipv4_prefix, 16);
    assert_eq!(alerts.new_network.ipv6_prefix, 64);
    assert_eq!(alerts.new_network.learning_period, Duration::from_secs(1));
    assert_eq!(alerts.new_network.max_networks, 5);
    assert_eq!(alerts.delivery.max_attempts, 3);
    assert_eq!(alerts.delivery.first_retry, Duration::from_secs(1));
    assert_eq!(alerts.delivery.max_retry, Duration::from_secs(2));
    assert_eq!(alerts.delivery.timeout, Duration::from_secs(5));
}

#[test]
fn webhook_secret_read_from_env() {
    let text = r#"
[[alerts.webhooks]]
url = "https://hooks.example.com/portcullis?token=abc"
secret_env = "PORTCULLIS_ALERT_WEBHOOK_SECRET"
"#;
    let alerts = from_toml(text, &secret_env()).unwrap().alerts;
    let webhook = &alerts.webhooks[0];
    assert_eq!(
        webhook.url.as_str(),
        "https://hooks.example.com/portcullis?token=abc"
    );
    assert_eq!(webhook.id.len(), 16);
    let secret = webhook.secret.as_ref().unwrap();
    assert_eq!(secret.expose(), WEBHOOK_SECRET.as_bytes());
    assert_eq!(format!("{secret:?}"), "WebhookSecret(..)");
    assert!(!format!("{alerts:?}").contains(WEBHOOK_SECRET));

    let missing = from_toml(text, &no_env()).unwrap_err().to_string();
    assert_names(&missing, "alerts.webhooks[0].secret_env");
    assert!(
        missing.contains("PORTCULLIS_ALERT_WEBHOOK_SECRET"),
        "{missing}"
    );
}

#[test]
fn webhook_secret_read_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhook.secret");
    std::fs::write(&path, format!("{WEBHOOK_SECRET}\n")).unwrap();
    let text = format!(
        "[[alerts.webhooks]]\nurl = \"http://127.0.0.1:9999/hook\"\nsecret_file = \"{}\"\n",
        path.display()
    );
    let alerts = from_toml(&text, &no_env()).unwrap().alerts;
    let secret = alerts.webhooks[0].secret.as_ref().unwrap();
    assert_eq!(
        secret.expose(),
        WEBHOOK_SECRET.as_bytes(),
        "newline dropped"
    );

    std::fs::write(&path, "short\n").unwrap();
    let short = from_toml(&text, &no_env()).unwrap_err().to_string();
    assert_names(&short, "alerts.webhooks[0].secret_file");
}

#[test]
fn bad_alert_settings_named() {
    let webhook = |body: &str| format!("[[alerts.webhooks]]\n{body}\n");
    let cases = [
        ("[alerts]\nretention = \"400d\"\n", "alerts.retention"),
        (
            "[alerts.rate_spike]\nfactor = 1\n",
            "alerts.rate_spike.factor",
        ),
        (
            "[alerts.rate_spike]\nfloor = 0\n",
            "alerts.rate_spike.floor",
        ),
        (
            "[alerts.rate_spike]\nwindow = \"2000d\"\n",
            "alerts.rate_spike.window",
        ),
        (
            "[alerts.failures]\nper_source = 0\n",
            "alerts.failures.per_source",
        ),
        (
            "[alerts.new_network]\nipv4_prefix = 33\n",
            "alerts.new_network.ipv4_prefix",
        ),
        (
            "[alerts.new_network]\nipv6_prefix = 8\n",
            "alerts.new_network.ipv6_prefix",
        ),
        (
            "[alerts.delivery]\nmax_attempts = 0\n",
            "alerts.delivery.max_attempts",
        ),
        (
            "[alerts.delivery]\nfirst_retry = \"2h\"\nmax_retry = \"1h\"\n",
            "alerts.delivery.first_retry",
        ),
        (
            "[alerts.delivery]\ntimeout = \"2m\"\n",
            "alerts.delivery.timeout",
        ),
        (
            &webhook("url = \"http://hooks.example.com/\"\nsecret_env = \"PORTCULLIS_S\""),
            "alerts.webhooks[0].url",
        ),
        (
            &webhook("url = \"https://user:pw@hooks.example.com/\"\nsecret_env = \"PORTCULLIS_S\""),
            "alerts.webhooks[0].url",
        ),
        (
            &webhook("url = \"ftp://hooks.example.com/\"\nsecret_env = \"PORTCULLIS_S\""),
            "alerts.webhooks[0].url",
        ),
        (
            &webhook("url = \"https://hooks.example.com/\"\nsecret_env = \"HOME\""),
            "alerts.webhooks[0].secret_env",
        ),
        (
            &webhook("url = \"https://hooks.example.com/\"\nsecret_env = \"PORTCULLIS_A__B\""),
            "alerts.webhooks[0].secret_env",
        ),
        (
            &webhook("url = \"https://hooks.example.com/\""),
            "alerts.webhooks[0]",
        ),
        // An inline secret is an unknown key: the file is no place for it.
        (
            &webhook("url = \"https://hooks.example.com/\"\nsecret = \"inline\""),
            "alerts.webhooks",
        ),
        ("[alerts]\nthreshold = 3\n", "alerts"),
    ];
    for (text, setting) in cases {
        let error = error_of(text);
        assert_names(&error, setting);
    }
}

#[test]
fn duplicate_webhook_urls_rejected() {
    let one = "[[alerts.webhooks]]\nurl = \"https://hooks.example.com/a\"\n\
               secret_env = \"PORTCULLIS_ALERT_WEBHOOK_SECRET\"\n";
    let error = from_toml(&format!("{one}{one}"), &secret_env())
        .unwrap_err()
        .to_string();
    assert_names(&error, "alerts.webhooks[1].url");
}
