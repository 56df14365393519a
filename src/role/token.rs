//! The OIDC token for AssumeRoleWithWebIdentity, fetched again before every call: CI systems
//! and Kubernetes hand out tokens that live minutes, so a long job needs a new one at each
//! refresh. A fetch that fails is an STS call that fails: retried with the broker's backoff
//! mid-job (the current credential is kept), reported before the command starts at start-up.
//!
//! Until a first token is had, GitHub's token service is asked again after an error that may
//! pass (`--web-identity-token-retry`), as @actions/core's getIDToken and
//! configure-aws-credentials do: a bad minute of GitHub's must not fail the job. A token command
//! is run once at start: its exit status cannot tell a passing failure from a wrong command,
//! and the CIs' own (buildkite-agent: 5 attempts, 2 s apart and more) retry inside it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::error::{AssumeError, SetupError};
use super::trust::Roots;
use crate::settings::TokenSource;
use crate::sys::secret::Secret;

/// The first pause between two asks of a failing token service at start, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(8);
/// How much of a failed command's stderr, or of a token service's error message, is quoted.
const QUOTED: usize = 400;
/// The most of a token service's answer, or of a token command's stdout, that is read: a JWT
/// is a few kilobytes; anything past this is not a token, and is not kept in memory.
pub const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// A token source, ready to fetch from.
pub struct Tokens {
    source: TokenSource,
    /// For the GitHub token service, the one source credwrap reaches itself: TLS trusting
    /// what STS's client trusts. Only made for that source: the others never need the roots
    /// parsed.
    tls: Option<rustls::ClientConfig>,
    /// Whether a token was had yet: until then, a failing service is asked again.
    had_one: AtomicBool,
}

impl Tokens {
    pub fn new(source: TokenSource, roots: &Roots) -> Result<Tokens, SetupError> {
        let tls = match source {
            TokenSource::GitHub { .. } => {
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| SetupError {
                        message: format!("could not set up TLS for GitHub's token service: {e}"),
                        hint: "this build of credwrap lacks TLS 1.2 and 1.3 support",
                    })?
                    .with_root_certificates(roots.root_store())
                    .with_no_client_auth();
                Some(config)
            }
            _ => None,
        };
        Ok(Tokens {
            source,
            tls,
            had_one: AtomicBool::new(false),
        })
    }

    /// What the token is, for messages: "the token file /x", "GitHub's token service".
    pub fn describe(&self) -> String {
        describe(&self.source)
    }

    /// A fresh token. Errors say what failed, never the token.
    pub async fn fetch(&self) -> Result<Secret, AssumeError> {
        let token = match &self.source {
            TokenSource::File(path) => tokio::fs::read_to_string(path).await.map_err(|e| {
                token_error(
                    &self.source,
                    format!("cannot read the web identity token {}: {e}", path.display()),
                    true,
                )
            })?,
            TokenSource::Variable { token, .. } => token.expose().to_string(),
            TokenSource::Command {
                line,
                argv,
                timeout,
            } => run_command(line, argv, *timeout).await?,
            TokenSource::GitHub {
                url,
                bearer,
                audience,
                timeout,
                start_retry,
            } => {
                let ask = || self.ask_github(url, bearer, audience, *timeout);
                if self.had_one.load(Ordering::Relaxed) {
                    ask().await?
                } else {
                    patiently(ask, *start_retry).await?
                }
            }
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(token_error(
                &self.source,
                format!("{} gave an empty token", self.describe()),
                true,
            ));
        }
        self.had_one.store(true, Ordering::Relaxed);
        Ok(Secret::new(token))
    }

    /// `GET URL&audience=AUD` with `Authorization: bearer TOKEN`; the answer's `value`, all
    /// within `timeout`.
    async fn ask_github(
        &self,
        url: &str,
        bearer: &Secret,
        audience: &str,
        timeout: Duration,
    ) -> Result<String, AssumeError> {
        let what = "GitHub's OIDC token service (ACTIONS_ID_TOKEN_REQUEST_URL)";
        let fail = |message: String, retryable: bool| token_error(&self.source, message, retryable);
        // `new` makes it for this source.
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| fail(format!("{what}: no TLS configuration"), false))?;
        let (uri, request) = github_request(url, bearer, audience)
            .map_err(|e| fail(format!("{what}: {e}"), false))?;
        let exchange = async {
            let response = send(tls, &uri, request)
                .await
                .map_err(|e| fail(format!("{what} could not be reached: {e}"), true))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_TOKEN_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        fail(
                            format!("{what} answered more than {MAX_TOKEN_ANSWER} bytes"),
                            true,
                        )
                    } else {
                        fail(format!("{what}: {e}"), true)
                    }
                })?
                .to_bytes();
            Ok::<_, AssumeError>((status, body))
        };
        // One deadline for the headers and the body: a service that drips its answer is as late
        // as one that never answers.
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                fail(
                    format!(
                        "{what} did not answer within {}s (--web-identity-token-timeout)",
                        timeout.as_secs()
                    ),
                    true,
                )
            })??;
        if !status.is_success() {
            let retryable = status.is_server_error() || status.as_u16() == 429;
            return Err(fail(
                format!(
                    "{what} answered HTTP {}{}",
                    status.as_u16(),
                    quoted(&body, bearer)
                ),
                retryable,
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| fail(format!("{what} answered something that is not JSON"), true))?;
        value["value"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| fail(format!("{what} answered JSON without a `value`"), true))
    }
}

/// `GET URL&audience=AUD` with the job's bearer, as @actions/core's getIDToken asks.
fn github_request(
    url: &str,
    bearer: &Secret,
    audience: &str,
) -> Result<(hyper::Uri, hyper::Request<Empty<Bytes>>), String> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let audience =
        percent_encoding::utf8_percent_encode(audience, percent_encoding::NON_ALPHANUMERIC);
    let uri: hyper::Uri = format!("{url}{sep}audience={audience}")
        .parse()
        .map_err(|e| format!("the URL is not valid: {e}"))?;
    let request = hyper::Request::get(uri.clone())
        .header(
            hyper::header::AUTHORIZATION,
            format!("bearer {}", bearer.expose()),
        )
        .header(hyper::header::ACCEPT, "application/json; api-version=2.0")
        .header(
            hyper::header::USER_AGENT,
            concat!("credwrap/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    Ok((uri, request))
}

/// What of a token service's error is quoted: only the `message` of a JSON error, with anything
/// token-like taken out (a body that echoed the request's bearer, or carried a JWT, would put
/// into the job's log what mints tokens for the rest of the job); `: MESSAGE`, or nothing.
fn quoted(body: &[u8], bearer: &Secret) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(|m| redact(m, &[bearer])))
        .map(|m| format!(": {}", m.chars().take(QUOTED).collect::<String>().trim()))
        .unwrap_or_default()
}

/// `ask` until it gives a token, fails for good, or `budget` has passed since the first ask;
/// then its last error, saying how often it was asked.
async fn patiently<F, Fut>(ask: F, budget: Duration) -> Result<String, AssumeError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, AssumeError>>,
{
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut attempts = 1;
    loop {
        match ask().await {
            Err(e) if e.retryable && started.elapsed() + pause <= budget => {
                tracing::warn!("{e}; asking again in {} ms", pause.as_millis());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
                attempts += 1;
            }
            Err(mut e) if attempts > 1 => {
                e.message = format!(
                    "{} (asked {attempts} times in {}s)",
                    e.message,
                    started.elapsed().as_secs()
                );
                return Err(e);
            }
            other => return other,
        }
    }
}

/// `text` with each of `secrets` and every word that looks like a JWT or a bearer token (a long
/// run of base64url characters, or a JWT's three parts) replaced by `[removed]`.
fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if !secret.expose().is_empty() {
            out = out.replace(secret.expose(), "[removed]");
        }
    }
    let tokenish = |w: &str| {
        let b64 = |p: &str| {
            !p.is_empty()
                && p.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'/')
                })
        };
        // A JWT's header is JSON, so its base64url starts `eyJ`.
        (w.len() >= 32 && b64(w))
            || (w.starts_with("eyJ") && w.split('.').count() == 3 && w.split('.').all(b64))
    };
    out.split_inclusive(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ':'))
        .map(|piece| {
            let word = piece.trim_end_matches(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ':')
            });
            if tokenish(word) {
                format!("[removed]{}", &piece[word.len()..])
            } else {
                piece.to_string()
            }
        })
        .collect()
}

/// TLS (or plain HTTP, for a test's local service) over `connector`.
fn https<C>(tls: &rustls::ClientConfig, connector: C) -> hyper_rustls::HttpsConnector<C> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector)
}

/// One request, through HTTPS_PROXY/HTTP_PROXY (minus NO_PROXY) when they say so.
async fn send(
    tls: &rustls::ClientConfig,
    uri: &hyper::Uri,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    let proxy = hyper_util::client::proxy::matcher::Matcher::from_env().intercept(uri);
    match proxy {
        Some(proxy) if uri.scheme_str() == Some("https") => {
            let mut tunnel =
                hyper_util::client::legacy::connect::proxy::Tunnel::new(proxy.uri().clone(), tcp);
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let client = Client::builder(TokioExecutor::new()).build(https(tls, tunnel));
            client
                .request(request)
                .await
                .map_err(|e| super::error::error_chain(&e))
        }
        _ => {
            let client = Client::builder(TokioExecutor::new()).build(https(tls, tcp));
            client
                .request(request)
                .await
                .map_err(|e| super::error::error_chain(&e))
        }
    }
}

fn describe(source: &TokenSource) -> String {
    match source {
        TokenSource::File(path) => format!("the token file {}", path.display()),
        TokenSource::Variable { name, .. } => format!("the variable {name}"),
        TokenSource::Command { line, .. } => format!("the token command `{line}`"),
        TokenSource::GitHub { .. } => "GitHub's OIDC token service".to_string(),
    }
}

const FILE_HINT: &str = "check that the CI (or Kubernetes) writes the token file, and its path";
const VARIABLE_HINT: &str = "check the CI's token variable (GitLab: the job's id_tokens: entry)";
const COMMAND_HINT: &str =
    "run the token command yourself in the same environment: it must print the token and exit 0";
const GITHUB_HINT: &str = "check that the job has `permissions: id-token: write` and that the \
                           runner reaches its token service (HTTPS_PROXY on self-hosted runners)";

/// A failure to get the token from `source`, with the hint that fits that source.
fn token_error(source: &TokenSource, message: String, retryable: bool) -> AssumeError {
    let hint = match source {
        TokenSource::File(_) => FILE_HINT,
        TokenSource::Variable { .. } => VARIABLE_HINT,
        TokenSource::Command { .. } => COMMAND_HINT,
        TokenSource::GitHub { .. } => GITHUB_HINT,
    };
    AssumeError::token(message, retryable, hint)
}

/// How much of a token command's stderr is kept for its error message.
const STDERR_KEPT: usize = 4 * 1024;
/// How long, once the token command has exited, its pipes are still read: what it wrote before
/// exiting is there at once, and a process it left in the background (an agent) may hold them
/// open for as long as it lives.
const AFTER_EXIT: Duration = Duration::from_millis(200);

/// Runs the token command (no shell: its words as given), in a process group of its own, with
/// a timeout; its stdout is the token. On timeout the whole group is killed, whatever it
/// started included.
async fn run_command(
    line: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<String, AssumeError> {
    let fail =
        |message: String, retryable: bool| AssumeError::token(message, retryable, COMMAND_HINT);
    let what = format!("the token command `{line}`");
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| fail(format!("{what} is empty"), false))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let (child, mut own) = crate::sys::reaping::spawn(|| command.spawn(), |c| c.id())
        .map_err(|e| fail(format!("{what} could not be started: {e}"), false))?;
    let group = child.id().map(|id| nix::unistd::Pid::from_raw(id as i32));
    let out = match tokio::time::timeout(timeout, output(child, &mut own)).await {
        Ok(out) => out.map_err(|e| fail(format!("{what}: {e}"), true))?,
        Err(_) => {
            if let Some(group) = group {
                // Already gone is fine: the group is what is left of it.
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            return Err(fail(
                format!(
                    "{what} did not finish within {}s (killed, with what it started)",
                    timeout.as_secs()
                ),
                true,
            ));
        }
    };
    if !out.status.success() {
        let stderr = redact(&String::from_utf8_lossy(&out.stderr), &[]);
        let stderr: String = stderr.chars().take(QUOTED).collect();
        let status = out.status.code().map_or_else(
            || "was killed by a signal".to_string(),
            |c| format!("exited {c}"),
        );
        return Err(fail(format!("{what} {status}: {}", stderr.trim()), true));
    }
    if out.stdout_overflowed {
        return Err(fail(
            format!("{what} printed more than {MAX_TOKEN_ANSWER} bytes: that is not a token"),
            true,
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| fail(format!("{what} printed something that is not text"), true))
}

/// What a token command left: its status, the start of its stdout and stderr.
struct CommandOutput {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stdout_overflowed: bool,
    stderr: Vec<u8>,
}

/// Reads `pipe` to its end into `kept`, up to `limit` bytes, the rest read and dropped;
/// whether there was more.
async fn drain(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    kept: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<bool> {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else {
        return Ok(false);
    };
    let mut chunk = [0u8; 8192];
    let mut more = false;
    loop {
        let n = pipe.read(&mut chunk).await?;
        if n == 0 {
            return Ok(more);
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        more |= n > room;
    }
}

/// The command's status once it exits (a status the subreaper took, when the wait fails with
/// ECHILD, is taken from it), and what it wrote to its pipes until then: not until the pipes
/// close, which a process it left in the background may hold open.
async fn output(
    mut child: tokio::process::Child,
    own: &mut crate::sys::reaping::Own,
) -> std::io::Result<CommandOutput> {
    let (stdout_pipe, stderr_pipe) = (child.stdout.take(), child.stderr.take());
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (status, overflowed) = {
        let reads = async {
            tokio::join!(
                drain(stdout_pipe, &mut stdout, MAX_TOKEN_ANSWER),
                drain(stderr_pipe, &mut stderr, STDERR_KEPT)
            )
        };
        tokio::pin!(reads);
        let wait = async {
            match child.wait().await {
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    own.reaped_status().await.ok_or(e)
                }
                other => other,
            }
        };
        tokio::pin!(wait);
        let (status, reads) = tokio::select! {
            r = &mut reads => (wait.await, Some(r)),
            s = &mut wait => (s, tokio::time::timeout(AFTER_EXIT, &mut reads).await.ok()),
        };
        let overflowed = match reads {
            Some((out, err)) => {
                err?;
                out?
            }
            None => false,
        };
        (status?, overflowed)
    };
    Ok(CommandOutput {
        status,
        stdout,
        stdout_overflowed: overflowed,
        stderr,
    })
}

/// When a JWT says it expires (`exp`), if it is one.
pub fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwts_expiry_is_read_and_anything_else_has_none() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"repo:x","exp":1800000000}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln");
        assert_eq!(
            jwt_expiry(&jwt),
            Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        );
        assert_eq!(jwt_expiry("not a jwt"), None);
        assert_eq!(jwt_expiry("a.b.c"), None);
    }

    #[test]
    fn tokens_and_the_bearer_are_removed_from_what_is_quoted() {
        let bearer = Secret::new("runtime-bearer-value");
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        assert_eq!(
            redact(
                &format!("Bad credentials: bearer runtime-bearer-value, token \"{jwt}\"."),
                &[&bearer]
            ),
            "Bad credentials: bearer [removed], token \"[removed]\"."
        );
        assert_eq!(
            redact("key AKIAIOSFODNN7EXAMPLEAKIAIOSFODNN7EXAMPLE here", &[]),
            "key [removed] here"
        );
        assert_eq!(
            redact("no such audience: sts.amazonaws.com", &[]),
            "no such audience: sts.amazonaws.com"
        );
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_command_is_done_when_it_exits_whatever_it_left_running() {
        let started = std::time::Instant::now();
        let token = run_command(
            "agent",
            &sh("echo a.b.c; sleep 30 & exit 0"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(token.trim(), "a.b.c");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_command_that_times_out_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let err = run_command("slow", &sh(&script), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("with what it started"), "{err}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            // Killed, so at most a zombie of its parent's (this test is not its parent).
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
        });
        assert!(
            gone,
            "the command's background sleep {pid} is still running"
        );
    }

    #[tokio::test]
    async fn a_command_that_prints_too_much_is_refused_without_keeping_it() {
        let err = run_command(
            "big",
            &sh(
                "head -c 50000000 /dev/zero; printf 'tail'; head -c 50000000 /dev/zero >&2; exit 0",
            ),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("printed more than 65536 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_command_that_fails_or_hangs_says_so_with_its_stderr() {
        let fail = run_command(
            "sh -c ...",
            &[
                "sh".into(),
                "-c".into(),
                "echo no agent here >&2; exit 3".into(),
            ],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            fail.to_string().contains("exited 3: no agent here"),
            "{fail}"
        );
        let slow = run_command(
            "sleep 10",
            &["sleep".into(), "10".into()],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(slow.to_string().contains("did not finish within"), "{slow}");
        let ok = run_command(
            "echo t",
            &["echo".into(), "a.b.c".into()],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(ok.trim(), "a.b.c");
    }
}
