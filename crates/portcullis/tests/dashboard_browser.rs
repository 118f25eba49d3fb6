//! The dashboard in a real headless Chromium, driven through chromedriver
//! with WebDriver. A user signs in, then creates, rotates and revokes a key
//! by clicking and typing while the gateway follows. An admin invites a
//! developer, who joins through the link in a browser without the admin's
//! cookies, signs in with the new password and sees a developer's pages. A
//! form without its CSRF token is rejected, reloading the page of a new key
//! creates no second key, the sign-in form works with the keyboard alone,
//! and every main page fits a 360 px screen. Screenshots of each page, at
//! desktop width and at 360 px, go to `target/screenshots/`.
//!
//! Without `chromium` and `chromedriver` on the `PATH` the tests print a
//! notice and pass, unless `CI=true`, where they fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::PublicKeyData;
use support::mtls::{create_tls_client, issue};
use support::upstream::Upstream;
use support::{DataDir, Server};
use thirtyfour::extensions::query::ElementPollerWithTimeout;
use thirtyfour::prelude::*;

const PASSWORD: &str = "correct horse battery staple";
const ADMIN: &str = "admin@acme.test";

/// Bound of every wait: for an element, a page load or a script. A broken
/// page fails the test after this long instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

/// Window sizes of the screenshots: a desktop and the narrowest phone
/// width that the dashboard must stay readable at.
const DESKTOP: (u32, u32) = (1280, 900);
const NARROW: (u32, u32) = (360, 780);

/// One server for the file: tenant `acme` with an admin, the dashboard's
/// scopes and a gateway route `/orders` that needs `orders:read` for GET.
struct Fixture {
    server: Server,
    data: DataDir,
    _upstream: Upstream,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    data.create_user("acme", ADMIN, "admin", PASSWORD);
    data.write_config(&format!(
        r#"
[dashboard]
key_expiry_default = "30d"
key_expiry_max = "90d"
scopes = ["orders:read", "orders:write"]

[[routes]]
path_prefix = "/orders"
upstream = "{}"
[routes.scopes]
GET = ["orders:read"]
"#,
        upstream.url()
    ));
    let server = Server::start(&data);
    Fixture {
        server,
        data,
        _upstream: upstream,
    }
});

/// Finds `program` in the directories of `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A running chromedriver in a process group of its own. Chromium and its
/// helper processes stay in that group, so dropping the guard, also while a
/// failed test unwinds, kills all of them.
struct ChromeDriverProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ChromeDriverProcess {
    /// Starts `chromedriver` on a free loopback port and waits until its
    /// `/status` reports ready. Chromedriver accepts only local
    /// connections unless `--allowed-ips` is given.
    async fn start(program: &Path, log: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .process_group(0)
            .spawn()
            .unwrap();
        let process = Self { child, port, log };
        process.wait_ready().await;
        process
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let status = client.get(format!("{}/status", self.url())).send().await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<serde_json::Value>().await
                && body["value"]["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver was not ready after {WAIT:?}; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriverProcess {
    fn drop(&mut self) {
        // The group id is chromedriver's pid because of `process_group(0)`.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fresh profile. Fields drop in order:
/// the driver first (its drop ends the session when the test did not),
/// then chromedriver and the browser, then the profile directory.
struct Chromium {
    driver: WebDriver,
    _process: ChromeDriverProcess,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts chromedriver and a browser that trusts the test server's
    /// certificate, or returns `None` when the programs are missing and
    /// the test may pass without them.
    async fn launch() -> Option<Self> {
        let chromium = find_program("chromium");
        let chromedriver = find_program("chromedriver");
        let ready = support::runtime_available(
            "the browser tests need Chromium and its WebDriver server on the PATH: \
             install Debian's `chromium` and `chromium-driver` packages",
            chromium.is_some() && chromedriver.is_some(),
        );
        if !ready {
            return None;
        }
        let profile = tempfile::tempdir().unwrap();
        let process =
            ChromeDriverProcess::start(&chromedriver?, profile.path().join("chromedriver.log"))
                .await;

        let mut capabilities = DesiredCapabilities::chrome();
        capabilities
            .set_binary(chromium?.to_str().unwrap())
            .unwrap();
        let user_data_dir = profile.path().join("user-data");
        let (width, height) = DESKTOP;
        for argument in [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", user_data_dir.display()),
            format!("--window-size={width},{height}"),
            // Chromium on Linux reads trusted CAs from the NSS database in
            // `$HOME/.pki/nssdb`, not from the profile, and filling one needs
            // NSS's `certutil`. Instead the browser accepts the public key of
            // this server's certificate only: the flag takes SHA-256 hashes
            // of SubjectPublicKeyInfo and works only with `--user-data-dir`.
            // Other certificate errors stay errors.
            format!(
                "--ignore-certificate-errors-spki-list={}",
                server_key_hash()
            ),
            // Names other than localhost do not resolve, so the browser
            // cannot reach any host but this machine.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost".to_owned(),
        ] {
            capabilities.add_arg(&argument).unwrap();
        }

        let driver = WebDriver::builder(process.url(), capabilities)
            .poller(Arc::new(ElementPollerWithTimeout::new(
                WAIT,
                Duration::from_millis(100),
            )))
            .request_timeout(Duration::from_secs(60))
            .connect()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "starting a Chromium session failed: {error}; chromedriver's log:\n{}",
                    std::fs::read_to_string(&process.log).unwrap_or_default()
                )
            });
        driver
            .update_timeouts(TimeoutConfiguration::new(Some(WAIT), Some(WAIT), None))
            .await
            .unwrap();
        Some(Self {
            driver,
            _process: process,
            _profile: profile,
        })
    }

    /// Ends the session. Chromedriver is killed when `self` drops.
    async fn quit(self) {
        self.driver.clone().quit().await.unwrap();
    }
}

/// Returns the base64 SHA-256 of the SubjectPublicKeyInfo of the server's TLS key,
/// in the form `--ignore-certificate-errors-spki-list` takes.
fn server_key_hash() -> String {
    let pem = std::fs::read_to_string(FIXTURE.data.path().join("tls/server-key.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key.subject_public_key_info());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn url(path: &str) -> String {
    FIXTURE.server.url(path)
}

/// Sends `GET /orders/1` through the gateway with `key` and returns the
/// status.
async fn gateway_status(key: &str) -> u16 {
    FIXTURE
        .server
        .client()
        .get(url("/orders/1"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Returns the key's status as `keys list --output json` prints it.
fn stored_status(id: &str) -> String {
    FIXTURE.data.tenant_key("acme", id)["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for an `<h1>` that contains `text`, which proves the page loaded.
async fn wait_heading(driver: &WebDriver, text: &str) -> WebDriverResult<WebElement> {
    driver
        .query(By::XPath(format!("//h1[contains(., \"{text}\")]")))
        .desc(&format!("a heading with {text:?}"))
        .first()
        .await
}

/// Clears the input with id `id` and types `text` into it.
async fn type_into(driver: &WebDriver, id: &str, text: &str) -> WebDriverResult<()> {
    let input = driver.query(By::Id(id)).first().await?;
    input.clear().await?;
    input.send_keys(text).await
}

async fn click(driver: &WebDriver, by: By) -> WebDriverResult<()> {
    driver.query(by).first().await?.click().await
}

/// Signs `email` of `acme` in by filling the sign-in form and clicking its
/// button.
async fn sign_in(driver: &WebDriver, email: &str, password: &str) -> WebDriverResult<()> {
    driver.goto(url("/dashboard/sign-in")).await?;
    type_into(driver, "tenant", "acme").await?;
    type_into(driver, "email", email).await?;
    type_into(driver, "password", password).await?;
    click(driver, By::XPath("//button[. = \"Sign in\"]")).await?;
    wait_heading(driver, "Your account").await?;
    Ok(())
}

/// Creates a key from the key list by clicking and typing, as a user
/// would, and returns its id and the secret read from the page.
async fn create_key(driver: &WebDriver, name: &str) -> WebDriverResult<(String, String)> {
    driver.goto(url("/dashboard/keys")).await?;
    click(driver, By::LinkText("Create a key")).await?;
    wait_heading(driver, "Create a key").await?;
    type_into(driver, "name", name).await?;
    click(
        driver,
        By::Css("input[type=checkbox][value=\"orders:read\"]"),
    )
    .await?;
    type_into(driver, "expires_in_days", "14").await?;
    click(driver, By::Id("environment-test")).await?;
    click(driver, By::XPath("//button[. = \"Create key\"]")).await?;
    wait_heading(driver, "Key created").await?;
    let secret = secret_on_page(driver).await?;
    Ok((key_id_on_page(driver).await?, secret))
}

/// Reads the secret shown once on the page after creating or rotating a key.
async fn secret_on_page(driver: &WebDriver) -> WebDriverResult<String> {
    let text = driver.query(By::Id("secret")).first().await?.text().await?;
    Ok(text.trim().to_owned())
}

/// Reads the key id from the secret page's "Go to the key" link.
async fn key_id_on_page(driver: &WebDriver) -> WebDriverResult<String> {
    let link = driver.query(By::LinkText("Go to the key")).first().await?;
    let href = link.attr("href").await?.unwrap_or_default();
    let id = href
        .rsplit_once("/dashboard/keys/")
        .map(|(_, id)| id.to_owned())
        .unwrap_or_else(|| panic!("the key link {href:?} names no key"));
    Ok(id)
}

/// Runs `script` in the page without arguments and returns its result.
async fn run_script(driver: &WebDriver, script: &str) -> WebDriverResult<ScriptRet> {
    driver
        .execute(script, Vec::<serde_json::Value>::new())
        .await
}

/// Reads the HTTP status of the page the browser shows from its Navigation
/// Timing entry, because WebDriver does not expose response statuses.
async fn page_status(driver: &WebDriver) -> WebDriverResult<u64> {
    let status = run_script(
        driver,
        "return performance.getEntriesByType('navigation')[0].responseStatus;",
    )
    .await?;
    Ok(status.json().as_u64().unwrap_or_default())
}

fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`, so the pictures land next to
    // it, in a folder that git ignores along with the rest of `target`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots")
}

/// Describes up to five elements whose right edge lies past the viewport,
/// innermost first, for the message of a failed width check.
async fn overflowing_elements(driver: &WebDriver) -> WebDriverResult<String> {
    let found = run_script(
        driver,
        "const wide = []; \
         for (const element of document.querySelectorAll('body *')) { \
             const right = element.getBoundingClientRect().right; \
             if (right > window.innerWidth) { \
                 wide.push(element.tagName.toLowerCase() \
                     + (element.className ? '.' + element.className : '') \
                     + ' (right edge ' + Math.round(right) + ' px)'); \
             } \
         } \
         return wide.reverse().slice(0, 5).join(', ');",
    )
    .await?;
    Ok(found.json().as_str().unwrap_or_default().to_owned())
}

/// Saves the current page as `<name>.png` at desktop width and at 360 px,
/// and checks that at 360 px the page does not scroll sideways.
async fn capture(driver: &WebDriver, name: &str) -> WebDriverResult<()> {
    for (folder, (width, height)) in [("desktop", DESKTOP), ("360px", NARROW)] {
        driver.set_window_rect(0, 0, width, height).await?;
        let sizes = run_script(
            driver,
            "return [window.innerWidth, document.documentElement.scrollWidth];",
        )
        .await?;
        let sizes: Vec<u32> = sizes.convert()?;
        assert_eq!(
            sizes[0], width,
            "{name}: the viewport is not {width} px wide"
        );
        if width == NARROW.0 {
            assert!(
                sizes[1] <= width,
                "{name} scrolls sideways at {width} px: the page is {} px wide; \
                 elements that reach past the edge: {}",
                sizes[1],
                overflowing_elements(driver).await?
            );
        }
        fit_window_to_page(driver, width).await?;
        let dir = screenshot_dir().join(folder);
        std::fs::create_dir_all(&dir)?;
        driver.screenshot(&dir.join(format!("{name}.png"))).await?;
    }
    driver.set_window_rect(0, 0, DESKTOP.0, DESKTOP.1).await
}

/// Makes the window tall enough to show the whole page, up to 6000 px, so
/// that a screenshot of the viewport shows all of it.
async fn fit_window_to_page(driver: &WebDriver, width: u32) -> WebDriverResult<()> {
    let heights = run_script(
        driver,
        "return [document.documentElement.scrollHeight, \
                 window.outerHeight - window.innerHeight];",
    )
    .await?;
    let heights: Vec<u32> = heights.convert()?;
    let height = (heights[0] + heights[1]).min(6000);
    driver.set_window_rect(0, 0, width, height).await
}

#[tokio::test]
async fn key_lifecycle_follows_gateway() -> WebDriverResult<()> {
    let Some(chromium) = Chromium::launch().await else {
        return Ok(());
    };
    let driver = &chromium.driver;
    sign_in(driver, ADMIN, PASSWORD).await?;

    let (id, secret) = create_key(driver, "warehouse sync").await?;
    assert!(secret.starts_with("pc_test_"), "{secret}");
    assert!(
        driver.source().await?.contains("shown only once"),
        "the secret page does not warn that the key is shown once"
    );
    assert_eq!(gateway_status(&secret).await, 200);

    // Rotation with a grace period: a new secret, and the old key still
    // works until the grace period ends.
    click(driver, By::LinkText("Go to the key")).await?;
    wait_heading(driver, "Key warehouse sync").await?;
    click(driver, By::LinkText("Rotate")).await?;
    wait_heading(driver, "Rotate key warehouse sync").await?;
    type_into(driver, "grace_hours", "2").await?;
    click(driver, By::XPath("//button[. = \"Rotate key\"]")).await?;
    wait_heading(driver, "Key rotated").await?;
    let new_secret = secret_on_page(driver).await?;
    let new_id = key_id_on_page(driver).await?;
    assert_ne!(new_secret, secret);
    assert_ne!(new_id, id);
    assert_eq!(gateway_status(&new_secret).await, 200);
    assert_eq!(gateway_status(&secret).await, 200, "old key during grace");
    assert_eq!(stored_status(&id), "rotating");

    // Revocation requires a confirmation that names the key.
    click(driver, By::LinkText("Go to the key")).await?;
    wait_heading(driver, "Key warehouse sync").await?;
    click(driver, By::LinkText("Revoke")).await?;
    wait_heading(driver, "Revoke key warehouse sync").await?;
    type_into(driver, "reason", "integration retired").await?;
    click(
        driver,
        By::XPath("//button[. = \"Revoke key warehouse sync\"]"),
    )
    .await?;
    wait_heading(driver, "Key warehouse sync").await?;
    let facts = driver
        .query(By::Css("dl.facts"))
        .first()
        .await?
        .text()
        .await?;
    assert!(facts.contains("revoked"), "the key page shows {facts:?}");

    // The gateway rejects the key within a second, the time the dashboard
    // promises for a revocation.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = gateway_status(&new_secret).await;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway still answers {status} a second after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored_status(&new_id), "revoked");
    chromium.quit().await;
    Ok(())
}

#[tokio::test]
async fn invited_developer_joins_and_signs_in() -> WebDriverResult<()> {
    const MEMBER: &str = "dev@acme.test";
    const MEMBER_PASSWORD: &str = "a developer's own passphrase";
    let Some(chromium) = Chromium::launch().await else {
        return Ok(());
    };
    let driver = &chromium.driver;
    sign_in(driver, ADMIN, PASSWORD).await?;

    // The admin invites the address as a developer and reads the link,
    // which the page shows once.
    click(driver, By::LinkText("Members")).await?;
    wait_heading(driver, "Members").await?;
    type_into(driver, "invite-email", MEMBER).await?;
    click(driver, By::Css("#invite-role option[value=developer]")).await?;
    click(driver, By::XPath("//button[. = \"Create invite link\"]")).await?;
    wait_heading(driver, "Invite for").await?;
    let link = secret_on_page(driver).await?;
    assert!(
        link.contains("/dashboard/join/"),
        "the invite page shows {link:?}"
    );
    assert!(
        driver.source().await?.contains("shown only once"),
        "the invite page does not warn that the link is shown once"
    );

    // A second browser session: the admin's cookies are gone, so nothing
    // of the admin's session can help the invited person.
    driver.delete_all_cookies().await?;
    driver.goto(&link).await?;
    wait_heading(driver, "Join acme").await?;
    assert_eq!(page_status(driver).await?, 200);
    type_into(driver, "password", MEMBER_PASSWORD).await?;
    type_into(driver, "confirm", MEMBER_PASSWORD).await?;
    click(
        driver,
        By::XPath("//button[. = \"Set password and sign in\"]"),
    )
    .await?;
    wait_heading(driver, "Your account").await?;

    // The password set on the join page signs the member in again.
    click(driver, By::XPath("//button[. = \"Sign out\"]")).await?;
    wait_heading(driver, "Sign in").await?;
    sign_in(driver, MEMBER, MEMBER_PASSWORD).await?;
    let facts = driver
        .query(By::Css("dl.facts"))
        .first()
        .await?
        .text()
        .await?;
    assert!(facts.contains(MEMBER), "the overview shows {facts:?}");
    assert!(facts.contains("developer"), "the overview shows {facts:?}");

    // A developer creates keys, gets no link to the members page and may
    // not open it.
    let (_, secret) = create_key(driver, "developer's key").await?;
    assert_eq!(gateway_status(&secret).await, 200);
    assert!(driver.find_all(By::LinkText("Members")).await?.is_empty());
    driver.goto(url("/dashboard/members")).await?;
    wait_heading(driver, "Not allowed").await?;
    assert_eq!(page_status(driver).await?, 403);

    // The link works once.
    driver.goto(&link).await?;
    assert_eq!(page_status(driver).await?, 410);
    chromium.quit().await;
    Ok(())
}

#[tokio::test]
async fn form_without_csrf_token_rejected() -> WebDriverResult<()> {
    let Some(chromium) = Chromium::launch().await else {
        return Ok(());
    };
    let driver = &chromium.driver;
    let (id, secret) = FIXTURE
        .data
        .create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    sign_in(driver, ADMIN, PASSWORD).await?;

    // The user's own confirmation form, stripped of its hidden token as a
    // form forged on another site would be.
    driver
        .goto(url(&format!("/dashboard/keys/{id}/revoke")))
        .await?;
    wait_heading(driver, "Revoke key").await?;
    let removed = run_script(
        driver,
        "const inputs = document.querySelectorAll('form[action$=\"/revoke\"] input[name=csrf_token]'); \
         for (const input of inputs) { input.remove(); } \
         return inputs.length;",
    )
    .await?;
    assert!(
        removed.json().as_u64().unwrap_or_default() > 0,
        "no token to remove"
    );
    click(driver, By::Css("form[action$=\"/revoke\"] button")).await?;

    wait_heading(driver, "Form rejected").await?;
    assert_eq!(page_status(driver).await?, 403);
    assert_eq!(stored_status(&id), "active");
    assert_eq!(gateway_status(&secret).await, 200);
    chromium.quit().await;
    Ok(())
}

/// The ids of the tenant's keys named `name`, from `keys list`.
fn keys_named(name: &str) -> Vec<String> {
    let keys = FIXTURE.data.cli_json(&["keys", "list", "--tenant", "acme"]);
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["name"] == name)
        .map(|key| key["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn reload_after_create_makes_no_second_key() -> WebDriverResult<()> {
    let Some(chromium) = Chromium::launch().await else {
        return Ok(());
    };
    let driver = &chromium.driver;
    sign_in(driver, ADMIN, PASSWORD).await?;
    let name = "reloaded page";
    let (id, _) = create_key(driver, name).await?;

    // Reloading the response to a POST sends the POST again. Chromium may
    // first ask to confirm that in a dialog, which WebDriver sees as an
    // alert; accepting it re-sends the form as a user who clicks "Continue"
    // would.
    let refreshed = driver.refresh().await;
    if let Ok(text) = driver.get_alert_text().await {
        println!("Chromium asked before sending the form again: {text:?}");
        driver.accept_alert().await?;
    } else {
        refreshed?;
    }
    wait_heading(driver, "Key already created").await?;
    assert_eq!(page_status(driver).await?, 409);
    let source = driver.source().await?;
    assert!(
        source.contains("cannot be shown again"),
        "the page does not say that the secret is gone"
    );
    assert!(driver.find_all(By::Id("secret")).await?.is_empty());
    capture(driver, "key-already-created").await?;

    // The list contains the one key, and the page links to it.
    assert_eq!(keys_named(name), vec![id.clone()]);
    click(driver, By::LinkText("Go to the key")).await?;
    wait_heading(driver, &format!("Key {name}")).await?;
    driver.goto(url("/dashboard/keys")).await?;
    let rows = driver
        .find_all(By::XPath(format!("//tr[contains(., \"{name}\")]")))
        .await?;
    assert_eq!(rows.len(), 1, "the key list shows {} rows", rows.len());
    chromium.quit().await;
    Ok(())
}

#[tokio::test]
async fn sign_in_by_keyboard_only() -> WebDriverResult<()> {
    let Some(chromium) = Chromium::launch().await else {
        return Ok(());
    };
    let driver = &chromium.driver;
    driver.goto(url("/dashboard/sign-in")).await?;
    wait_heading(driver, "Sign in").await?;

    // Each Tab must move the focus to the next field in reading order, and
    // Enter on the focused button sends the form.
    for (field, text) in [("tenant", "acme"), ("email", ADMIN), ("password", PASSWORD)] {
        driver.action_chain().send_keys(Key::Tab).perform().await?;
        assert_eq!(focused(driver).await?, field);
        driver.action_chain().send_keys(text).perform().await?;
    }
    driver.action_chain().send_keys(Key::Tab).perform().await?;
    assert_eq!(focused(driver).await?, "button:Sign in");
    driver
        .action_chain()
        .send_keys(Key::Enter)
        .perform()
        .await?;
    wait_heading(driver, "Your account").await?;
    chromium.quit().await;
    Ok(())
}

/// Returns the id of the focused element, or `button:<text>` for a button.
async fn focused(driver: &WebDriver) -> WebDriverResult<String> {
    let name = run_script(
        driver,
        "const element = document.activeElement; \
         return element.tagName === 'BUTTON' \
             ? 'button:' + element.textContent.trim() : element.id;",
    )
    .await?;
    Ok(name.json().as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn main_pages_fit_narrow_screen() -> WebDriverResult<()> {
    let Some(chromium) = Chromium::launch().await else {
        return Ok(());
    };
    let driver = &chromium.driver;
    driver.goto(url("/dashboard/sign-in")).await?;
    wait_heading(driver, "Sign in").await?;
    capture(driver, "sign-in").await?;
    sign_in(driver, ADMIN, PASSWORD).await?;
    capture(driver, "overview").await?;

    let (id, secret) = create_key(driver, "screenshot example").await?;
    capture(driver, "key-secret").await?;
    // Some traffic, so that the usage pages have bars to draw.
    for _ in 0..3 {
        assert_eq!(gateway_status(&secret).await, 200);
    }

    let client = FIXTURE.data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Screenshot app",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ]);
    let client = format!(
        "/dashboard/clients/{}",
        client["client_id"].as_str().unwrap()
    );
    let key = format!("/dashboard/keys/{id}");
    let tls_client = create_tls_client(&FIXTURE.data, "acme", &[])["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, serial) = issue(&FIXTURE.data, &tls_client, "screenshot-certificate");
    let certificate = format!("/dashboard/certificates/{serial}");
    let pages = [
        ("/dashboard/keys".to_owned(), "API keys", "keys"),
        ("/dashboard/keys/new".to_owned(), "Create a key", "key-new"),
        (key.clone(), "Key screenshot example", "key"),
        (
            format!("{key}/usage"),
            "Usage of key screenshot example",
            "key-usage",
        ),
        (format!("{key}/rotate"), "Rotate key", "key-rotate"),
        (format!("{key}/revoke"), "Revoke key", "key-revoke"),
        ("/dashboard/usage".to_owned(), "Usage of acme", "usage"),
        ("/dashboard/audit".to_owned(), "Audit log", "audit-log"),
        (
            "/dashboard/findings".to_owned(),
            "Credential findings",
            "findings",
        ),
        ("/dashboard/clients".to_owned(), "OAuth clients", "clients"),
        (
            "/dashboard/clients/new".to_owned(),
            "Register an OAuth client",
            "client-new",
        ),
        (client, "Client Screenshot app", "client"),
        (
            "/dashboard/certificates".to_owned(),
            "Client certificates",
            "certificates",
        ),
        (
            format!("/dashboard/certificates/new?client={tls_client}"),
            "Get a client certificate",
            "certificate-new",
        ),
        (certificate.clone(), "Client certificate", "certificate"),
        (
            format!("{certificate}/revoke"),
            "Revoke certificate",
            "certificate-revoke",
        ),
    ];
    for (path, heading, name) in pages {
        driver.goto(url(&path)).await?;
        wait_heading(driver, heading).await?;
        assert_eq!(page_status(driver).await?, 200, "{path}");
        capture(driver, name).await?;
    }
    chromium.quit().await;
    Ok(())
}
