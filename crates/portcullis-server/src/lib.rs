//! Everything in Portcullis that speaks HTTP or TLS.
//!
//! - [`config`]: the layered configuration (file, environment) and its checks.
//! - [`tls`]: server certificates, including the development CA.
//! - [`listener`]: the accept loop, TLS handshakes and graceful drain.
//! - [`address_limit`]: the cap on open connections per client address.
//! - [`app`]: the shared state and the router that joins the surfaces below.
//! - [`gateway`]: route matching, path normalization and the upstream proxy.
//! - [`auth`]: reading credentials from requests and verifying API keys.
//! - [`cache`]: the credential cache and the change feed that keeps it fresh.
//! - [`usage`]: buffered last-used times, usage counts and failure records.
//! - [`auth_successes`]: successful authentications per credential and minute.
//! - [`credential_audit`]: the credential hygiene report of `portcullis audit`.
//! - [`audit_retention`]: hourly pruning of audit records past retention.
//! - [`verify`]: `POST /v1/keys/verify` for backends that check keys themselves.
//! - [`leaks`]: `POST /v1/leaks`, signed leak reports that revoke or flag keys.
//! - [`alerts`]: anomaly rules, stored alerts and signed webhook deliveries.
//! - [`admin`]: the admin API under `/admin/v1/`.
//! - [`oauth`]: the OAuth 2.0 authorization server: signing keys and JWTs.
//! - [`openapi`]: the OpenAPI document of the admin, verify and OAuth APIs.
//! - [`manage`]: tenant and key operations shared by the admin API and the CLI.
//! - [`clients`]: OAuth client operations and the check of a client's JWKS.
//! - [`users`]: end users and their Argon2id password hashes.
//! - [`sign_in`]: the password check of the browser sign-in forms.
//! - [`dashboard`]: the tenants' self-service pages under `/dashboard/`.
//! - [`docs`]: the documentation site under `/docs/`, embedded at build time.
//! - [`pki`]: client certificate chain verification for mutual TLS.
//! - [`problem`]: RFC 9457 problem details and RFC 6750 challenges.
//! - [`ratelimit`]: rate limits, use counts and brute-force protection.
//! - [`client_ip`]: the one resolver of a request's client address.
//! - [`telemetry`]: logging set-up and the per-request log line.
//! - [`metrics`]: Prometheus metrics and their separate listener.
//! - [`health`]: `/healthz` and `/readyz`.

pub mod activity;
pub mod address_limit;
pub mod admin;
pub mod alerts;
pub mod app;
pub mod audit_retention;
pub mod auth;
pub mod auth_successes;
pub mod body;
pub mod cache;
pub mod client_ip;
pub mod client_tenants;
pub mod clients;
pub mod config;
pub mod credential_audit;
pub mod dashboard;
pub mod docs;
pub mod gateway;
pub mod health;
pub mod leaks;
pub mod listener;
pub mod manage;
pub mod method_not_allowed;
pub mod metrics;
pub mod oauth;
pub mod openapi;
pub mod pki;
pub mod problem;
pub mod ratelimit;
pub mod sign_in;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod users;
pub mod verify;
