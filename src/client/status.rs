//! `credwrap status [--pid PID] [--json]`: how a running credwrap is doing, for a person, a
//! shell prompt or a CI step. It asks the loopback listener's status door with the secret this
//! process was handed (or, with `--pid`, the one in that credwrap's private directory, which
//! only the same user can read): no more than the command already has.
//!
//! Which credwrap: the PID given; else the one the endpoint variables point at (the one serving
//! this process); else `CREDWRAP_PID`. Exit 0 when healthy, 1 when not or when there is none,
//! 2 on usage.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use clap::Parser;
use hyper::StatusCode;
use serde_json::Value;

use super::ask::{self, AskError, Target};
use crate::endpoint::health::{STATUS_FILE, STATUS_PATH};
use crate::sys::secret::Secret;

/// The first argument that makes credwrap this client.
pub const SUBCOMMAND: &str = "status";

/// How a running credwrap is doing: its role(s), expiry, next refresh, STS calls and errors,
/// listeners, and when refreshing will stop. Exit 0 when healthy, 1 when not (or none is
/// running), 2 on usage.
#[derive(Parser, Debug)]
#[command(name = "credwrap status")]
struct StatusCli {
    /// The credwrap to ask (default: the one serving this process, from its endpoint
    /// variables, else CREDWRAP_PID).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Print credwrap's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// With `status` as the first argument, runs the client and exits; otherwise returns at once.
/// A command named `status` runs as `credwrap -- status`.
pub fn run_if_asked() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).and_then(|a| a.to_str()) != Some(SUBCOMMAND) {
        return;
    }
    let cli = match StatusCli::try_parse_from(&args[1..]) {
        Ok(cli) => cli,
        // --help and --version print and exit 0; usage errors exit 2.
        Err(e) => e.exit(),
    };
    std::process::exit(match run(&cli) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(message) => {
            eprintln!("credwrap status: {message}");
            1
        }
    })
}

/// Asks and prints; whether it is healthy.
fn run(cli: &StatusCli) -> Result<bool, String> {
    let (target, secret, named_by) = locate(cli.pid)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("could not start: {e}"))?;
    let (status, body) = runtime
        .block_on(ask::get(&target, secret.as_ref()))
        .map_err(|e| match e {
            AskError::Gone(e) => format!(
                "no credwrap answers at {} ({named_by}): {e}; it is not running any more",
                target.authority
            ),
            e => e.message(),
        })?;
    if !matches!(status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE) {
        return Err(format!("{} ({named_by})", ask::said(status, &body)));
    }
    let answer: Value = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "the answer at {} is not credwrap's status",
            target.authority
        )
    })?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        print!("{}", describe(&answer, SystemTime::now()));
    }
    Ok(status == StatusCode::OK)
}

/// Where to ask, with what secret, and what named it (for messages).
fn locate(pid: Option<u32>) -> Result<(Target, Option<Secret>, String), String> {
    if let Some(pid) = pid {
        return from_private_dir(pid, format!("--pid {pid}"));
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // The container URI names a path already; the IMDS endpoint is a base, given one here.
    let endpoints = [
        var("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .map(|u| ("AWS_CONTAINER_CREDENTIALS_FULL_URI", u)),
        var("AWS_EC2_METADATA_SERVICE_ENDPOINT").map(|e| {
            let uri = format!("{}/", e.trim_end_matches('/'));
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", uri)
        }),
    ];
    for (name, uri) in endpoints.into_iter().flatten() {
        if let Ok(target) = Target::parse(&uri) {
            let token = ask::endpoint_token()?;
            return Ok((target.with_path(STATUS_PATH), token, name.to_string()));
        }
    }
    if let Some(pid) = var(crate::serve::EXPORTED_PID) {
        let pid = pid
            .parse()
            .map_err(|_| format!("CREDWRAP_PID={pid} is not a PID"))?;
        return from_private_dir(pid, "CREDWRAP_PID".to_string());
    }
    Err(
        "no credwrap named: run this from a process credwrap serves (its command, or a later \
         step of a whole-job credwrap), or give --pid"
            .into(),
    )
}

/// The status door and its secret, from the private directory of credwrap `pid`.
fn from_private_dir(
    pid: u32,
    named_by: String,
) -> Result<(Target, Option<Secret>, String), String> {
    let dir = crate::sys::private_dir::of_process(pid).ok_or_else(|| {
        format!(
            "no credwrap of this user runs as PID {pid} ({named_by}): none is running, or its \
             private directory is not in TMPDIR"
        )
    })?;
    let text = std::fs::read_to_string(dir.join(STATUS_FILE)).map_err(|e| {
        format!("credwrap {pid} has no status door ({e}): it is older than this one, or starting")
    })?;
    let mut lines = text.lines();
    let target = Target::parse(lines.next().unwrap_or_default())?;
    let secret = lines.next().filter(|s| !s.is_empty()).map(Secret::new);
    Ok((target, secret, named_by))
}

/// The answer for a person, a line a fact.
fn describe(answer: &Value, now: SystemTime) -> String {
    let healthy = answer["status"] == "ok";
    let mut out = format!(
        "credwrap {}: {}\n",
        answer["pid"],
        if healthy {
            "healthy"
        } else {
            "NOT healthy: a credential cannot be served"
        }
    );
    match answer["roles"].as_object() {
        Some(roles) => {
            for (name, role) in roles {
                out.push_str(&format!("role {name}:\n"));
                out.push_str(&describe_role(role, now, "  "));
            }
        }
        None => out.push_str(&describe_role(answer, now, "")),
    }
    let listeners: Vec<String> = answer["listeners"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|l| format!("{} ({})", text(&l["address"]), text(&l["protocol"])))
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&format!("listeners: {}\n", listeners.join(", ")));
    out
}

fn describe_role(role: &Value, now: SystemTime, indent: &str) -> String {
    let mut out = String::new();
    let mut line = |s: String| out.push_str(&format!("{indent}{s}\n"));
    if !text(&role["role"]).is_empty() {
        line(format!("role: {}", text(&role["role"])));
    }
    line(format!("source: {}", text(&role["source"])));
    line(format!(
        "credential: {}, expires {}, next refresh {}",
        text(&role["status"]),
        when(&role["expires"], now),
        when(&role["next_refresh"], now)
    ));
    let calls = role["sts_calls"].as_u64().unwrap_or_default();
    line(format!(
        "STS: {calls} call{}, {} failed",
        if calls == 1 { "" } else { "s" },
        role["sts_failures"]
    ));
    if let Some(e) = role["last_error"].as_object() {
        line(format!(
            "last error: {}: {}",
            when(&e["at"], now),
            text(&e["message"])
        ));
    }
    match role["renewal_horizon"].as_object() {
        Some(h) => line(format!(
            "refreshing stops: {}, when {}; to go on: {}",
            when(&h["at"], now),
            text(&h["reason"]),
            text(&h["to_go_on"])
        )),
        None => line("refreshing stops: never, as far as credwrap can see".into()),
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// `2026-12-06T18:00:00Z (in 42m)`, or `(3m ago)`.
fn when(v: &Value, now: SystemTime) -> String {
    let Some(t) = v.as_str() else {
        return "?".into();
    };
    let parsed =
        aws_smithy_types::DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime)
            .ok()
            .and_then(|d| SystemTime::try_from(d).ok());
    let Some(at) = parsed else {
        return t.to_string();
    };
    let minutes = |d: Duration| {
        let s = d.as_secs();
        if s < 120 {
            format!("{s}s")
        } else {
            format!("{}m", s / 60)
        }
    };
    match at.duration_since(now) {
        Ok(ahead) => format!("{t} (in {})", minutes(ahead)),
        Err(e) => format!("{t} ({} ago)", minutes(e.duration())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_reads_each_role_and_what_stops_it() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let answer = serde_json::json!({
            "status": "unavailable", "pid": 42,
            "listeners": [{"address": "127.0.0.1:4000", "protocol": "container credentials"}],
            "roles": {
                "default": {"status": "ok", "role": "arn:aws:iam::123456789012:role/a",
                    "source": "profile dev", "expires": "2027-01-15T08:30:00Z",
                    "next_refresh": "2027-01-15T08:10:00Z", "sts_calls": 3, "sts_failures": 0,
                    "last_error": null, "renewal_horizon": null},
                "ops": {"status": "unavailable", "role": "arn:aws:iam::123456789012:role/b",
                    "source": "profile ops with an MFA session", "expires": "2027-01-15T07:59:00Z",
                    "next_refresh": "2027-01-15T07:50:00Z", "sts_calls": 9, "sts_failures": 6,
                    "last_error": {"at": "2027-01-15T07:59:30Z", "message": "ExpiredToken"},
                    "renewal_horizon": {"at": "2027-01-15T07:58:00Z",
                        "reason": "the MFA session ends", "to_go_on": "restart"}}
            }
        });
        let said = describe(&answer, now);
        assert!(said.starts_with("credwrap 42: NOT healthy"), "{said}");
        assert!(
            said.contains("role ops:\n  role: arn:aws:iam::123456789012:role/b"),
            "{said}"
        );
        assert!(
            said.contains("expires 2027-01-15T08:30:00Z (in 30m)"),
            "{said}"
        );
        assert!(said.contains("STS: 9 calls, 6 failed"), "{said}");
        assert!(
            said.contains("last error: 2027-01-15T07:59:30Z (30s ago): ExpiredToken"),
            "{said}"
        );
        assert!(
            said.contains(
                "refreshing stops: 2027-01-15T07:58:00Z (2m ago), when the MFA session ends"
            ),
            "{said}"
        );
        assert!(
            said.contains("listeners: 127.0.0.1:4000 (container credentials)"),
            "{said}"
        );
    }
}
