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
mod settings;

use std::io::IsTerminal;
use std::process::ExitStatus;

use clap::Parser;

use crate::child::aws_files::{self, SharedFiles};
use crate::child::env::{self as child_env, Additions};
use crate::child::Supervisor;
use crate::cli::{Cli, EndpointKind, LogFormat};
use crate::endpoint::{Endpoint, Protocol};
use crate::role::Role;

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
    if let Some(shell) = cli.completions {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "credwrap", &mut std::io::stdout());
        std::process::exit(0);
    }
    if cli.man {
        let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
        let code = match page.render(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("credwrap: error: could not write the man page: {e}");
                exit::FAILED
            }
        };
        std::process::exit(code);
    }
    init_logging(cli.verbose, cli.quiet, cli.log_format);
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

    // Bad input (a missing profile, an unusable MFA code) is a usage error: exit 2 before any
    // network call, formatted like clap's own.
    let settings = runtime
        .block_on(settings::resolve(&cli))
        .unwrap_or_else(|e| e.exit());
    let role_name = settings.role_arn.name().to_string();
    let role_arn = settings.role_arn.to_string();

    let (endpoint, region) = runtime.block_on(async {
        let role = Role::connect(settings)
            .await
            .map_err(|e| Fatal::new(exit::FAILED, e.message, Some(e.hint.to_string())))?;
        let first = role.assume().await.map_err(|e| {
            Fatal::new(
                exit::FAILED,
                format!("could not assume {}: {e}", role.role_arn()),
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

    let temp_failed = |e: anyhow::Error| {
        Fatal::new(
            exit::FAILED,
            format!("{e:#}"),
            Some("check that TMPDIR is writable".to_string()),
        )
    };
    let files = SharedFiles::create(aws_files::user_config_path()).map_err(temp_failed)?;
    let mut endpoint_env = endpoint.child_env();
    if cli.token_file {
        // The token then lives in a 0600 file instead of the child's environment, which any
        // process of the same user can read from /proc.
        let token = endpoint_env
            .iter()
            .position(|(k, _)| *k == endpoint::ENV_TOKEN)
            .map(|i| endpoint_env.remove(i));
        if let Some((_, token)) = token {
            let path = files.write_secret("token", &token).map_err(temp_failed)?;
            endpoint_env.push((
                endpoint::ENV_TOKEN_FILE,
                secret::Secret::new(path.to_string_lossy()),
            ));
        }
    }
    let env = child_env::build(
        std::env::vars_os(),
        &Additions {
            endpoint: &endpoint_env,
            files: &files.child_env(),
            region: region.as_deref(),
            role_arn: &role_arn,
        },
    );

    let options = child::Options {
        kill_after: cli.kill_after,
        subreaper: cli.subreaper,
    };
    let supervisor = Supervisor::install(options).map_err(|e| {
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

/// Logs go to stderr. The SDK's own crates stay at `warn` at every verbosity: their wire-level
/// logs would print the source credentials' signatures and the role's keys.
fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let base = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::new(format!("{base},credwrap={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
