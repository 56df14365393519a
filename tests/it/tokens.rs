//! OIDC token sources that renew themselves, fetched again before every AssumeRoleWithWebIdentity:
//! GitHub Actions' token service, a token command, a variable. The strict fake STS takes only
//! unexpired JWTs from the test's issuer, and the tokens live less than the role's session, so
//! every refresh needs a new one. Failures are reported before the command starts; a failed
//! fetch mid-job is retried while the current credential is served.

use crate::support;

use std::time::Duration;

use support::fake_sts::ROLE_ARN;
use support::github::{jwt, TokenService, ISSUER};
use support::{python, script, Output, Sandbox};

/// credwrap with no source keys (a CI job's OIDC is the only credential).
fn oidc(sb: &Sandbox) -> std::process::Command {
    let mut cmd = sb.credwrap();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("CREDWRAP_ROLE_ARN")
        .args(["--role-arn", ROLE_ARN]);
    cmd
}

fn calls(sb: &Sandbox) -> usize {
    sb.sts.count("AssumeRoleWithWebIdentity")
}

fn ok(out: &Output) {
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
}

/// Waits until `n` web identity calls went through, then lets the child exit.
fn through_refreshes(sb: &Sandbox, cmd: &mut std::process::Command, n: usize) -> Output {
    let run = support::start(cmd.args(["--", "sh", "-c", "read x; exit 0"]));
    support::eventually(&format!("{n} AssumeRoleWithWebIdentity calls"), || {
        (sb.sts.web_identity_subjects().len() >= n).then_some(())
    });
    run.finish()
}

#[test]
fn github_actions_gives_a_fresh_token_for_every_refresh() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    sb.sts.require_jwts_from(ISSUER);
    // Each token expires before the next refresh: reusing one would be refused.
    let github = TokenService::start(Duration::from_secs(3));
    let mut cmd = oidc(&sb);
    cmd.envs(github.job_env()).arg("--web-identity-github");
    let out = through_refreshes(&sb, &mut cmd, 4);
    ok(&out);
    let subjects = sb.sts.web_identity_subjects();
    let mut distinct = subjects.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        subjects.len(),
        "a token was sent twice: {subjects:?}"
    );
    let (requests, issued) = github.counts();
    assert_eq!(requests, issued);
    assert!(
        issued >= calls(&sb),
        "{issued} tokens for {} calls",
        calls(&sb)
    );
    assert!(github.audiences().iter().all(|a| a == "sts.amazonaws.com"));
    println!(
        "GitHub token service: {requests} requests for {} AssumeRoleWithWebIdentity calls",
        calls(&sb)
    );
}

/// On GitHub with `id-token: write` and nothing else configured, credwrap just works, and
/// says what it detected at -v; the audience can be changed.
#[test]
fn github_actions_is_used_by_itself_when_nothing_else_is_configured() {
    let sb = Sandbox::new();
    sb.sts.require_jwts_from(ISSUER);
    let github = TokenService::start(Duration::from_secs(300));
    let out = support::run(oidc(&sb).envs(github.job_env()).args([
        "-v",
        "--web-identity-audience",
        "sts.example.internal",
        "--",
        "true",
    ]));
    ok(&out);
    assert!(
        out.stderr
            .contains("GitHub Actions' OIDC token service is there"),
        "{}",
        out.stderr
    );
    assert_eq!(github.audiences(), ["sts.example.internal"]);
    assert_eq!(calls(&sb), 1);
}

/// Failures stop credwrap before the command starts, each with what went wrong.
#[test]
fn token_failures_are_clear_and_come_before_the_command() {
    let sb = Sandbox::new();
    let github = TokenService::start(Duration::from_secs(300));
    let marker = sb.path("started");
    let child = |cmd: &mut std::process::Command| -> Output {
        support::run(cmd.args(["--", "touch"]).arg(&marker))
    };

    // The permission is missing: the variables are not there.
    let out = child(oidc(&sb).arg("--web-identity-github"));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "permissions: id-token: write");

    // The token service keeps failing: asked again for as long as --web-identity-token-retry
    // says, then the error.
    github.fail_next(503, 100);
    let out = child(oidc(&sb).envs(github.job_env()).args([
        "--web-identity-github",
        "--web-identity-token-retry",
        "2s",
    ]));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(
        &out,
        "answered HTTP 503: failing on purpose, last token [removed]",
    );
    assert!(
        !out.stderr.contains("eyJ"),
        "a JWT from the error: {}",
        out.stderr
    );
    support::assert_stderr_has(&out, "asking again in 500 ms");
    let (asked, _) = github.counts();
    assert!((3..=4).contains(&asked), "asked {asked} times in 2s");
    support::assert_stderr_has(&out, &format!("(asked {asked} times in "));
    github.fail_next(503, 0);

    // A wrong runtime token: 401, and no retry can fix it: asked once.
    let mut cmd = oidc(&sb);
    cmd.envs(github.job_env())
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "stale-runtime-token")
        .arg("--web-identity-github");
    let out = child(&mut cmd);
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "answered HTTP 401: Bad credentials: bearer [removed]");
    assert!(
        !out.stderr.contains("stale-runtime-token"),
        "{}",
        out.stderr
    );
    assert_eq!(github.counts().0, asked + 1, "a 401 was asked again");
    assert!(!out.stderr.contains("asking again"), "{}", out.stderr);

    // A token command that fails, and one that hangs.
    let out = child(oidc(&sb).args([
        "--web-identity-token-command",
        "sh -c 'echo agent: not authorised for this pipeline >&2; exit 4'",
    ]));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("exited 4: agent: not authorised for this pipeline"),
        "{}",
        out.stderr
    );
    let out = child(oidc(&sb).args([
        "--web-identity-token-command",
        "sleep 30",
        "--web-identity-token-timeout",
        "1s",
    ]));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "did not finish within 1s");

    // A variable that is not there.
    let out = child(oidc(&sb).args(["--web-identity-token-env", "GITLAB_OIDC_TOKEN"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("GITLAB_OIDC_TOKEN: the variable is not set"),
        "{}",
        out.stderr
    );

    assert!(!marker.exists(), "the command ran");
    assert_eq!(calls(&sb), 0);
}

/// A bad minute of GitHub's token service at start (a 503, two 502s, a 500, a 429, a service
/// not listening yet) is waited out as @actions/core's getIDToken waits it out; the command
/// starts once a token is had, and no STS call was made before.
#[test]
fn github_actions_token_service_errors_that_pass_are_waited_out_at_start() {
    let sb = Sandbox::new();
    let github = TokenService::start(Duration::from_secs(300));
    github.fail_with(&[503, 502, 502, 500, 429]);
    let out = support::run(oidc(&sb).envs(github.job_env()).args([
        "--web-identity-github",
        "--",
        "true",
    ]));
    ok(&out);
    assert_eq!(github.counts(), (6, 1));
    assert_eq!(
        out.stderr.matches("asking again in").count(),
        5,
        "{}",
        out.stderr
    );
    for status in [503, 502, 500, 429] {
        support::assert_stderr_has(&out, &format!("answered HTTP {status}"));
    }
    assert_eq!(calls(&sb), 1);

    // Nothing listening (a runner whose service is restarting): asked again too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/idtoken?api-version=2.0",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let out = support::run(
        oidc(&sb)
            .envs(github.job_env())
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", url)
            .args([
                "--web-identity-github",
                "--web-identity-token-retry",
                "1s",
                "--",
                "true",
            ]),
    );
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "could not be reached");
    support::assert_stderr_has(&out, "(asked 2 times in ");

    // With 0, the first error is the last.
    github.fail_next(503, 1);
    let out = support::run(oidc(&sb).envs(github.job_env()).args([
        "--web-identity-github",
        "--web-identity-token-retry",
        "0",
        "--",
        "true",
    ]));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    assert!(!out.stderr.contains("asking again"), "{}", out.stderr);
}

/// A token service that misbehaves as a hostile neighbour or a bad proxy would, played by a
/// bare socket: it never answers, drips its answer a byte at a time, or sends without end.
/// Returns the URL and the number of bytes it managed to send.
fn hostile_token_service(
    behaviour: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/idtoken?api-version=2.0",
        listener.local_addr().unwrap()
    );
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request);
                let mut send = |bytes: &[u8]| {
                    let sent = conn.write_all(bytes).is_ok();
                    if sent {
                        counter.fetch_add(bytes.len(), Ordering::Relaxed);
                    }
                    sent
                };
                match behaviour {
                    "silent" => std::thread::sleep(Duration::from_secs(60)),
                    "drip" => {
                        let body = br#"{"value":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = send(head.as_bytes());
                        for byte in body {
                            std::thread::sleep(Duration::from_millis(300));
                            if !send(&[*byte]) {
                                return;
                            }
                        }
                    }
                    _ => {
                        // No length: the answer ends when the connection does, 200 MiB later.
                        let _ = send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                        let chunk = vec![b'x'; 1 << 20];
                        for _ in 0..200 {
                            if !send(&chunk) {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (url, sent)
}

/// `--web-identity-token-timeout` bounds GitHub's token service's whole answer (one that never
/// answers, one that drips it), and at most 64 KiB of an answer is read: a service that sends
/// without end is refused long before it has sent much.
#[test]
fn a_token_service_that_hangs_drips_or_floods_is_cut_short() {
    let sb = Sandbox::new();
    let github = TokenService::start(Duration::from_secs(300));
    let ask = |url: &str| {
        let started = std::time::Instant::now();
        let out = support::run(
            oidc(&sb)
                .envs(github.job_env())
                .env("ACTIONS_ID_TOKEN_REQUEST_URL", url)
                .args([
                    "--web-identity-github",
                    "--web-identity-token-timeout",
                    "1s",
                    "--web-identity-token-retry",
                    "0",
                    "--",
                    "true",
                ]),
        );
        assert_eq!(out.code(), Some(125), "{}", out.stderr);
        (out, started.elapsed())
    };
    for behaviour in ["silent", "drip"] {
        let (url, _) = hostile_token_service(behaviour);
        let (out, took) = ask(&url);
        support::assert_stderr_has(
            &out,
            "did not answer within 1s (--web-identity-token-timeout)",
        );
        // The HTTP client's own timeouts (15 s each for the headers and the body) are far
        // above: a bound, not a speed measurement.
        assert!(took < Duration::from_secs(10), "{behaviour}: {took:?}");
    }
    let (url, sent) = hostile_token_service("flood");
    let (out, _) = ask(&url);
    support::assert_stderr_has(&out, "answered more than 65536 bytes");
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    // What the sockets' buffers hold, not the 200 MiB it had to send.
    assert!(sent < 32 << 20, "the service sent {sent} bytes");
    assert_eq!(calls(&sb), 0);
}

/// The command does not see what credwrap's source is made of: GitHub's token service's
/// bearer and URL, or the variable holding the token. Where they are not credwrap's source
/// (here, source keys), the command keeps them: they may be for something else.
#[test]
fn the_command_does_not_get_what_credwraps_source_is_made_of() {
    let sb = Sandbox::new();
    let github = TokenService::start(Duration::from_secs(300));
    let token = jwt(serde_json::json!({"iss": ISSUER, "sub": "gl", "exp": 4_000_000_000u64}));
    let show = "echo \"bearer=${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-none} \
                url=${ACTIONS_ID_TOKEN_REQUEST_URL:-none} gitlab=${GITLAB_OIDC_TOKEN:-none}\"";
    let seen = |cmd: &mut std::process::Command| -> String {
        let out = support::run(
            cmd.envs(github.job_env())
                .env("GITLAB_OIDC_TOKEN", &token)
                .args(["--", "sh", "-c", show]),
        );
        ok(&out);
        out.stdout.trim().to_string()
    };
    assert_eq!(
        seen(oidc(&sb).arg("--web-identity-github")),
        format!("bearer=none url=none gitlab={token}")
    );
    assert_eq!(
        seen(oidc(&sb).args(["--web-identity-token-env", "GITLAB_OIDC_TOKEN"])),
        format!(
            "bearer={} url={} gitlab=none",
            github.job_env()[1].1,
            github.job_env()[0].1
        )
    );
    let mut keys = sb.credwrap();
    keys.args(["--role-arn", ROLE_ARN]);
    assert!(seen(&mut keys).starts_with("bearer=runtime-token-for-this-job url=http"));
}

/// A token command (Buildkite's agent, CircleCI's CLI, vault) run for every refresh; while it
/// fails, the current credential is kept and the fetch retried; the child sees no error.
#[test]
fn a_token_command_that_fails_mid_job_is_retried_while_the_credential_is_kept() {
    let sb = Sandbox::new();
    let lifetime = 12;
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    sb.sts.require_jwts_from(ISSUER);
    let fail = sb.path("fail");
    let command = format!(
        "{} {}",
        python().display(),
        script("oidc_token.py").display()
    );
    let run = support::start(
        oidc(&sb)
            .env("OIDC_FAIL", &fail)
            .env("OIDC_COUNTER", sb.path("counter"))
            .env("OIDC_ISSUER", ISSUER)
            .env("OIDC_TTL", "5")
            .env("SOAK_LIFETIME", lifetime.to_string())
            .env("SOAK_KEYS", "4")
            .env("SOAK_SECONDS", (5 * lifetime).to_string())
            .args(["-v", "--web-identity-token-command", &command, "--"])
            .arg("env")
            .arg(format!("AWS_ENDPOINT_URL_STS={}", sb.sts.client_url()))
            .arg(python())
            .arg(script("soak.py")),
    );
    run.line_until("ready", |l| l == "ready");
    run.log_until("a refresh", |l| l.contains("refreshed role credentials"));
    std::fs::write(&fail, "").unwrap();
    for _ in 0..2 {
        let failed = run.log_until("a failed token fetch", |l| {
            l.contains("refreshing role credentials failed")
        });
        assert!(
            failed.contains("exited 1: agent: could not reach"),
            "{failed}"
        );
        assert!(
            failed.contains("still serving the current credential"),
            "{failed}"
        );
    }
    std::fs::remove_file(&fail).unwrap();
    let summary = run.line_until("the summary", |l| l.starts_with("keys="));
    let out = run.finish();
    ok(&out);
    assert!(
        summary.starts_with("keys=4") && summary.ends_with("errors=0"),
        "{summary}"
    );
}

/// A token in a variable (GitLab `id_tokens:`) serves a job that fits its lifetime, and credwrap
/// says when it expires: loudly when --max-lifetime outlasts it.
#[test]
fn a_token_in_a_variable_serves_the_job_it_fits_and_its_expiry_is_said() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    sb.sts.require_jwts_from(ISSUER);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token =
        jwt(serde_json::json!({"iss": ISSUER, "sub": "project_path:acme/app", "exp": now + 3600}));
    let mut cmd = oidc(&sb);
    cmd.env("GITLAB_OIDC_TOKEN", &token).args([
        "-v",
        "--web-identity-token-env",
        "GITLAB_OIDC_TOKEN",
    ]);
    let out = through_refreshes(&sb, &mut cmd, 3);
    ok(&out);
    let said = out
        .stderr
        .lines()
        .find(|l| l.contains("the OIDC token in GITLAB_OIDC_TOKEN expires"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(said.contains("INFO"), "{said}");
    // A job that may serve for two hours outlives a token that expires in one.
    let mut cmd = oidc(&sb);
    cmd.env("GITLAB_OIDC_TOKEN", &token).args([
        "--web-identity-token-env",
        "GITLAB_OIDC_TOKEN",
        "--serve",
        "--max-lifetime",
        "2h",
    ]);
    let server = support::start(&mut cmd);
    let warned = server.log_until("the warning", |l| {
        l.contains("the OIDC token in GITLAB_OIDC_TOKEN expires")
    });
    assert!(warned.contains("WARN"), "{warned}");
    // Serving once the exports are out.
    server.line_until("the exports", |l| l.starts_with("export CREDWRAP_PID="));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.finish();
    ok(&out);
}

/// As a subreaper (or PID 1, a container's entrypoint) credwrap reaps every child that exits,
/// and the token command is one: its status must still reach the refresh that ran it, at every
/// refresh, whoever reaps it first.
#[test]
fn a_subreaper_still_gets_its_token_commands_status() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(3));
    sb.sts.require_jwts_from(ISSUER);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = sb.write(
        "token",
        &jwt(serde_json::json!({"iss": ISSUER, "sub": "repo:acme/app", "exp": now + 3600})),
    );
    let command = format!("cat {}", token.display());
    let out = through_refreshes(
        &sb,
        oidc(&sb).args([
            "-v",
            "--subreaper",
            "--web-identity-token-command",
            &command,
        ]),
        12,
    );
    ok(&out);
    assert!(
        !out.stderr.contains("refreshing role credentials failed"),
        "{}",
        out.stderr
    );
}

/// `--serve` as PID 1 (a FROM-scratch image's entrypoint) reaps what its token command leaves
/// behind: here each run leaves a background `sleep` that outlives it, and after several
/// refreshes no zombie is left under credwrap.
#[test]
fn serving_as_pid_1_reaps_what_the_token_command_leaves() {
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } != 0
        && support::skip::<()>("a PID namespace needs root").is_none()
    {
        return;
    }
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    let cmd = oidc(&sb);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut unshare = std::process::Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--kill-child"])
        .arg(program)
        .args(args)
        .args([
            "--serve",
            "--web-identity-token-command",
            "sh -c 'sleep 0.2 & echo a.b.c'",
        ]);
    // The sandbox's environment, as `oidc` made it.
    unshare
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let run = support::start(&mut unshare);
    support::eventually("four AssumeRoleWithWebIdentity calls", || {
        (calls(&sb) >= 4).then_some(())
    });
    // credwrap is unshare's child, PID 1 in its namespace.
    let unshare_pid = run.pid().as_raw();
    let children = |pid: i32| -> Vec<i32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let credwrap = children(unshare_pid)[0];
    let zombies = || -> Vec<i32> {
        children(credwrap)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
            })
            .collect()
    };
    support::eventually("no zombie under credwrap", || {
        zombies().is_empty().then_some(())
    });
    // SAFETY: kill(2); credwrap stops, and unshare with it.
    unsafe { libc::kill(credwrap, libc::SIGTERM) };
    let out = run.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}
