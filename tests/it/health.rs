//! Seeing credwrap work: `/healthz` on the listener, `credwrap status` from the processes it
//! serves (and by PID), and the renewal horizon said at start, before it is reached, and when
//! it is, each with compressed time.

use crate::support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use support::fake_sts::ROLE_ARN;
use support::{Fault, Output, Running, Sandbox};

const PROD: &str = "arn:aws:iam::222222222222:role/prod";

/// `--serve` in the foreground (its log on stderr), with `args`; its exports once printed.
fn serve(sb: &Sandbox, args: &[&str]) -> (Running, HashMap<String, String>) {
    let mut cmd = sb.credwrap();
    cmd.args(["-v", "--serve"]).args(args);
    let server = support::start(&mut cmd);
    let exports = server.exports();
    assert!(exports.contains_key("CREDWRAP_PID"), "{exports:?}");
    (server, exports)
}

/// `curl` of `path` on the loopback listener the exports point at: status and body.
fn curl(exports: &HashMap<String, String>, path: &str, token: Option<&str>) -> (u16, String) {
    let uri = &exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"];
    let base = &uri[..uri[7..].find('/').unwrap() + 7];
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "5", "-w", "\n%{http_code}"]);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: {token}")]);
    }
    let out = support::run(cmd.arg(format!("{base}{path}")));
    let parsed = out.stdout.trim_end().rsplit_once('\n');
    let status = parsed.and_then(|(_, s)| s.parse().ok());
    let (Some((body, _)), Some(status)) = (parsed, status) else {
        panic!("curl {base}{path}: {}\n{}", out.stdout, out.stderr);
    };
    (status, body.to_string())
}

/// `credwrap status ARGS` with the environment a later process of the job has.
fn status(exports: &HashMap<String, String>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_credwrap"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(exports)
        .arg("status")
        .args(args);
    support::run(&mut cmd)
}

/// Nothing secret in `text`: no key, secret or session token STS issued, not the endpoint's
/// token, not the role's ARN or session name.
fn assert_no_secret(sb: &Sandbox, exports: &HashMap<String, String>, text: &str) {
    for (key, secret, token) in sb.sts.issued_secrets() {
        for s in [&key, &secret, &token] {
            assert!(!text.contains(s.as_str()), "an issued secret in {text}");
        }
    }
    let endpoint = &exports["AWS_CONTAINER_AUTHORIZATION_TOKEN"];
    assert!(
        !text.contains(endpoint.as_str()),
        "the endpoint's token in {text}"
    );
    for word in [ROLE_ARN, PROD, "assumed-role", "credwrap-"] {
        assert!(!text.contains(word), "{word} in {text}");
    }
}

/// `/healthz` answers 200 while the credential can be served, 503 once STS stops answering and
/// the credential nears its end, and 200 again when STS is back; at no point does it give a
/// secret. `credwrap status` says the same, exits 0 or 1 with it, and adds the role, its
/// source, the STS calls and the last error, from the exports or by PID. The named role is
/// under its name.
#[test]
fn healthz_and_status_follow_sts_and_give_no_secret() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    let (server, exports) = serve(&sb, &["--role", &format!("prod={PROD}")]);

    let (code, body) = curl(&exports, "/healthz", None);
    assert_eq!(code, 200, "{body}");
    println!("/healthz, healthy: {code} {body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["roles"]["prod"]["status"], "ok", "{body}");
    assert_eq!(health["roles"]["default"]["status"], "ok", "{body}");
    assert!(health["expires"].as_str().unwrap().ends_with('Z'), "{body}");
    assert!(health["next_refresh"].is_string(), "{body}");
    assert!(health["renewal_horizon"].is_null(), "{body}");
    assert_no_secret(&sb, &exports, &body);

    // The detail asks for the endpoint's secret.
    let (code, _) = curl(&exports, "/credwrap/status", None);
    assert_eq!(code, 401);
    let token = exports["AWS_CONTAINER_AUTHORIZATION_TOKEN"].as_str();
    let (code, body) = curl(&exports, "/credwrap/status", Some(token));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(ROLE_ARN), "{body}");

    let out = status(&exports, &[]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    println!("credwrap status, healthy:\n{}", out.stdout);
    assert!(out.stdout.contains(": healthy"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("role: {ROLE_ARN}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("role prod:"), "{}", out.stdout);
    assert!(
        out.stdout.contains("(container credentials)"),
        "{}",
        out.stdout
    );

    // STS stops answering: 503 once the credential has too little left, and the last error.
    sb.sts.set_fault(Fault::ServerError);
    support::eventually("/healthz 503", || {
        (curl(&exports, "/healthz", None).0 == 503).then_some(())
    });
    let (_, body) = curl(&exports, "/healthz", None);
    println!("/healthz, STS failing: {body}");
    println!(
        "credwrap status, STS failing:\n{}",
        status(&exports, &[]).stdout
    );
    assert!(body.contains("\"unavailable\""), "{body}");
    assert_no_secret(&sb, &exports, &body);
    let out = status(&exports, &["--json"]);
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    let said: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let default = &said["roles"]["default"];
    assert_eq!(default["status"], "unavailable", "{}", out.stdout);
    assert!(
        default["sts_failures"].as_u64().unwrap() >= 1,
        "{}",
        out.stdout
    );
    assert!(
        default["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("ServiceUnavailable"),
        "{}",
        out.stdout
    );
    assert_no_secret(
        &sb,
        &exports,
        &out.stdout
            .replace(ROLE_ARN, "")
            .replace(PROD, "")
            .replace("assumed-role", ""),
    );

    // Back: 200 again, and by PID as well as from the exports.
    sb.sts.set_fault(Fault::None);
    support::eventually("/healthz 200 again", || {
        (curl(&exports, "/healthz", None).0 == 200).then_some(())
    });
    let pid = exports["CREDWRAP_PID"].clone();
    // Its private directory is in the sandbox's TMPDIR, as a process of the same job's would be.
    let mut same_tmp = HashMap::new();
    same_tmp.insert("TMPDIR".to_string(), sb.path("tmp").display().to_string());
    let out = status(&same_tmp, &["--pid", &pid]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("credwrap {pid}: healthy")),
        "{}",
        out.stdout
    );

    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    // Gone: it says so, and exits 1.
    let after = status(&exports, &[]);
    println!("credwrap status, credwrap gone: {}", after.stderr);
    assert_eq!(after.code(), Some(1), "{}", after.stderr);
    support::assert_stderr_has(&after, "it is not running any more");
}

/// The command itself asks: `credwrap status` inside `credwrap -- ...` finds its credwrap from
/// the endpoint variables. With none to ask it exits 1, and a bad option is usage (2).
#[test]
fn status_from_the_command_and_without_a_credwrap() {
    let sb = Sandbox::new();
    let me = env!("CARGO_BIN_EXE_credwrap");
    let out = support::run(sb.credwrap().args(["--", me, "status"]));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(": healthy"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("role: {ROLE_ARN}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("source: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{}",
        out.stdout
    );

    // Beside an IMDS endpoint, which has no secret: found from its variable.
    let out = support::run(
        sb.credwrap()
            .args(["--endpoint", "imds", "--", me, "status"]),
    );
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("(IMDSv2)"), "{}", out.stdout);

    let alone = status(&HashMap::new(), &[]);
    assert_eq!(alone.code(), Some(1), "{}", alone.stderr);
    support::assert_stderr_has(&alone, "no credwrap named");
    let nobody = status(&HashMap::new(), &["--pid", "1"]);
    assert_eq!(nobody.code(), Some(1), "{}", nobody.stderr);
    support::assert_stderr_has(&nobody, "no credwrap of this user runs as PID 1");
    let usage = status(&HashMap::new(), &["--no-such-option"]);
    assert_eq!(usage.code(), Some(2), "{}", usage.stderr);
}

/// An MFA session of seconds: at start credwrap says when refreshing will stop (loudly: even
/// the first refresh comes after it), warns once before the last refresh, and says clearly when
/// it is reached; `/healthz` and `status` carry the horizon.
#[test]
fn the_mfa_sessions_end_is_said_at_start_before_and_when_reached() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(4));
    sb.sts.set_session_lifetime(Duration::from_secs(9));
    let (server, exports) = serve(
        &sb,
        &[
            "--mfa-serial",
            "arn:aws:iam::111111111111:mfa/me",
            "--mfa-code",
            "123456",
        ],
    );
    let (_, body) = curl(&exports, "/healthz", None);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health["renewal_horizon"]["reason"], "the MFA session ends",
        "{body}"
    );
    let near = server.log_until("the warning before", |l| {
        l.contains("refreshing will stop at")
    });
    assert!(
        near.contains("WARN") && near.contains("the MFA session ends"),
        "{near}"
    );
    let reached = server.log_until("the error", |l| l.contains("refreshing has stopped"));
    assert!(reached.contains("ERROR"), "{reached}");
    assert!(reached.contains("--mfa-duration"), "{reached}");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    let start = out
        .stderr
        .lines()
        .find(|l| l.contains("refreshing can go on until"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        start.contains("WARN") && start.contains("the MFA session ends"),
        "{start}"
    );
    assert_eq!(
        out.stderr.matches("refreshing will stop at").count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("refreshing has stopped").count(),
        1,
        "{}",
        out.stderr
    );
}

/// `--max-lifetime` is a bound too, said at start as information: it is the operator's own.
#[test]
fn max_lifetime_is_the_horizon_when_nothing_ends_sooner() {
    let sb = Sandbox::new();
    let (server, exports) = serve(&sb, &["--max-lifetime", "1h"]);
    let out = status(&exports, &["--json"]);
    let said: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        said["renewal_horizon"]["reason"], "--max-lifetime ends serving",
        "{}",
        out.stdout
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    let start = out
        .stderr
        .lines()
        .find(|l| l.contains("refreshing can go on until"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(start.contains("INFO"), "{start}");
}

/// An SSO profile as the source: the cached token's `expiresAt` is the horizon, said at start
/// with the exact `aws sso login` command; once it has passed, refreshing stops with a clear
/// error and `/healthz` says 503; a new login (a new token in the cache) is used by the next
/// refresh without restarting credwrap, and the horizon moves with it.
#[test]
fn an_sso_tokens_expiry_is_the_horizon_and_a_new_login_goes_on() {
    use sha1::{Digest, Sha1};
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(4));
    let start_url = "https://d-test.awsapps.com/start";
    sb.write(
        ".aws/config",
        &format!(
            "[profile dev]\nsso_start_url = {start_url}\nsso_region = us-east-1\n\
             sso_account_id = 111111111111\nsso_role_name = Dev\n"
        ),
    );
    let hex: String = Sha1::digest(start_url.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::create_dir_all(sb.path(".aws/sso/cache")).unwrap();
    let cache = sb.path(&format!(".aws/sso/cache/{hex}.json"));
    // What `aws sso login` leaves: a token the portal takes until `expiresAt`.
    let login = |token: &str, lasts: Duration| {
        let expires = std::time::SystemTime::now() + lasts;
        let at = humantime::format_rfc3339_seconds(expires).to_string();
        let json = serde_json::json!({"startUrl": start_url, "region": "us-east-1",
            "accessToken": token, "expiresAt": at});
        std::fs::write(&cache, json.to_string()).unwrap();
        sb.sts.accept_sso_token(token, expires);
    };
    login("sso-token-1", Duration::from_secs(7));
    let mut cmd = sb.credwrap();
    cmd.env("AWS_ENDPOINT_URL_SSO", sb.sts.url())
        .args(["-v", "--serve", "--profile", "dev"]);
    let server = support::start(&mut cmd);
    let exports = server.exports();
    let started = server.log_until("the horizon at start", |l| {
        l.contains("refreshing can go on until")
    });
    assert!(started.contains("WARN"), "{started}");
    assert!(
        started.contains("the SSO token of profile dev expires")
            && started.contains("run `aws sso login --profile dev`"),
        "{started}"
    );
    let stopped = server.log_until("the error", |l| l.contains("refreshing has stopped"));
    assert!(
        stopped.contains("ERROR") && stopped.contains("aws sso login --profile dev"),
        "{stopped}"
    );
    support::eventually("/healthz 503", || {
        (curl(&exports, "/healthz", None).0 == 503).then_some(())
    });

    // The user logs in again: the next refresh uses the new token.
    login("sso-token-2", Duration::from_secs(3600));
    server.log_until("a refresh after the login", |l| {
        l.contains("refreshed role credentials")
    });
    support::eventually("/healthz 200 again", || {
        (curl(&exports, "/healthz", None).0 == 200).then_some(())
    });
    let out = status(&exports, &["--json"]);
    let said: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let horizon = said["renewal_horizon"]["at"].as_str().unwrap().to_string();
    let later =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3000))
            .to_string();
    assert!(horizon > later, "the horizon did not move: {horizon}");
    assert_eq!(out.code(), Some(0), "{}", out.stdout);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

/// Metrics parsed by the Prometheus project's own Python parser: each sample as
/// `(name, labels, value)`.
fn parsed_metrics(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let parse = "import json, sys\n\
                 from prometheus_client.parser import text_string_to_metric_families\n\
                 for family in text_string_to_metric_families(sys.stdin.read()):\n\
                 \x20   for s in family.samples:\n\
                 \x20       print(json.dumps([s.name, s.labels, s.value]))\n";
    let mut cmd = Command::new(support::python());
    cmd.args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The value of `name` with `labels` among `samples`.
fn sample(
    samples: &[(String, HashMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// `--metrics` serves /metrics on the loopback listener behind the endpoint's token (as is, or
/// as Prometheus sends it, `Bearer TOKEN`); `--metrics-address` serves the same on an address of
/// its own. Both parse as Prometheus text, count requests by listener and status and each role's
/// calls, and follow STS failing: failures counted, the credential no longer servable.
#[test]
fn metrics_are_prometheus_text_and_follow_sts() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    let (server, exports) = serve(
        &sb,
        &[
            "--role",
            &format!("prod={PROD}"),
            "--metrics",
            "--metrics-address",
            "127.0.0.1:0",
        ],
    );
    let token = exports["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone();
    assert_eq!(curl(&exports, "/metrics", None).0, 401);
    let uri = &exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"];
    let path = &uri[uri[7..].find('/').unwrap() + 7..];
    assert_eq!(curl(&exports, path, Some(&token)).0, 200);
    let (code, text) = curl(&exports, "/metrics", Some(&format!("Bearer {token}")));
    assert_eq!(code, 200, "{text}");
    assert_no_secret(&sb, &exports, &text.replace("credwrap_", ""));
    let samples = parsed_metrics(&text);
    let listener = &uri[7..7 + uri[7..].find('/').unwrap()];
    let requests = |status: &str| {
        sample(
            &samples,
            "credwrap_requests_total",
            &[("listener", listener), ("status", status)],
        )
    };
    assert_eq!(requests("200"), Some(1.0), "{text}");
    assert!(requests("401").is_some_and(|n| n >= 1.0), "{text}");
    for role in ["default", "prod"] {
        let calls = sample(&samples, "credwrap_sts_calls_total", &[("role", role)]);
        assert!(calls.is_some_and(|n| n >= 1.0), "{role}: {text}");
        let servable = sample(&samples, "credwrap_credential_servable", &[("role", role)]);
        assert_eq!(servable, Some(1.0), "{role}: {text}");
        let left = sample(
            &samples,
            "credwrap_credential_expiry_seconds",
            &[("role", role)],
        );
        assert!(left.is_some_and(|s| s > 0.0 && s <= 6.0), "{role}: {text}");
    }

    // The address of its own, found as the status lists it.
    let status = status(&exports, &["--json"]);
    let said: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let own = said["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["protocol"] == "Prometheus metrics")
        .and_then(|l| l["address"].as_str())
        .unwrap_or_else(|| panic!("{}", status.stdout))
        .to_string();
    let scrape = || {
        let out =
            support::run(Command::new("curl").args(["-sf", &format!("http://{own}/metrics")]));
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        parsed_metrics(&out.stdout)
    };
    assert!(sample(&scrape(), "credwrap_sts_calls_total", &[("role", "prod")]).is_some());

    sb.sts.set_fault(Fault::ServerError);
    support::eventually("failures counted and nothing servable", || {
        let now = scrape();
        let failed = sample(&now, "credwrap_sts_failures_total", &[("role", "default")]);
        let servable = sample(&now, "credwrap_credential_servable", &[("role", "default")]);
        (failed.is_some_and(|n| n >= 1.0) && servable == Some(0.0)).then_some(())
    });
    sb.sts.set_fault(Fault::None);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

/// Source keys that are a session's (exported from `aws sts get-session-token` or an
/// assume-role): with `AWS_CREDENTIAL_EXPIRATION` its end is the horizon, said at start and
/// when reached; without it, credwrap says at start that it cannot see when refreshing stops.
#[test]
fn a_source_session_bounds_refreshing_and_its_unseen_end_is_said() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(4));
    sb.sts.set_session_lifetime(Duration::from_secs(8));
    // What a user exported: a session from STS, with boto3.
    let get_session = "import boto3, json, os\n\
        c = boto3.client('sts', endpoint_url=os.environ['AWS_ENDPOINT_URL_STS'], region_name='us-east-1')\n\
        r = c.get_session_token(DurationSeconds=900)['Credentials']\n\
        print(json.dumps([r['AccessKeyId'], r['SecretAccessKey'], r['SessionToken'],\n\
                          r['Expiration'].strftime('%Y-%m-%dT%H:%M:%SZ')]))\n";
    let mut python = Command::new(support::python());
    for (k, v) in sb.credwrap().get_envs() {
        if let Some(v) = v {
            python.env(k, v);
        }
    }
    let out = support::run(python.args(["-c", get_session]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let [key, secret, token, expires]: [String; 4] =
        serde_json::from_str(out.stdout.trim()).unwrap();
    let with_session = |expiration: Option<&str>| {
        let mut cmd = sb.credwrap();
        cmd.env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_SESSION_TOKEN", &token)
            .args(["-v", "--serve"]);
        if let Some(e) = expiration {
            cmd.env("AWS_CREDENTIAL_EXPIRATION", e);
        }
        support::start(&mut cmd)
    };

    let server = with_session(None);
    let unseen = server.log_until("the warning", |l| l.contains("which credwrap cannot see"));
    assert!(
        unseen.contains("WARN") && unseen.contains("AWS_CREDENTIAL_EXPIRATION"),
        "{unseen}"
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.finish().code(), Some(0));

    let server = with_session(Some(&expires));
    let start = server.log_until("the horizon", |l| l.contains("refreshing can go on until"));
    assert!(
        start.contains("WARN") && start.contains("the source session (AWS_SESSION_TOKEN) expires"),
        "{start}"
    );
    let stopped = server.log_until("the error", |l| l.contains("refreshing has stopped"));
    assert!(
        stopped.contains("the source session (AWS_SESSION_TOKEN) expires"),
        "{stopped}"
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        !out.stderr.contains("which credwrap cannot see"),
        "{}",
        out.stderr
    );
}
