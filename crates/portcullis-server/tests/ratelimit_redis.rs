//! The Redis backend of the rate limiter against a real Redis: limits shared
//! by two limiter instances (two connections, as two nodes would have), use
//! counters, the fallback while Redis is down, and brute-force counting.
//!
//! Most tests use the Redis of `PORTCULLIS_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`, which `scripts/services` starts), each under a
//! key prefix of its own. Tests that stop Redis start their own
//! `redis-server` on a free loopback port and stop only that one. When Redis
//! is missing the tests fail under `CI=true`, and elsewhere print a notice
//! and pass.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the tests read CI and the Redis URL from the environment"
)]

use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_server::ratelimit::brute_force::{
    Admission, BruteForcePolicy, BruteForceTracker, Subject, Thresholds,
};
use portcullis_server::ratelimit::health::RedisHealth;
use portcullis_server::ratelimit::{
    FailurePolicy, LimitName, LimitRequest, LocalLimiter, RedisLimiter, RedisOptions,
    SharedLimiter, UsesLimit, Verdict,
};
use tokio::time::Instant;

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Returns the shared test Redis, or `None` (outside CI) when it cannot be
/// reached.
async fn shared_redis_url() -> Option<String> {
    let url =
        std::env::var("PORTCULLIS_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    if ping(&url).await {
        return Some(url);
    }
    redis_missing(&format!(
        "cannot reach Redis at {url}; run scripts/services"
    ));
    None
}

/// Fails the test under `CI=true`, and otherwise prints a notice.
fn redis_missing(message: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("skipping: {message}");
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(_))
    )
}

/// Builds a limiter with a key prefix no other test uses.
fn limiter(url: &str, prefix: &str) -> RedisLimiter {
    let options = RedisOptions {
        key_prefix: prefix.to_owned(),
        ..RedisOptions::default()
    };
    RedisLimiter::new(url, options).unwrap()
}

fn unique_prefix() -> String {
    format!("portcullis-test:{}", uuid::Uuid::now_v7())
}

fn limit(name: &str, rate: &str, subject: &str) -> LimitRequest {
    LimitRequest::new(
        LimitName::new(name).unwrap(),
        rate.parse().unwrap(),
        subject,
    )
}

/// A `redis-server` of this test's own, on a free loopback port, without
/// persistence. Dropping it stops it.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    /// Starts a server, or returns `None` (outside CI) when `redis-server`
    /// is not installed.
    async fn start() -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !installed {
            redis_missing("redis-server is not installed; run scripts/services");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart().await;
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port, and waits until it replies to PING.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(&self.url()).await {
            assert!(Instant::now() < deadline, "own redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Log lines written while it is installed, for counting outage messages.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, text: &str) -> usize {
        self.text().matches(text).count()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Calls `check` every millisecond until `duration` has passed, and
/// returns the number of admitted checks.
async fn hammer(node: Arc<RedisLimiter>, limits: Vec<LimitRequest>, duration: Duration) -> u64 {
    let deadline = Instant::now() + duration;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    let mut admitted = 0;
    while Instant::now() < deadline {
        ticks.tick().await;
        if node.check(&limits, None).await.unwrap().is_admitted() {
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test]
async fn two_nodes_share_one_rate() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    let first = Arc::new(limiter(&url, &prefix));
    let second = Arc::new(limiter(&url, &prefix));
    let limits = vec![limit("key", "100/s burst 10", "key_shared")];

    let started = Instant::now();
    let duration = Duration::from_secs(4);
    let (from_first, from_second) = tokio::join!(
        hammer(first, limits.clone(), duration),
        hammer(second, limits, duration)
    );
    let elapsed = started.elapsed().as_secs_f64();

    let admitted = from_first + from_second;
    let expected = 10.0 + 100.0 * elapsed;
    let deviation = (admitted as f64 - expected).abs() / expected;
    assert!(
        deviation <= 0.05,
        "admitted {admitted} ({from_first} + {from_second}) in {elapsed:.2} s, expected {expected:.0}"
    );
    // Both nodes got a share, so the count is a shared one.
    assert!(from_first > 0, "first node admitted nothing");
    assert!(from_second > 0, "second node admitted nothing");
}

#[tokio::test]
async fn redis_answers_like_local() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let redis = limiter(&url, &unique_prefix());
    let local = LocalLimiter::default();
    // The route limit is listed twice, so each request counts twice there.
    let limits = [
        limit("key", "10/min burst 5", "key_1"),
        limit("tenant", "3/h", "acme"),
        limit("route", "8/min", "/orders"),
        limit("route", "8/min", "/orders"),
    ];
    for attempt in 0..8 {
        let shared = redis.check(&limits, None).await.unwrap();
        let alone = local.check(&limits);
        assert_eq!(
            shared.is_admitted(),
            alone.is_admitted(),
            "attempt {attempt}"
        );
        assert_eq!(
            shared.retry_after_seconds(),
            alone.retry_after_seconds(),
            "attempt {attempt}"
        );
        assert_eq!(
            shared.violated_policies(),
            alone.violated_policies(),
            "attempt {attempt}"
        );
        for (from_redis, from_local) in shared.limits.iter().zip(&alone.limits) {
            assert_eq!(
                from_redis.remaining, from_local.remaining,
                "attempt {attempt}"
            );
        }
        assert_eq!(
            shared.ratelimit_header(),
            alone.ratelimit_header(),
            "attempt {attempt}"
        );
    }
}

#[tokio::test]
async fn burst_as_configured_through_redis() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let redis = limiter(&url, &unique_prefix());
    let limits = [limit("key", "1/min burst 7", "key_burst")];
    let mut admitted = 0;
    for _ in 0..30 {
        if redis.check(&limits, None).await.unwrap().is_admitted() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 7);
    let denied = redis.check(&limits, None).await.unwrap();
    assert_eq!(denied.retry_after_seconds(), Some(60));
    assert_eq!(
        denied.header_fields()[0].1,
        "\"key\";q=7;w=420",
        "RateLimit-Policy"
    );
}

#[tokio::test]
async fn strictest_wins_and_denial_is_free() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let redis = limiter(&url, &unique_prefix());
    let tenant = limit("tenant", "5/min", "acme");
    let key = limit("key", "1/min", "key_1");
    let route = limit("route", "2/min", "/orders");
    let all = [tenant.clone(), key, route];

    assert!(redis.check(&all, None).await.unwrap().is_admitted());
    for _ in 0..5 {
        let decision = redis.check(&all, None).await.unwrap();
        let Verdict::Limited { limit, .. } = &decision.verdict else {
            panic!("second request admitted: {decision:?}");
        };
        // The key limit (1/min) waits 60 s, the route limit (2/min) does
        // not deny yet: the key limit decides.
        assert_eq!(limit.as_str(), "key");
        assert_eq!(decision.retry_after_seconds(), Some(60));
        assert_eq!(decision.violated_policies(), ["key"]);
        assert_eq!(
            decision.limits[0].remaining, 4,
            "tenant charged by a denial"
        );
    }
    let mut tenant_left = 0;
    for _ in 0..10 {
        if redis
            .check(std::slice::from_ref(&tenant), None)
            .await
            .unwrap()
            .is_admitted()
        {
            tenant_left += 1;
        }
    }
    assert_eq!(tenant_left, 4);
}

#[tokio::test]
async fn max_uses_exact_across_nodes() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    let nodes = [
        Arc::new(limiter(&url, &prefix)),
        Arc::new(limiter(&url, &prefix)),
    ];
    let uses = UsesLimit {
        subject: "key_limited".to_owned(),
        max: 50,
        recorded: 0,
    };
    let limits = vec![limit("key", "1000/s", "key_limited")];

    let mut tasks = Vec::new();
    for worker in 0..8 {
        let node = Arc::clone(&nodes[worker % 2]);
        let uses = uses.clone();
        let limits = limits.clone();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            let mut exhausted = 0u64;
            for _ in 0..25 {
                let decision = node.check(&limits, Some(&uses)).await.unwrap();
                match decision.verdict {
                    Verdict::Admitted => admitted += 1,
                    Verdict::UsesExhausted => exhausted += 1,
                    other => panic!("unexpected verdict {other:?}"),
                }
            }
            (admitted, exhausted)
        }));
    }
    let mut admitted = 0;
    let mut exhausted = 0;
    for task in tasks {
        let (yes, no) = task.await.unwrap();
        admitted += yes;
        exhausted += no;
    }
    assert_eq!(admitted, 50);
    assert_eq!(exhausted, 150);

    let after = nodes[0].check(&limits, Some(&uses)).await.unwrap();
    assert_eq!(after.verdict, Verdict::UsesExhausted);
    assert_eq!(after.uses.unwrap().used, 50);
    // A refused use charges no rate limit.
    assert_eq!(after.limits[0].retry_after, None);
}

#[tokio::test]
async fn recorded_uses_survive_lost_counter() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let redis = limiter(&url, &unique_prefix());
    let limits = [limit("key", "100/s", "key_restored")];
    // Redis has no counter (as after a restart without persistence), but
    // the store recorded 9 of 10 uses: one is left.
    let uses = UsesLimit {
        subject: "key_restored".to_owned(),
        max: 10,
        recorded: 9,
    };
    let first = redis.check(&limits, Some(&uses)).await.unwrap();
    assert_eq!(first.verdict, Verdict::Admitted);
    assert_eq!(first.uses.unwrap().used, 10);
    let second = redis.check(&limits, Some(&uses)).await.unwrap();
    assert_eq!(second.verdict, Verdict::UsesExhausted);
}

/// Waits until `health` reports Redis up again, without calling Redis: the
/// background probe ends the outage. Fails after 20 s (the backoff tops
/// out at 5 s).
async fn wait_until_up(health: &RedisHealth) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !health.is_up() {
        assert!(Instant::now() < deadline, "Redis never came back into use");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks on `node` until it reports Redis up again, for at most 20 s
/// (the backoff tops out at 5 s).
async fn wait_until_shared(node: &SharedLimiter) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let probe = [limit("probe", "1000/s", "probe")];
    while !node.health().is_up() {
        assert!(Instant::now() < deadline, "Redis never came back into use");
        node.check(&probe, None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn outage_falls_back_to_local() {
    let Some(mut server) = OwnRedis::start().await else {
        return;
    };
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let prefix = unique_prefix();
    let first = SharedLimiter::new(limiter(&server.url(), &prefix), FailurePolicy::Local);
    let second = SharedLimiter::new(limiter(&server.url(), &prefix), FailurePolicy::Local);
    let before = [limit("key", "1/min burst 3", "before")];
    assert!(first.check(&before, None).await.is_admitted());
    assert!(first.health().is_up());

    server.stop();
    // Per-node limits while Redis is down: each node admits its own burst.
    let during = [limit("key", "1/min burst 3", "during")];
    let mut admitted = 0;
    for _ in 0..10 {
        if first.check(&during, None).await.is_admitted() {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(admitted, 3);
    // The second node notices the outage on its first call.
    assert!(second.check(&during, None).await.is_admitted());
    assert!(!first.health().is_up());
    assert!(!second.health().is_up());
    assert!(first.failures() >= 1);
    // A usage-limited key cannot be counted exactly by one node.
    let uses = UsesLimit {
        subject: "key_limited".to_owned(),
        max: 5,
        recorded: 0,
    };
    assert_eq!(
        first.check(&during, Some(&uses)).await.verdict,
        Verdict::Unavailable
    );
    assert_eq!(
        logs.count("redis is unreachable"),
        2,
        "one per node and outage:\n{}",
        logs.text()
    );

    server.restart().await;
    wait_until_shared(&first).await;
    wait_until_shared(&second).await;
    assert_eq!(
        logs.count("redis is reachable again"),
        2,
        "one per node:\n{}",
        logs.text()
    );
    assert_eq!(
        logs.count("redis is unreachable"),
        2,
        "one per node:\n{}",
        logs.text()
    );

    // Shared again: the two nodes split one burst of 4.
    let after = [limit("key", "1/min burst 4", "after")];
    let mut admitted = 0;
    for _ in 0..4 {
        for node in [&first, &second] {
            if node.check(&after, None).await.is_admitted() {
                admitted += 1;
            }
        }
    }
    assert_eq!(admitted, 4);
}

#[tokio::test]
async fn outage_with_deny_policy_denies() {
    let Some(mut server) = OwnRedis::start().await else {
        return;
    };
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let node = SharedLimiter::new(
        limiter(&server.url(), &unique_prefix()),
        FailurePolicy::Deny,
    );
    let limits = [limit("key", "100/s", "key_1")];
    assert!(node.check(&limits, None).await.is_admitted());

    server.stop();
    for _ in 0..20 {
        assert_eq!(
            node.check(&limits, None).await.verdict,
            Verdict::Unavailable
        );
    }
    assert_eq!(logs.count("redis is unreachable"), 1);
    assert!(node.failures() >= 1);

    server.restart().await;
    wait_until_shared(&node).await;
    assert!(node.check(&limits, None).await.is_admitted());
    assert_eq!(logs.count("redis is reachable again"), 1);
}

fn strict_policy() -> BruteForcePolicy {
    let client_ip = Thresholds {
        slow_after: 3,
        block_after: 5,
        window: Duration::from_secs(60),
        first_block: Duration::from_secs(30),
        max_block: Duration::from_secs(120),
        delay_step: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    BruteForcePolicy {
        client_ip,
        identity: Thresholds {
            slow_after: 50,
            block_after: 100,
            ..client_ip
        },
    }
}

#[tokio::test]
async fn brute_force_blocks_one_address() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    // Two nodes; the attacker alternates between them.
    let nodes = [
        BruteForceTracker::shared(limiter(&url, &prefix), strict_policy()),
        BruteForceTracker::shared(limiter(&url, &prefix), strict_policy()),
    ];
    let local = BruteForceTracker::local(strict_policy());
    let attacker: IpAddr = "203.0.113.9".parse().unwrap();
    let other: IpAddr = "198.51.100.7".parse().unwrap();

    let mut shared_seen = Vec::new();
    let mut local_seen = Vec::new();
    // Each failure reports the admission its attempt had before it was
    // counted; the sixth meets the block that the fifth started and is not
    // counted.
    for attempt in 0..6 {
        let subjects = [
            Subject::ClientIp(attacker),
            Subject::Identity(format!("pc_test_{attempt}")),
        ];
        shared_seen.push(nodes[attempt % 2].record_failure(&subjects).await);
        local_seen.push(local.record_failure(&subjects).await);
    }
    // Same rules in Redis and in memory. Block lengths differ by the time
    // between the calls, so only whole seconds are compared.
    let rounded = |admission: &Admission| match admission {
        Admission::Blocked(left) => {
            Admission::Blocked(Duration::from_secs(left.as_secs_f64().round() as u64))
        }
        other => *other,
    };
    let shared_rounded: Vec<Admission> = shared_seen.iter().map(rounded).collect();
    let local_rounded: Vec<Admission> = local_seen.iter().map(rounded).collect();
    assert_eq!(shared_rounded, local_rounded);
    assert_eq!(
        shared_rounded,
        [
            Admission::Allow,
            Admission::Allow,
            Admission::Allow,
            Admission::Delay(Duration::from_millis(100)),
            Admission::Delay(Duration::from_millis(200)),
            Admission::Blocked(Duration::from_secs(30)),
        ]
    );

    // Blocked on both nodes, for the attacker only.
    for node in &nodes {
        let blocked = node.check(&[Subject::ClientIp(attacker)]).await;
        assert!(matches!(blocked, Admission::Blocked(_)), "{blocked:?}");
        let passes = node
            .check(&[
                Subject::ClientIp(other),
                Subject::Identity("client-d".to_owned()),
            ])
            .await;
        assert_eq!(passes, Admission::Allow);
    }
}

/// Failures against one identity from many addresses slow it and then
/// block it in Redis, although no address reaches its own thresholds.
#[tokio::test]
async fn brute_force_identity_across_addresses() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let policy = BruteForcePolicy {
        client_ip: Thresholds {
            slow_after: 100,
            block_after: 200,
            ..strict_policy().client_ip
        },
        identity: strict_policy().client_ip,
    };
    let tracker = BruteForceTracker::shared(limiter(&url, &unique_prefix()), policy);
    let identity = Subject::Identity("key:pc_test_abcd".to_owned());
    let mut seen = Vec::new();
    for n in 0..6u8 {
        let address = Subject::ClientIp(IpAddr::from([192, 0, 2, n]));
        seen.push(tracker.record_failure(&[address, identity.clone()]).await);
    }
    assert_eq!(seen[..3], [Admission::Allow; 3]);
    assert_eq!(seen[3], Admission::Delay(Duration::from_millis(100)));
    assert_eq!(seen[4], Admission::Delay(Duration::from_millis(200)));
    assert!(matches!(seen[5], Admission::Blocked(_)), "{:?}", seen[5]);
    assert!(tracker.redis_health().unwrap().is_up());
}

#[tokio::test]
async fn too_many_limits_not_an_outage() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let node = SharedLimiter::new(limiter(&url, &unique_prefix()), FailurePolicy::Local);
    let limits: Vec<LimitRequest> = (0..=portcullis_server::ratelimit::redis::MAX_LIMITS_PER_CHECK)
        .map(|index| limit("plan", "10/s", &format!("subject-{index}")))
        .collect();
    assert_eq!(
        node.check(&limits, None).await.verdict,
        Verdict::Unavailable
    );
    assert!(node.health().is_up());
    assert_eq!(node.failures(), 0);
}

#[tokio::test]
async fn ping_reports_reachability() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    limiter(&url, &unique_prefix()).ping().await.unwrap();
    // Nothing listens on a port that was just free.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = limiter(&format!("redis://127.0.0.1:{port}"), &unique_prefix());
    assert!(closed.ping().await.is_err());
}

#[tokio::test]
async fn exhausted_key_wins_over_rate_limit() {
    let Some(url) = shared_redis_url().await else {
        return;
    };
    let redis = limiter(&url, &unique_prefix());
    let limits = [limit("key", "1/min", "key_spent")];
    let uses = UsesLimit {
        subject: "key_spent".to_owned(),
        max: 1,
        recorded: 0,
    };
    assert!(
        redis
            .check(&limits, Some(&uses))
            .await
            .unwrap()
            .is_admitted()
    );
    // Both the rate limit and the use count deny now. The use count
    // decides, because waiting for the rate limit would not help.
    let second = redis.check(&limits, Some(&uses)).await.unwrap();
    assert_eq!(second.verdict, Verdict::UsesExhausted);
    assert_eq!(second.retry_after_seconds(), None);

    let none_allowed = UsesLimit {
        subject: "key_zero".to_owned(),
        max: 0,
        recorded: 0,
    };
    let other = [limit("key", "1/min", "key_zero")];
    let zero = redis.check(&other, Some(&none_allowed)).await.unwrap();
    assert_eq!(zero.verdict, Verdict::UsesExhausted);
}

#[tokio::test]
async fn brute_force_counts_locally_during_outage() {
    let Some(mut server) = OwnRedis::start().await else {
        return;
    };
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let tracker =
        BruteForceTracker::shared(limiter(&server.url(), &unique_prefix()), strict_policy());
    let attacker = [Subject::ClientIp("203.0.113.77".parse().unwrap())];
    assert_eq!(tracker.check(&attacker).await, Admission::Allow);

    server.stop();
    let mut last = Admission::Allow;
    for _ in 0..6 {
        last = tracker.record_failure(&attacker).await;
    }
    // The local records took over: five failures still block, so the
    // sixth meets the block.
    assert!(matches!(last, Admission::Blocked(_)), "{last:?}");
    assert!(matches!(
        tracker.check(&attacker).await,
        Admission::Blocked(_)
    ));
    assert!(!tracker.redis_health().unwrap().is_up());
    assert_eq!(logs.count("redis is unreachable"), 1, "{}", logs.text());
}

/// Rate limits and brute-force counts on one node share its Redis
/// connection, so an outage both see gives one warning and one recovery
/// line, and the probe restores shared limits without any request.
#[tokio::test]
async fn shared_connection_logs_outage_once() {
    let Some(mut server) = OwnRedis::start().await else {
        return;
    };
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let redis = limiter(&server.url(), &unique_prefix());
    let limits = SharedLimiter::new(redis.clone(), FailurePolicy::Local);
    let tracker = BruteForceTracker::shared(redis.clone(), strict_policy());
    let attacker = [Subject::ClientIp("203.0.113.78".parse().unwrap())];
    let burst = [limit("key", "1/min burst 2", "outage")];
    assert!(limits.check(&burst, None).await.is_admitted());
    assert_eq!(tracker.check(&attacker).await, Admission::Allow);

    server.stop();
    // Both components call Redis for several backoff periods, so each
    // records failed calls and probes.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        limits.check(&burst, None).await;
        tracker.check(&attacker).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!redis.health().is_up());
    assert!(limits.failures() >= 1);
    // One caller per backoff period tries Redis for the whole node, so the
    // tracker may not have called it, but it uses the fallback too.
    assert!(!tracker.redis_health().unwrap().is_up());
    assert!(matches!(
        tracker.record_failure(&attacker).await,
        Admission::Allow | Admission::Delay(_)
    ));
    // The fallback: the node's own memory, whose burst of 2 starts full.
    let during = [limit("key", "1/min burst 2", "during")];
    assert!(limits.check(&during, None).await.is_admitted());
    assert!(limits.check(&during, None).await.is_admitted());
    assert!(!limits.check(&during, None).await.is_admitted());

    server.restart().await;
    wait_until_up(redis.health()).await;
    assert!(tracker.redis_health().unwrap().is_up());

    let text = logs.text();
    assert_eq!(logs.count("redis is unreachable"), 1, "{text}");
    assert_eq!(logs.count("redis is reachable again"), 1, "{text}");
    let warning = text
        .lines()
        .find(|line| line.contains("redis is unreachable"))
        .unwrap();
    assert!(warning.contains("error="), "{warning}");
    assert!(
        warning.contains("rate limits enforced per node"),
        "{warning}"
    );
    assert!(
        warning.contains("failed authentications counted per node"),
        "{warning}"
    );
    let recovery = text
        .lines()
        .find(|line| line.contains("redis is reachable again"))
        .unwrap();
    assert!(recovery.contains("outage_ms="), "{recovery}");
    assert!(recovery.contains("outages_not_logged=0"), "{recovery}");

    // Shared again: the restarted, empty Redis admits a fresh burst of 2.
    let after = [limit("key", "1/min burst 2", "during")];
    assert!(limits.check(&after, None).await.is_admitted());
    assert!(limits.check(&after, None).await.is_admitted());
    assert!(!limits.check(&after, None).await.is_admitted());
}

/// Three outages within the log interval give one warning; the two that
/// were not logged are reported once the interval has passed.
#[tokio::test]
async fn flapping_outages_logged_once() {
    let Some(mut server) = OwnRedis::start().await else {
        return;
    };
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let redis = limiter(&server.url(), &unique_prefix());
    let node = SharedLimiter::new(redis.clone(), FailurePolicy::Local);
    let limits = [limit("key", "100/s", "flapping")];
    let started = Instant::now();

    for _ in 0..3 {
        assert!(node.check(&limits, None).await.is_admitted());
        server.stop();
        node.check(&limits, None).await;
        assert!(!node.health().is_up());
        server.restart().await;
        wait_until_up(node.health()).await;
    }
    let outages_seen = node.failures();
    assert!(outages_seen >= 3, "{outages_seen} failed calls counted");
    assert_eq!(logs.count("redis is unreachable"), 1, "{}", logs.text());
    assert_eq!(logs.count("redis is reachable again"), 1, "{}", logs.text());

    // The report comes once 60 s have passed since the warning.
    let deadline = started + Duration::from_secs(75);
    while logs.count("outages_not_logged=2") == 0 {
        assert!(
            Instant::now() < deadline,
            "no line reported the outages not logged:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(logs.count("redis is unreachable"), 1, "{}", logs.text());
    assert_eq!(logs.count("redis is reachable again"), 2, "{}", logs.text());
    assert!(node.check(&limits, None).await.is_admitted());
}
