//! The documentation site under `/docs/`, fetched from the running binary:
//! pages, headers, branding, path checks, `[docs] pages = "consumers"` and
//! `[docs] enabled = false`.

#![allow(
    clippy::unwrap_used,
    reason = "a failed request in the helper should fail the test at once"
)]

mod support;

use support::{DataDir, Server, header};

async fn fetch(server: &Server, path: &str) -> (u16, reqwest::Response) {
    let response = server.client().get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response)
}

#[tokio::test]
async fn docs_site_served_and_branded() {
    let data = DataDir::new();
    data.write_config(
        r#"
[docs]
title = "Acme <API> docs"
product_name = "Acme"
"#,
    );
    let server = Server::start(&data);

    let (status, response) = fetch(&server, "/docs/").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&response, "content-security-policy"),
        Some(
            "default-src 'none'; style-src 'self'; form-action 'none'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    );
    assert_eq!(header(&response, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&response, "referrer-policy"), Some("no-referrer"));
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    assert_eq!(
        header(&response, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let index = response.text().await.unwrap();
    assert!(index.contains("Acme &lt;API&gt; docs"), "{index}");
    assert!(!index.contains("<script"), "{index}");
    assert!(
        index.contains("href=\"/docs/consumers/api-keys\""),
        "{index}"
    );

    let (status, response) = fetch(&server, "/docs/consumers/api-keys").await;
    assert_eq!(status, 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("aria-current=\"page\""), "{page}");

    let (status, response) = fetch(&server, "/docs/docs.css").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/css; charset=utf-8")
    );

    server.stop().await;
}

#[tokio::test]
async fn docs_unknown_and_traversal_paths_not_found() {
    let data = DataDir::new();
    let server = Server::start(&data);

    // Paths that the docs routes reject with their 404 page.
    for path in [
        "/docs/no-such-page",
        "/docs/SUMMARY",
        "/docs/consumers/api-keys.md",
    ] {
        let (status, response) = fetch(&server, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(header(&response, "x-frame-options"), Some("DENY"), "{path}");
    }

    // Encoded dot segments are resolved before routing, so these leave
    // `/docs/` and reach no file either, and an encoded `/` is rejected.
    for (path, expected) in [
        ("/docs/%2e%2e/Cargo.toml", 404),
        ("/docs/consumers/%2e%2e/%2e%2e/README.md", 404),
        ("/docs/..%2fREADME.md", 400),
    ] {
        let (status, response) = fetch(&server, path).await;
        assert_eq!(status, expected, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("[package]"), "{path}: {body}");
        assert!(!body.contains("# Portcullis"), "{path}: {body}");
    }

    server.stop().await;
}

#[tokio::test]
async fn docs_disabled_not_served() {
    let data = DataDir::new();
    data.write_config("[docs]\nenabled = false\n");
    let server = Server::start(&data);

    let (status, _) = fetch(&server, "/docs/").await;
    assert_eq!(status, 404);

    server.stop().await;
}

#[tokio::test]
async fn docs_consumer_pages_only() {
    let data = DataDir::new();
    data.write_config("[docs]\npages = \"consumers\"\n");
    let server = Server::start(&data);

    for path in [
        "/docs/",
        "/docs/consumers/api-keys",
        "/docs/consumers/errors",
        "/docs/consumers/rate-limits",
    ] {
        let (status, response) = fetch(&server, path).await;
        assert_eq!(status, 200, "{path}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains("href=\"/docs/consumers/api-keys\""),
            "{path}: {page}"
        );
        assert!(!page.contains("href=\"/docs/operators/"), "{path}: {page}");
        assert!(!page.contains("For operators"), "{path}: {page}");
    }

    for path in [
        "/docs/operators/",
        "/docs/operators/install",
        "/docs/operators/configuration",
        "/docs/operators/master-key",
        "/docs/operators/runbooks",
    ] {
        let (status, response) = fetch(&server, path).await;
        assert_eq!(status, 404, "{path}");
        let page = response.text().await.unwrap();
        assert!(page.contains("Page not found"), "{path}: {page}");
        assert!(!page.contains("href=\"/docs/operators/"), "{path}: {page}");
    }

    server.stop().await;
}

#[tokio::test]
async fn docs_operator_pages_published_by_default() {
    let data = DataDir::new();
    let server = Server::start(&data);

    let (status, response) = fetch(&server, "/docs/operators/runbooks").await;
    assert_eq!(status, 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("For operators"), "{page}");
    assert!(page.contains("href=\"/docs/operators/install\""), "{page}");

    server.stop().await;
}

#[tokio::test]
async fn docs_pages_set_from_environment() {
    let data = DataDir::new();
    let server = Server::start_with(&data, &[("PORTCULLIS_DOCS__PAGES", "consumers")]);

    let (status, _) = fetch(&server, "/docs/operators/install").await;
    assert_eq!(status, 404);
    let (status, _) = fetch(&server, "/docs/consumers/api-keys").await;
    assert_eq!(status, 200);

    server.stop().await;
}
