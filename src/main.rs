//! credwrap: run a command as an AWS role whose credentials refresh themselves.
//!
//! Data flows one way: settings → role (STS) → broker (current credential) → endpoint
//! (loopback HTTP); the child module only sees the endpoint's environment variables. This file
//! is wiring: each step returns a [`Failure`] that `main` prints once, with its exit code.

// The stages, in pipeline order. Command line + environment + AWS files -> one resolved plan.
mod settings;
// Source credentials and the STS calls that turn them into the role's.
mod role;
// Holds the current credential and re-assumes the role before it expires.
mod broker;
// The listeners the command's SDK (and containers) read the credential from.
mod endpoint;
// What a served process is handed: the endpoint's variables and the stand-in AWS files.
mod client;
// The command: exec, signals, exit status.
mod child;
// Whole-job mode: no command; the hand-off, then --watch and --max-lifetime.
mod serve;

// What ties the stages together.
// In order: private directory, first AssumeRole, broker, listeners, the client environment.
mod startup;
// The exit-code contract and the one failure type `main` prints.
mod exit;
// OS plumbing every stage may use: limits, private directory, randomness, reaping, secrets, logs.
mod sys;

use std::process::ExitStatus;

use clap::Parser;

use crate::child::Supervisor;
use crate::endpoint::Gateway;
use crate::exit::Failure;
use crate::settings::cli::Cli;
use crate::settings::{Mode, Plan};

fn main() {
    // Before anything else: it reads no option and no CREDWRAP_* variable.
    client::process::run_if_asked();
    client::status::run_if_asked();
    let cli = Cli::try_parse().unwrap_or_else(|e| Failure::from(e).print_and_exit());
    match cli.generated_docs() {
        Ok(Some(text)) => return exit::print_or_exit(&text),
        Ok(None) => {}
        Err(e) => Failure::setup(
            format!("could not render the docs: {e}"),
            "please report it",
        )
        .print_and_exit(),
    }
    sys::logging::init(cli.verbose, cli.quiet, cli.log_format);
    match run(cli) {
        Ok(status) => exit::mirror(status),
        Err(failure) => failure.print_and_exit(),
    }
}

/// The whole run, step by step: its order (which signal does what when, what is removed when)
/// reads top to bottom. The command line is consumed by [`settings::from_command_line`] and read
/// nowhere after.
fn run(cli: Cli) -> Result<ExitStatus, Failure> {
    let limits = sys::lockdown::lock_down().map_err(|e| {
        Failure::setup(
            format!("could not set credwrap's process limits: {e}"),
            "this needs Linux's prctl and setrlimit",
        )
    })?;
    client::env::warn_if_nested();
    // No file exists yet: until here a signal's default action leaves nothing behind.
    let plan = settings::from_command_line(&cli)?;
    drop(cli);
    let gateways = gateways(&plan)?;
    let mode = &plan.mode;
    let supervision = match mode {
        Mode::Run(child) => {
            child::find(&child.command)?;
            child::Supervision::of_child(child, limits, !gateways.is_empty())
        }
        Mode::Serve(_) => child::Supervision::of_server(limits, !gateways.is_empty()),
    };
    // Before any thread exists: the fork of --detach is safe only then.
    let readiness = match mode {
        Mode::Serve(serve) if serve.detach => Some(serve::detach::detach()?),
        _ => None,
    };
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
    let no_signals = |e: std::io::Error| {
        Failure::setup(
            format!("could not install signal handlers: {e}"),
            "check ulimit -n",
        )
    };
    let supervisor = Supervisor::install(supervision).map_err(no_signals)?;
    let stop = runtime
        .block_on(async { supervisor.stop_signals() })
        .map_err(no_signals)?;
    let prepare = startup::prepare(
        plan.assume,
        plan.roles,
        plan.aws_files.config,
        plan.endpoint,
        gateways,
        mode.private_parent(),
    );
    let mut started = match runtime.block_on(startup::unless_stopped(prepare, stop)) {
        Ok(started) => started,
        Err(stopped) => {
            // Not a drop, which would wait for a read still blocked on a FIFO.
            runtime.shutdown_background();
            return stopped.into_result();
        }
    };
    let outcome = match mode {
        Mode::Serve(serve) => serve::run(serve, &started, readiness, &runtime, supervisor),
        Mode::Run(child) => supervisor
            .spawn(&child.command, child.environment(&mut started.client_env))
            .map_err(Failure::from)
            .and_then(|running| running.wait().map_err(Failure::from)),
    };
    // The credential must not outlive the child: revoke it before anything else.
    started.stop();
    runtime.shutdown_background();
    outcome
}

/// `--container-host` addresses, checked against this host's interfaces: a usage error, before
/// any network call.
fn gateways(plan: &Plan) -> Result<Vec<Gateway>, Failure> {
    let checked = plan
        .endpoint
        .gateways
        .iter()
        .map(|ip| Gateway::validate(*ip));
    let gateways = checked.collect::<Result<Vec<_>, _>>();
    gateways.map_err(|e| Failure::from(settings::cli::usage_error(&e)))
}
