//! Seeing credwrap work: `/healthz` on every listener, and `/credwrap/status` on the loopback
//! listener for `credwrap status`.
//!
//! `/healthz` needs no secret and gives none: whether each role's credential may be served with
//! the listener's minimum remaining lifetime, when it expires, when it is refreshed next, and
//! when refreshing will stop. Not the keys, not the endpoint's secret, not the role's ARN or
//! session name (a probe's log is read by many). It is an ordinary request for admission, so a
//! flood of them cannot starve the clients. `/credwrap/status` asks for the endpoint's secret,
//! as a credential request does, and adds what an operator needs to act: the role and its
//! source, STS calls made and failed, the last error and when, the listeners.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::http::{self, Reply};
use crate::broker::activity::Activity;
use crate::broker::CredentialReader;
use crate::role::credential::fmt_expiration;

pub const HEALTH_PATH: &str = "/healthz";
pub const STATUS_PATH: &str = "/credwrap/status";
/// The file in the private directory that says where the status door is, and its secret.
pub const STATUS_FILE: &str = "status";
/// The name the default role goes by in `roles` when there are named ones too.
pub const DEFAULT_NAME: &str = "default";

/// One role as a listener serves it: its name (none for the default role), its broker's
/// credential, and the remaining lifetime this listener's clients need.
pub struct Served<'a> {
    pub name: Option<&'a str>,
    pub reader: &'a CredentialReader,
    pub min_remaining: Duration,
}

/// How one role is doing now.
struct State {
    servable: bool,
    expires: SystemTime,
    next_refresh: SystemTime,
    activity: Activity,
}

impl State {
    fn of(served: &Served<'_>, revoked: bool) -> State {
        let lease = served.reader.held();
        let now = served.reader.now();
        State {
            servable: !revoked && lease.servable(served.min_remaining, now),
            expires: lease.credential.expiration,
            next_refresh: lease.schedule.refresh_at,
            activity: served.reader.activity(),
        }
    }

    /// What `/healthz` says of it: nothing an operator did not already put in a probe.
    fn public(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("status".into(), status_word(self.servable).into());
        m.insert("expires".into(), fmt_expiration(self.expires).into());
        m.insert(
            "next_refresh".into(),
            fmt_expiration(self.next_refresh).into(),
        );
        m.insert("renewal_horizon".into(), horizon(&self.activity));
        m
    }

    /// What `/credwrap/status` adds.
    fn detailed(&self) -> Map<String, Value> {
        let a = &self.activity;
        let mut m = self.public();
        m.insert("role".into(), a.about.role.clone().into());
        m.insert("source".into(), a.about.source.clone().into());
        m.insert("sts_calls".into(), a.calls.into());
        m.insert("sts_failures".into(), a.failures.into());
        m.insert("refreshes".into(), a.refreshes.into());
        m.insert(
            "last_error".into(),
            match &a.last_error {
                Some(e) => json!({"at": fmt_expiration(e.at), "message": e.message}),
                None => Value::Null,
            },
        );
        m
    }
}

fn status_word(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "unavailable"
    }
}

fn horizon(a: &Activity) -> Value {
    match &a.horizon {
        Some(h) => json!({"at": fmt_expiration(h.at), "reason": h.what, "to_go_on": h.fix}),
        None => Value::Null,
    }
}

/// The body both answers share: the overall status, the default role's (or the first named
/// role's) times at the top, and with named roles each under its name.
fn body(
    roles: &[Served<'_>],
    revoked: bool,
    detail: impl Fn(&State) -> Map<String, Value>,
) -> (bool, Map<String, Value>) {
    let states: Vec<(Option<&str>, State)> = roles
        .iter()
        .map(|r| (r.name, State::of(r, revoked)))
        .collect();
    let healthy = !revoked && !states.is_empty() && states.iter().all(|(_, s)| s.servable);
    let mut top = Map::new();
    top.insert("status".into(), status_word(healthy).into());
    if let Some((_, first)) = states.first() {
        let mut main = detail(first);
        main.remove("status");
        top.extend(main);
    }
    if states.len() > 1 || states.iter().any(|(name, _)| name.is_some()) {
        let named: Map<String, Value> = states
            .iter()
            .map(|(name, s)| {
                let name = name.unwrap_or(DEFAULT_NAME).to_string();
                (name, Value::Object(detail(s)))
            })
            .collect();
        top.insert("roles".into(), Value::Object(named));
    }
    (healthy, top)
}

/// `/healthz`: 200 while every role may be served to this listener's clients, 503 otherwise.
pub fn healthz(roles: &[Served<'_>], revoked: bool) -> Reply {
    let (healthy, top) = body(roles, revoked, State::public);
    reply(healthy, Value::Object(top))
}

/// `/credwrap/status`: `/healthz` and what an operator needs to act, for `credwrap status`.
pub fn status(roles: &[Served<'_>], revoked: bool, listeners: &[(String, &'static str)]) -> Reply {
    let (healthy, mut top) = body(roles, revoked, State::detailed);
    top.insert("pid".into(), std::process::id().into());
    top.insert("now".into(), fmt_expiration(SystemTime::now()).into());
    top.insert(
        "listeners".into(),
        listeners
            .iter()
            .map(|(addr, protocol)| json!({"address": addr, "protocol": protocol}))
            .collect::<Vec<_>>()
            .into(),
    );
    reply(healthy, Value::Object(top))
}

fn reply(healthy: bool, body: Value) -> Reply {
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    http::json(status, Bytes::from(body.to_string()))
}
