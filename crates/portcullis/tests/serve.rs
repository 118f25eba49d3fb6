//! `portcullis serve` as a process: shutdown, plain HTTP and start-up
//! checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use portcullis_core::ids::KeyId;
use reqwest::StatusCode;
use support::upstream::Upstream;
use support::{DataDir, Server};

fn route_config(upstream: &Upstream) -> String {
    format!(
        "[[routes]]\npath_prefix = \"/orders\"\nupstream = \"{}\"\n[routes.scopes]\nGET = [\"orders:read\"]\n",
        upstream.url()
    )
}

#[tokio::test]
async fn sigterm_drains_requests_and_flushes_usage() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&route_config(&upstream));
    data.cli(&["tenants", "create", "acme"]);
    let (id, key) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let server = Server::start(&data);

    // A request that takes 1.5 s upstream is in flight when SIGTERM lands.
    let client = server.client();
    let url = server.url("/orders/slow?ms=1500");
    let in_flight =
        tokio::spawn(async move { client.get(url).header("x-api-key", key).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let status = server.stop().await;
    assert!(status.success(), "serve exited with {status}");
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was cut off");
    assert_eq!(response.status(), StatusCode::OK);

    // The last-used time and count were buffered; stopping wrote them.
    let store = data.open_store().await;
    let record = store
        .find_key(id.parse::<KeyId>().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.use_count, 1);
    assert!(record.last_used_at.is_some());
    assert_eq!(record.last_used_from.as_deref(), Some("127.0.0.1"));
    store.close().await;
}

#[tokio::test]
async fn plain_http_refused_off_loopback() {
    let data = DataDir::new();
    data.write_config("[server]\nplain_http = true\nlisten = \"0.0.0.0:0\"\n");
    let output = data
        .command()
        .arg("serve")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.plain_http"), "{stderr}");
}

#[tokio::test]
async fn bad_settings_stop_start_naming_setting() {
    let cases = [
        (
            "[[routes]]\npath_prefix = \"/a\"\nupstream = \"ftp://example\"\n",
            "routes[0].upstream",
        ),
        (
            "[[routes]]\npath_prefix = \"/a\"\nupstream = \"not a url\"\n",
            "routes[0].upstream",
        ),
        ("[server]\nlisten = \"localhost:eighty\"\n", "server.listen"),
        ("[server]\nlisen = \"127.0.0.1:1\"\n", "lisen"),
        (
            "[[routes]]\npath_prefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\n[routes.scopes]\nGET = [\"\u{043e}rders:read\"]\n",
            "routes[0].scopes.GET[0]",
        ),
    ];
    for (config, setting) in cases {
        let data = DataDir::new();
        data.write_config(config);
        let output = data
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{config}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(setting), "{setting}: {stderr}");
    }
}
