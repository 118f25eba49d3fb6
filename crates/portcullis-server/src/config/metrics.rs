//! The `[metrics]` table, checked.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::ConfigError;
use super::raw::RawMetrics;

/// Default address of the metrics listener: loopback, on the port that
/// OpenTelemetry's Prometheus exporter also uses by default.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// The `[metrics]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address of the metrics listener, or `None` for `listen = "off"`.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: Some(DEFAULT_METRICS_LISTEN),
        }
    }
}

pub(super) fn check_metrics(
    raw: &RawMetrics,
    server_listen: SocketAddr,
) -> Result<MetricsConfig, ConfigError> {
    let listen = match raw.listen.as_deref() {
        None => Some(DEFAULT_METRICS_LISTEN),
        Some("off") => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid(
                "metrics.listen",
                format!(
                    "invalid socket address {text:?}; expected an IP address and a port, such \
                     as 127.0.0.1:9464, or \"off\""
                ),
            )
        })?),
    };
    if let Some(address) = listen
        && address.port() != 0
        && address == server_listen
    {
        return Err(ConfigError::invalid(
            "metrics.listen",
            format!(
                "{address} is also server.listen; give the metrics listener its own port, \
                 such as 127.0.0.1:9464"
            ),
        ));
    }
    Ok(MetricsConfig { listen })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8443));

    fn check(listen: Option<&str>) -> Result<MetricsConfig, ConfigError> {
        let raw = RawMetrics {
            listen: listen.map(str::to_owned),
        };
        check_metrics(&raw, SERVER)
    }

    #[test]
    fn listen_defaults_to_loopback() {
        let config = check(None).unwrap();
        assert_eq!(config.listen, Some(DEFAULT_METRICS_LISTEN));
        assert!(DEFAULT_METRICS_LISTEN.ip().is_loopback());
        assert_eq!(config, MetricsConfig::default());
    }

    #[test]
    fn listen_off_disables() {
        assert_eq!(check(Some("off")).unwrap().listen, None);
    }

    #[test]
    fn listen_accepts_any_address() {
        let config = check(Some("0.0.0.0:9100")).unwrap();
        assert_eq!(config.listen, Some("0.0.0.0:9100".parse().unwrap()));
        let port_zero = check(Some("127.0.0.1:0")).unwrap();
        assert_eq!(port_zero.listen, Some("127.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn invalid_listen_names_setting() {
        for text in ["localhost:9464", "9464", "OFF", ""] {
            let error = check(Some(text)).unwrap_err().to_string();
            assert!(error.starts_with("metrics.listen: "), "{text:?}: {error}");
            assert!(error.contains("\"off\""), "{text:?}: {error}");
        }
    }

    #[test]
    fn listen_must_differ_from_server() {
        let error = check(Some("127.0.0.1:8443")).unwrap_err().to_string();
        assert!(error.contains("also server.listen"), "{error}");
    }
}
