//! credwrap: run a command as an AWS role whose credentials refresh themselves.
//!
//! Data flows one way: cli → settings → role (STS) → broker (current credential) → endpoint
//! (loopback HTTP); the child module only sees the endpoint's environment variables. This file
//! is wiring: each step returns a [`Failure`] that `main` prints once, with its exit code.

// In pipeline order: what the user asked for, then what credwrap does with it.
// The command line: clap definitions, values checked by `limits`.
mod cli;
// What STS and IAM accept: role ARNs, names, durations, tags, policies.
mod limits;
// Command line + environment + AWS files -> one resolved plan; after it, nothing reads `cli`.
mod settings;
// credwrap's own process limits (non-dumpable, core 0, open files) and the child's.
mod lockdown;
// The 0700 directory for the token file, the env file and the stand-in AWS files.
mod private_dir;
// `--serve --detach`: the fork that returns to the caller once serving.
mod detach;
// In order: private directory, first AssumeRole, broker, listeners, the command's environment.
mod startup;
// Source credentials and the STS calls that turn them into the role's.
mod role;
// The role credential as STS issued it, and its time formats.
mod credential;
// Holds the current credential and re-assumes the role before it expires.
mod broker;
// The listeners the child's SDK (and containers) read the credential from.
mod endpoint;
// The command: its environment, exec, signals, exit status.
mod child;
// Whole-job mode: what later processes need, written out (shell, $GITHUB_ENV).
mod handoff;
// Whole-job mode, serving: the hand-off, then --watch and --max-lifetime.
mod serve;
// The exit-code contract and the one failure type `main` prints.
mod exit;
// Log lines on stderr, text or JSON; never a secret.
mod logging;
// Random bytes from getrandom(2), for the endpoint's secrets and retry jitter.
mod random;
// Own children (the token command) whose status a subreaper's reaping hands over.
mod reaping;
// A string that never prints: secrets.
mod secret;

use std::process::ExitStatus;

use clap::Parser;

use crate::child::Supervisor;
use crate::cli::Cli;
use crate::endpoint::Gateway;
use crate::exit::Failure;
use crate::settings::{AwsFiles, Env, Profiles};

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| Failure::from(e).print_and_exit());
    match cli.generated_docs() {
        Ok(Some(text)) => return print_or_exit(&text),
        Ok(None) => {}
        Err(e) => Failure::setup(
            format!("could not render the docs: {e}"),
            "please report it",
        )
        .print_and_exit(),
    }
    logging::init(cli.verbose, cli.quiet, cli.log_format);
    match run(cli) {
        Ok(status) => exit::mirror(status),
        Err(failure) => failure.print_and_exit(),
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
        Err(e) => Failure::setup(format!("could not write to stdout: {e}"), "check stdout")
            .print_and_exit(),
    }
}

/// The whole run, step by step. It stays one function so that its order, which signal does
/// what when and what is removed when, reads top to bottom; the command line is consumed by
/// [`plan`] and read nowhere after.
fn run(cli: Cli) -> Result<ExitStatus, Failure> {
    let limits = lockdown::lock_down().map_err(|e| {
        Failure::setup(
            format!("could not set credwrap's process limits: {e}"),
            "this needs Linux's prctl and setrlimit",
        )
    })?;
    child::env::warn_if_nested();
    // No file exists yet: until here a signal's default action leaves nothing behind.
    let (plan, gateways) = plan(cli)?;
    if let Some(child) = &plan.child {
        child::find(&child.command)?;
    }
    // Before any thread exists: the fork of --detach is safe only then.
    let readiness = match &plan.serve {
        Some(serve) if serve.detach => Some(detach::detach()?),
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
    let supervision = child::Supervision {
        kill_after: plan.child.as_ref().and_then(|c| c.kill_after),
        subreaper: plan.child.as_ref().is_some_and(|c| c.subreaper),
        limits,
        drop_bind_capability: !gateways.is_empty(),
    };
    let no_signals = |e: std::io::Error| {
        Failure::setup(
            format!("could not install signal handlers: {e}"),
            "check ulimit -n",
        )
    };
    let supervisor = Supervisor::install(supervision, plan.child.is_none()).map_err(no_signals)?;
    let mut stop = runtime
        .block_on(async { supervisor.stop_signals() })
        .map_err(no_signals)?;
    let private_parent = plan.serve.as_ref().and_then(|s| s.private_parent.clone());
    // A stop signal while starting drops whatever was started: the private directory and the
    // token file in it go with it.
    let started = runtime.block_on(async {
        tokio::select! {
            started = startup::prepare(plan.assume, plan.endpoint.child, gateways, private_parent) => started.map(Ok),
            Some(sig) = stop.recv() => Ok(Err(sig)),
        }
    });
    let mut started = match started {
        Ok(Ok(started)) => started,
        Ok(Err(sig)) => {
            tracing::info!(
                signal = sig,
                "stopped while starting; nothing was left behind"
            );
            // Not a drop, which would wait for a read still blocked on a FIFO.
            runtime.shutdown_background();
            return Ok(std::os::unix::process::ExitStatusExt::from_raw(sig));
        }
        Err(failure) => {
            runtime.shutdown_background();
            return Err(failure);
        }
    };
    let outcome = match (&plan.child, &plan.serve) {
        (None, Some(serve)) => match serve::run(serve, &started, readiness, &runtime, supervisor) {
            Ok(status) => Ok(Ok(status)),
            Err(failure) => {
                started.stop();
                runtime.shutdown_background();
                return Err(failure);
            }
        },
        (None, None) => unreachable_plan(),
        (Some(child), _) => supervisor
            .spawn(&child.command, std::mem::take(&mut started.child_env))
            .map(|running| running.wait()),
    };
    // The credential must not outlive the child: revoke it before anything else.
    started.stop();
    runtime.shutdown_background();
    Ok(outcome??)
}

/// The plan always has a command or a serve plan: settings makes one or the other.
fn unreachable_plan() -> Result<Result<ExitStatus, child::LostChild>, child::SpawnError> {
    Err(child::SpawnError {
        code: exit::USAGE,
        message: "no command to run and --serve not given".into(),
    })
}

/// Everything the command line, the environment and the AWS files say, checked: bad input is
/// a usage error here, before any network call. The command line ends here.
fn plan(cli: Cli) -> Result<(settings::Plan, Vec<Gateway>), Failure> {
    let env = Env::real();
    // Each file is read here, once, before any signal handler exists: a FIFO that blocks the
    // read leaves a signal its default action, and nothing has been created yet.
    let files = AwsFiles::read(&env);
    // A runtime of the calling thread alone, gone when the plan is made: no thread is left for
    // the fork of --detach.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| {
            Failure::setup(format!("could not start a runtime: {e}"), "check ulimit -u")
        })?;
    let profiles = runtime
        .block_on(Profiles::parse(files, &env))
        .map_err(|e| cli::usage_error(&e))?;
    drop(runtime);
    let plan = settings::resolve(&cli, &env, &profiles, &mut settings::prompt::terminal)?;
    let gateways = plan
        .endpoint
        .gateways
        .iter()
        .map(|ip| Gateway::validate(*ip))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cli::usage_error(&e))?;
    Ok((plan, gateways))
}
