//! credwrap: run a command as an AWS role whose credentials refresh themselves.
//!
//! Data flows one way: cli → settings → role (STS) → broker (current credential) → endpoint
//! (loopback HTTP); the child module only sees the endpoint's environment variables. This file
//! is wiring: each step returns a [`Failure`] that `main` prints once, with its exit code.

mod broker;
mod child;
mod cli;
mod credential;
mod endpoint;
mod exit;
mod limits;
mod logging;
mod private_dir;
mod role;
mod secret;
mod settings;

use std::process::ExitStatus;

use clap::Parser;

use crate::broker::Broker;
use crate::child::{aws_files, env as child_env, Supervisor};
use crate::cli::{Cli, EndpointKind};
use crate::endpoint::{Endpoint, Protocol};
use crate::exit::Failure;
use crate::private_dir::PrivateDir;
use crate::role::Role;
use crate::settings::{Env, Profiles, Settings};

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| Failure::from(e).exit());
    match cli.print_generated_docs() {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => Failure::setup(format!("could not write to stdout: {e}"), "check stdout").exit(),
    }
    logging::init(cli.verbose, cli.quiet, cli.log_format);
    match run(cli) {
        Ok(status) => exit::mirror(status),
        Err(failure) => failure.exit(),
    }
}

fn run(cli: Cli) -> Result<ExitStatus, Failure> {
    child_env::warn_if_nested();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("credwrap-rt")
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::setup(
                format!("could not start the runtime: {e}"),
                "check ulimit -u",
            )
        })?;
    let env = Env::real();
    let profiles = runtime
        .block_on(Profiles::load(&env))
        .map_err(|e| cli::usage_error(&e))?;
    let settings = settings::resolve(&cli, &env, &profiles, &mut settings::prompt::terminal)?;
    let temp_failed =
        |e: anyhow::Error| Failure::setup(format!("{e:#}"), "check that TMPDIR is writable");
    let dir = PrivateDir::create().map_err(temp_failed)?;
    let role_arn = settings.target.role_arn.to_string();
    let (endpoint, broker, region) = runtime.block_on(serve(&cli, settings, &dir))?;

    let files =
        aws_files::write_stand_ins(&dir, aws_files::user_config_path()).map_err(temp_failed)?;
    let additions = child_env::Additions {
        endpoint: &endpoint.child_env(),
        files: &files,
        region: region.as_deref(),
        role_arn: &role_arn,
    };
    let env = child_env::build(std::env::vars_os(), &additions);
    let options = child::Options {
        kill_after: cli.kill_after,
        subreaper: cli.subreaper,
    };
    let supervisor = Supervisor::install(options).map_err(|e| {
        Failure::setup(
            format!("could not install signal handlers: {e}"),
            "check ulimit -n",
        )
    })?;
    let outcome = supervisor
        .spawn(&cli.command, env)
        .map(|running| running.wait());

    // The credential must not outlive the child: revoke it before anything else.
    endpoint.close();
    drop(broker);
    dir.remove();
    drop(runtime);
    Ok(outcome??)
}

/// Assumes the role once (so a refusal is reported before anything starts), then starts the
/// broker and the endpoint the child will read from.
async fn serve(
    cli: &Cli,
    settings: Settings,
    dir: &PrivateDir,
) -> Result<(Endpoint, Broker, Option<String>), Failure> {
    let role_arn = settings.target.role_arn.clone();
    let mut role = Role::connect(settings).await?;
    let first = role.assume().await?;
    tracing::info!(
        role = %first.assumed_role_arn,
        expires = %credential::fmt_time(first.expiration),
        "assumed role"
    );
    let region = role.region().map(str::to_string);
    let protocol = match cli.endpoint {
        EndpointKind::Ecs => Protocol::Container {
            token_file: cli.token_file,
        },
        EndpointKind::Imds => Protocol::Imds {
            role: role_arn,
            region: region.clone(),
        },
    };
    let broker = Broker::start(role, first, protocol.guard());
    let endpoint = Endpoint::start(broker.reader(), protocol, dir)
        .await
        .map_err(|e| Failure::setup(format!("{e:#}"), "credwrap needs a TCP port on 127.0.0.1"))?;
    Ok((endpoint, broker, region))
}
