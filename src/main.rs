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
mod lockdown;
mod logging;
mod private_dir;
mod random;
mod role;
mod secret;
mod settings;
mod startup;

use std::process::ExitStatus;

use clap::Parser;

use crate::child::{env as child_env, Supervisor};
use crate::cli::Cli;
use crate::endpoint::ContainerHost;
use crate::exit::Failure;
use crate::settings::{AwsFiles, Env, Profiles};

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| Failure::from(e).exit());
    match cli.generated_docs() {
        Ok(Some(text)) => return print_or_exit(&text),
        Ok(None) => {}
        Err(e) => Failure::setup(
            format!("could not render the docs: {e}"),
            "please report it",
        )
        .exit(),
    }
    logging::init(cli.verbose, cli.quiet, cli.log_format);
    match run(cli) {
        Ok(status) => exit::mirror(status),
        Err(failure) => failure.exit(),
    }
}

/// Writes `text` to stdout. A reader that closed early (`credwrap --man | head -1`) took what
/// it wanted: that is success, quietly, as in ripgrep; any other write error is a failure.
fn print_or_exit(text: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Failure::setup(format!("could not write to stdout: {e}"), "check stdout").exit(),
    }
}

/// The whole run, step by step. It stays one function (a little over 60 lines) so that its
/// order, which signal does what when and what is removed when, reads top to bottom.
fn run(cli: Cli) -> Result<ExitStatus, Failure> {
    let limits = lockdown::lock_down().map_err(|e| {
        Failure::setup(
            format!("could not make credwrap non-dumpable: {e}"),
            "this needs Linux's prctl",
        )
    })?;
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
    // No file exists yet: until here a signal's default action leaves nothing behind.
    let (settings, containers) = resolve(&cli, &runtime)?;
    child::find(&cli.command)?;
    let options = child::Options {
        kill_after: cli.kill_after,
        subreaper: cli.subreaper,
        limits,
    };
    let no_signals = |e: std::io::Error| {
        Failure::setup(
            format!("could not install signal handlers: {e}"),
            "check ulimit -n",
        )
    };
    let supervisor = Supervisor::install(options, cli.serve).map_err(no_signals)?;
    let mut stop = runtime
        .block_on(async { supervisor.stop_signals() })
        .map_err(no_signals)?;
    // A stop signal while starting drops whatever was started: the private directory and the
    // token file in it go with it.
    let started = runtime.block_on(async {
        tokio::select! {
            started = startup::start(&cli, settings, containers) => started.map(Ok),
            Some(sig) = stop.recv() => Ok(Err(sig)),
        }
    })?;
    let mut started = match started {
        Ok(started) => started,
        Err(sig) => {
            tracing::info!(
                signal = sig,
                "stopped while starting; nothing was left behind"
            );
            // Not a drop, which would wait for a read still blocked on a FIFO.
            runtime.shutdown_background();
            return Ok(std::os::unix::process::ExitStatusExt::from_raw(sig));
        }
    };
    let outcome = if cli.serve {
        startup::announce(&started.endpoint);
        let sig = supervisor.wait_for_stop();
        tracing::info!(
            signal = %child::signals::name(sig),
            "stopping: the credentials served are revoked"
        );
        // A service stopped on purpose.
        Ok(Ok(std::os::unix::process::ExitStatusExt::from_raw(0)))
    } else {
        let running = supervisor.spawn(&cli.command, std::mem::take(&mut started.child_env));
        running.map(|running| running.wait())
    };
    // The credential must not outlive the child: revoke it before anything else.
    started.stop();
    runtime.shutdown_background();
    Ok(outcome??)
}

/// Everything the command line, the environment and the AWS files say, checked: bad input is
/// a usage error here, before any network call.
fn resolve(
    cli: &Cli,
    runtime: &tokio::runtime::Runtime,
) -> Result<(settings::Settings, Vec<ContainerHost>), Failure> {
    let env = Env::real();
    // Each file is read here, once, before any signal handler exists: a FIFO that blocks the
    // read leaves a signal its default action, and nothing has been created yet.
    let files = AwsFiles::read(&env);
    let profiles = runtime
        .block_on(Profiles::parse(files, &env))
        .map_err(|e| cli::usage_error(&e))?;
    let settings = settings::resolve(cli, &env, &profiles, &mut settings::prompt::terminal)?;
    let containers = cli
        .container_hosts
        .iter()
        .map(|ip| ContainerHost::check(*ip))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cli::usage_error(&e))?;
    Ok((settings, containers))
}
