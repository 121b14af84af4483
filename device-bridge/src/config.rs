//! Configuration from the environment, checked before anything starts.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::sim::SimTimings;

/// The shared secret between worker and bridge. Never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Sim,
    Whatsapp,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub secret: Secret,
    /// Base URL of the worker; events go to its `/bridge/v1/events`.
    pub worker_url: String,
    pub data_dir: PathBuf,
    pub engine: EngineKind,
    pub sim: SimTimings,
    /// `RETENTION_DAYS`: how long resolved sends' tombstones, dead letters and
    /// unreferenced media are kept; the worker's setting of the same name.
    pub retention: Duration,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("BRIDGE_SECRET is required: set it to the secret the worker signs its calls with")]
    MissingSecret,
    #[error(
        "WAGATE_ENGINE is required: `whatsapp` to connect to WhatsApp, or `sim` for the simulated network \
         (local development and tests only: it reports messages delivered while sending nothing)"
    )]
    MissingEngine,
    #[error("{var}={value:?} is not valid: {expected}")]
    Invalid { var: &'static str, value: String, expected: &'static str },
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads each variable through `lookup`; unset and empty mean "use the default".
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let secret = get("BRIDGE_SECRET").map(Secret).ok_or(ConfigError::MissingSecret)?;
        let worker_url = get("WAGATE_WORKER_URL").unwrap_or_else(|| "http://127.0.0.1:8787".into());
        if !(worker_url.starts_with("http://") || worker_url.starts_with("https://")) {
            return Err(invalid("WAGATE_WORKER_URL", worker_url, "an http:// or https:// URL"));
        }
        // No default: a bridge that silently ran the simulator would look like it works.
        let engine = match get("WAGATE_ENGINE").as_deref() {
            None => return Err(ConfigError::MissingEngine),
            Some("sim") => EngineKind::Sim,
            Some("whatsapp") => EngineKind::Whatsapp,
            Some(other) => return Err(invalid("WAGATE_ENGINE", other.into(), "`sim` or `whatsapp`")),
        };
        Ok(Self {
            host: parse(&get, "BRIDGE_HOST", "an IP address such as 127.0.0.1")?
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
            port: parse(&get, "BRIDGE_PORT", "a port number")?.unwrap_or(8788),
            secret,
            worker_url: worker_url.trim_end_matches('/').to_owned(),
            data_dir: get("WAGATE_DATA_DIR").map_or_else(|| PathBuf::from("./.data/bridge"), PathBuf::from),
            engine,
            retention: match parse::<f64>(&get, "RETENTION_DAYS", RETENTION_EXPECTED)? {
                None => DEFAULT_RETENTION,
                Some(days) if days > 0.0 && days <= MAX_RETENTION_DAYS => Duration::from_secs_f64(days * 86_400.0),
                Some(days) => return Err(invalid("RETENTION_DAYS", days.to_string(), RETENTION_EXPECTED)),
            },
            sim: SimTimings {
                deliver: Duration::from_millis(parse(&get, "WAGATE_SIM_DELIVER_MS", "milliseconds")?.unwrap_or(50)),
                read: Duration::from_millis(parse(&get, "WAGATE_SIM_READ_MS", "milliseconds")?.unwrap_or(200)),
                qr_ttl: Duration::from_secs(match parse(&get, "WAGATE_SIM_QR_TTL_S", QR_TTL_EXPECTED)? {
                    Some(0) => return Err(invalid("WAGATE_SIM_QR_TTL_S", "0".into(), QR_TTL_EXPECTED)),
                    ttl => ttl.unwrap_or(20),
                }),
            },
        })
    }
}

const QR_TTL_EXPECTED: &str = "a positive number of seconds";
const RETENTION_EXPECTED: &str = "a positive number of days (fractions allowed), at most 36500";
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
const MAX_RETENTION_DAYS: f64 = 36_500.0;

fn invalid(var: &'static str, value: String, expected: &'static str) -> ConfigError {
    ConfigError::Invalid { var, value, expected }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    get(var).map(|value| value.trim().parse().map_err(|_| invalid(var, value, expected))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_local_stack_contract() {
        let c = config(&[("BRIDGE_SECRET", "s3cret"), ("WAGATE_ENGINE", "sim")]).unwrap();
        assert_eq!((c.host.to_string().as_str(), c.port), ("127.0.0.1", 8788));
        assert_eq!(c.worker_url, "http://127.0.0.1:8787");
        assert_eq!(c.data_dir, PathBuf::from("./.data/bridge"));
        assert_eq!(c.engine, EngineKind::Sim);
        assert_eq!(c.sim.deliver, Duration::from_millis(50));
        assert_eq!(c.sim.read, Duration::from_millis(200));
        assert_eq!(c.sim.qr_ttl, Duration::from_secs(20));
        assert_eq!(c.retention, Duration::from_secs(30 * 86_400));
        assert_eq!(c.secret.expose(), b"s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn overrides_are_read_and_checked() {
        let c = config(&[
            ("BRIDGE_SECRET", "x"),
            ("BRIDGE_PORT", "9000"),
            ("WAGATE_WORKER_URL", "https://api.example.com/"),
            ("WAGATE_ENGINE", "whatsapp"),
            ("WAGATE_SIM_DELIVER_MS", "5"),
            ("RETENTION_DAYS", "0.5"),
        ])
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.worker_url, "https://api.example.com");
        assert_eq!(c.engine, EngineKind::Whatsapp);
        assert_eq!(c.sim.deliver, Duration::from_millis(5));
        assert_eq!(c.retention, Duration::from_secs(43_200));

        assert_eq!(config(&[]).unwrap_err(), ConfigError::MissingSecret);
        assert_eq!(config(&[("BRIDGE_SECRET", " ")]).unwrap_err(), ConfigError::MissingSecret);
        assert_eq!(config(&[("BRIDGE_SECRET", "x")]).unwrap_err(), ConfigError::MissingEngine);
        assert_eq!(config(&[("BRIDGE_SECRET", "x"), ("WAGATE_ENGINE", " ")]).unwrap_err(), ConfigError::MissingEngine);
        for (var, value) in [
            ("BRIDGE_PORT", "http"),
            ("BRIDGE_HOST", "localhost"),
            ("WAGATE_ENGINE", "baileys"),
            ("WAGATE_WORKER_URL", "127.0.0.1:8787"),
            ("WAGATE_SIM_READ_MS", "-1"),
            ("WAGATE_SIM_QR_TTL_S", "0"),
            ("RETENTION_DAYS", "0"),
            ("RETENTION_DAYS", "NaN"),
            ("RETENTION_DAYS", "-1"),
        ] {
            let err = config(&[("BRIDGE_SECRET", "x"), ("WAGATE_ENGINE", "sim"), (var, value)]).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { var: v, .. } if v == var), "{var}={value}: {err}");
        }
    }
}
