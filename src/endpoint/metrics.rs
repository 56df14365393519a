//! Prometheus metrics for long-lived serving, in the Prometheus text format (0.0.4), written by
//! `prometheus-client` (the Prometheus project's Rust client) rather than by hand: escaping of
//! label values, `# HELP`/`# TYPE` lines and `_total` suffixes are its business.
//!
//! Two kinds: what the listeners count as they answer (requests by listener and status,
//! connections closed to make room), kept in [`Counters`] only when metrics are asked for; and
//! what each role's broker says at scrape time (calls, failures, refreshes, seconds to expiry,
//! whether servable, seconds to the renewal horizon), read from its [`CredentialReader`].
//! Nothing secret: role names, listener addresses and numbers.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::broker::CredentialReader;

type Labels = Vec<(String, String)>;

/// Where metrics are served: `--metrics` and `--metrics-address`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsPlan {
    pub on_loopback: bool,
    pub address: Option<std::net::SocketAddr>,
}

impl MetricsPlan {
    pub fn wanted(&self) -> bool {
        self.on_loopback || self.address.is_some()
    }
}

/// What the listeners count, shared by all of them.
#[derive(Default)]
pub struct Counters {
    requests: Family<Labels, Counter>,
    closed: Family<Labels, Counter>,
}

impl Counters {
    /// One answered request on `listener`.
    pub fn request(&self, listener: &str, status: u16) {
        let labels = vec![
            ("listener".to_string(), listener.to_string()),
            ("status".to_string(), status.to_string()),
        ];
        self.requests.get_or_create(&labels).inc();
    }

    /// A connection admission closed on `listener`: `to_make_room` (the oldest pending or a
    /// stuck one, when full) or `after_its_share` (`Connection: close` under pressure).
    pub fn closed(&self, listener: &str, why: &'static str) {
        let labels = vec![
            ("listener".to_string(), listener.to_string()),
            ("reason".to_string(), why.to_string()),
        ];
        self.closed.get_or_create(&labels).inc();
    }
}

/// One role as the metrics see it: its name (`default` for the default role), its broker's
/// credential, and the remaining lifetime its clients need.
pub struct Role {
    pub name: String,
    pub reader: CredentialReader,
    pub min_remaining: Duration,
}

/// Everything a scrape reads.
pub struct Scrape {
    pub counters: Arc<Counters>,
    pub roles: Vec<Role>,
}

impl Scrape {
    /// The metrics now, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("credwrap");
        registry.register(
            "requests",
            "Requests answered, by listener and HTTP status",
            self.counters.requests.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections admission closed, by listener and reason",
            self.counters.closed.clone(),
        );
        let calls = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let refreshes = Family::<Labels, Counter>::default();
        let expiry = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let servable = Family::<Labels, Gauge>::default();
        let horizon = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for role in &self.roles {
            let labels = vec![("role".to_string(), role.name.clone())];
            let activity = role.reader.activity();
            let lease = role.reader.held();
            let now = role.reader.now();
            calls.get_or_create(&labels).inc_by(activity.calls);
            failures.get_or_create(&labels).inc_by(activity.failures);
            refreshes.get_or_create(&labels).inc_by(activity.refreshes);
            expiry
                .get_or_create(&labels)
                .set(seconds_from(now, lease.credential.expiration));
            servable
                .get_or_create(&labels)
                .set(i64::from(lease.servable(role.min_remaining, now)));
            if let Some(h) = &activity.horizon {
                horizon.get_or_create(&labels).set(seconds_from(now, h.at));
            }
        }
        registry.register("sts_calls", "Attempts to get a role credential", calls);
        registry.register("sts_failures", "Attempts that failed", failures);
        registry.register(
            "refreshes",
            "Credentials published after the first",
            refreshes,
        );
        registry.register(
            "credential_expiry_seconds",
            "Seconds until the credential held expires (negative: expired)",
            expiry,
        );
        registry.register(
            "credential_servable",
            "1 while the credential held may be served to the role's clients",
            servable,
        );
        registry.register(
            "renewal_horizon_seconds",
            "Seconds until refreshing stops working (only roles with a known horizon)",
            horizon,
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// `Content-Type` of what [`Scrape::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// `to - from` in seconds, negative when `to` is past.
fn seconds_from(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
