//! credwrap: run a command as an AWS role whose credentials refresh themselves.
//!
//! Data flows one way: cli → role (STS) → broker (current credential) → endpoint (loopback
//! HTTP); the child module only sees the endpoint's environment variables.

mod broker;
mod child;
mod cli;
mod endpoint;
mod exit;
mod role;
mod secret;

use std::io::IsTerminal;
use std::process::ExitStatus;

use clap::Parser;

use crate::child::aws_files::{self, SharedFiles};
use crate::child::env::{self as child_env, Additions};
use crate::child::Supervisor;
use crate::cli::{Cli, EndpointKind};
use crate::endpoint::{Endpoint, Protocol};
use crate::role::{Role, RoleSpec};

/// A failure before the child ran, with the exit code and advice for the user.
struct Fatal {
    code: i32,
    message: String,
    hint: Option<String>,
}

impl Fatal {
    fn new(code: i32, message: impl Into<String>, hint: impl Into<Option<String>>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

fn main() {
    let cli = match Cli::try_parse().and_then(|cli| cli.check().map(|()| cli)) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; everything else is a usage error.
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(status) => exit::mirror(status),
        Err(fatal) => {
            eprintln!("credwrap: error: {}", fatal.message);
            if let Some(hint) = fatal.hint {
                eprintln!("credwrap: hint: {hint}");
            }
            std::process::exit(fatal.code);
        }
    }
}

fn run(cli: Cli) -> Result<ExitStatus, Fatal> {
    if let Some(outer) = std::env::var_os(child_env::NESTED_MARKER) {
        tracing::warn!(
            "running inside another credwrap (role {}); its role is the source credential for this one",
            outer.to_string_lossy()
        );
    }
    let spec = RoleSpec {
        session_name: cli
            .role_session_name
            .clone()
            .unwrap_or_else(default_session_name),
        role_arn: cli.role_arn.clone(),
        duration: cli.duration,
        external_id: cli.external_id.clone(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("credwrap-rt")
        .enable_all()
        .build()
        .map_err(|e| {
            Fatal::new(
                exit::FAILED,
                format!("could not start the runtime: {e}"),
                None,
            )
        })?;

    let (endpoint, region) = runtime.block_on(async {
        let role = Role::connect(spec, cli.region.clone())
            .await
            .map_err(|e| Fatal::new(exit::FAILED, e.message, Some(e.hint.to_string())))?;
        let first = role.assume().await.map_err(|e| {
            Fatal::new(
                exit::FAILED,
                format!("could not assume {}: {e}", role.spec().role_arn),
                Some(e.hint().to_string()),
            )
        })?;
        tracing::info!(
            role = %first.assumed_role_arn,
            expires = %broker::fmt_time(first.expiration),
            "assumed role"
        );
        let region = role.region().map(str::to_string);
        let (protocol, guard) = match cli.endpoint {
            EndpointKind::Ecs => (Protocol::Container, broker::CONTAINER_GUARD),
            EndpointKind::Imds => {
                tracing::warn!(
                    "IMDS mode: any local process that can reach 127.0.0.1 can read the role's \
                     credentials from the endpoint; the default container mode requires a token"
                );
                let role_name = cli.role_arn.name().to_string();
                (Protocol::Imds { role_name }, broker::IMDS_GUARD)
            }
        };
        let credentials = broker::start(role, first, guard);
        let endpoint = Endpoint::start(credentials, protocol).await.map_err(|e| {
            Fatal::new(
                exit::FAILED,
                format!("{e:#}"),
                Some("credwrap needs a TCP port on 127.0.0.1".to_string()),
            )
        })?;
        Ok::<_, Fatal>((endpoint, region))
    })?;

    let files = SharedFiles::create(aws_files::user_config_path()).map_err(|e| {
        Fatal::new(
            exit::FAILED,
            format!("{e:#}"),
            Some("check that TMPDIR is writable".to_string()),
        )
    })?;
    let endpoint_env = endpoint.child_env();
    let env = child_env::build(
        std::env::vars_os(),
        &Additions {
            endpoint: &endpoint_env,
            files: &files.child_env(),
            region: region.as_deref(),
            role_arn: cli.role_arn.as_str(),
        },
    );

    let supervisor = Supervisor::install().map_err(|e| {
        Fatal::new(
            exit::FAILED,
            format!("could not install signal handlers: {e}"),
            None,
        )
    })?;
    let outcome = supervisor
        .spawn(&cli.command, env)
        .map(|running| running.wait());

    // The credential must not outlive the child: revoke it before anything else.
    endpoint.close();
    files.remove();
    drop(runtime);
    outcome.map_err(|e| Fatal::new(e.code, e.message, None))
}

/// `credwrap-<who>-<unix time>`: tells a CloudTrail reader the session came from credwrap, and
/// from which CI run when there is one.
fn default_session_name() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let who = var("GITHUB_RUN_ID")
        .map(|id| format!("gh{id}"))
        .or_else(|| var("CI_JOB_ID").map(|id| format!("gl{id}")))
        .or_else(|| var("BUILDKITE_BUILD_NUMBER").map(|id| format!("bk{id}")))
        .or_else(|| var("USER"))
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| format!("pid{}", std::process::id()));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let who: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c))
        .take(40)
        .collect();
    let name = format!("credwrap-{who}-{secs}");
    if cli::is_valid_session_name(&name) {
        name
    } else {
        format!("credwrap-{secs}")
    }
}

/// Logs go to stderr. The SDK's own crates stay at `warn` at every verbosity: their wire-level
/// logs would print the source credentials' signatures and the role's keys.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let base = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::new(format!("{base},credwrap={level}"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
