//! Whole-job mode (`--serve`), once serving: hand the later processes what they need
//! ([`crate::serve::handoff`]), then serve until something stops credwrap: a signal, the watched
//! process exiting (`--watch`), or `--max-lifetime`.

// `--serve --detach`: the fork that returns to the caller once serving.
pub mod detach;
// What later processes need, written out (shell, $GITHUB_ENV).
pub mod handoff;

use std::ffi::OsString;
use std::time::Duration;

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::child::Supervisor;
use crate::exit::Failure;
use crate::serve::detach::Readiness;
use crate::settings::cli::ExportFormat;
use crate::settings::ServePlan;
use crate::startup::Started;

/// What whole-job mode exports of its own, besides what every client gets. No option reads
/// these (the test below checks), so a later credwrap parses its options as anywhere else.
pub const EXPORTED_PID: &str = "CREDWRAP_PID";
pub const EXPORTED_LOG: &str = "CREDWRAP_LOG_PATH";

/// Whole-job mode, started: hands off, then serves until a signal, `--watch` or
/// `--max-lifetime` stops it; a service stopped on purpose exits 0.
pub fn run(
    plan: &ServePlan,
    started: &Started,
    readiness: Option<Readiness>,
    runtime: &tokio::runtime::Runtime,
    supervisor: Supervisor,
) -> Result<ExitStatus, Failure> {
    let log = plan
        .log_file
        .clone()
        .unwrap_or_else(|| started.dir.path().join("credwrap.log"));
    // The default role's session, as configure-aws-credentials' outputs give it.
    let identity = started
        .broker
        .as_ref()
        .map(|b| b.reader().held().credential.assumed_role_arn.clone());
    hand_off(
        plan,
        &started.client_env,
        identity.as_deref(),
        readiness,
        &log,
    )?;
    let ended = runtime
        .block_on(async { stop_when(plan.watch.clone(), plan.max_lifetime, supervisor.stopper()) });
    let why = match (supervisor.wait_for_stop(), ended) {
        (Some(sig), _) => format!("signal {}", crate::child::signals::name(sig)),
        // Only the task closes the stopper, once it has its reason.
        (None, Some(task)) => runtime.block_on(task).unwrap_or_default(),
        (None, None) => String::new(),
    };
    tracing::info!("stopping ({why}): the credentials served are revoked");
    Ok(ExitStatus::from_raw(0))
}

/// Writes the exports where `plan` says; with `--detach`, tells the waiting caller what to
/// print, and moves the log to `log`.
fn hand_off(
    plan: &ServePlan,
    target: &[(OsString, OsString)],
    identity: Option<&str>,
    readiness: Option<Readiness>,
    log: &std::path::Path,
) -> Result<(), Failure> {
    let mut extra = vec![(EXPORTED_PID, std::process::id().to_string())];
    if readiness.is_some() {
        extra.push((EXPORTED_LOG, log.display().to_string()));
    }
    let changes = handoff::changes(std::env::vars_os(), target, &extra);
    let stdout = match plan.export {
        ExportFormat::Shell => handoff::shell(&changes),
        ExportFormat::Github => {
            let delimiter = format!(
                "ghadelimiter_{}",
                crate::sys::random::hex(16).map_err(|e| Failure::setup(
                    format!("no randomness from the kernel (getrandom): {e}"),
                    "credwrap's secrets come from getrandom(2)"
                ))?
            );
            let out = handoff::github(&changes, &delimiter);
            if !out.kept.is_empty() {
                tracing::warn!(
                    "{} may lead some SDKs in later steps to other credentials, and a GitHub \
                     step cannot unset a variable: unset them in the step that set them",
                    out.kept.join(", ")
                );
            }
            let path = plan
                .github_env
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            append(path, &out.env_file).map_err(|e| {
                Failure::setup(
                    format!("could not write to {} (GITHUB_ENV): {e}", path.display()),
                    "check that this runs in a GitHub Actions step",
                )
            })?;
            if let (Some(path), Some(arn)) = (&plan.github_output, identity) {
                append(path, &handoff::github_outputs(arn)).map_err(|e| {
                    Failure::setup(
                        format!("could not write to {} (GITHUB_OUTPUT): {e}", path.display()),
                        "check that this runs in a GitHub Actions step",
                    )
                })?;
            }
            out.stdout
        }
    };
    match readiness {
        Some(r) => r.serving(&stdout, log).map_err(|e| {
            Failure::setup(
                format!("could not hand over to the background: {e}"),
                "check that TMPDIR (or --log-file's directory) is writable",
            )
        }),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed stdout (`credwrap --serve | head -1`) is the reader's business.
            let _ = out.write_all(stdout.as_bytes()).and_then(|()| out.flush());
            drop(out);
            // A reader of the exports (`exec 3< <(credwrap --serve)`, a supervisor) knows
            // it has them all at end of file.
            crate::serve::detach::let_go_of_stdout().map_err(|e| {
                Failure::setup(
                    format!("could not close stdout after the exports: {e}"),
                    "check the open-file limit (ulimit -n)",
                )
            })
        }
    }
}

fn append(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())
}

/// Closes `stopper` when the watched process exits or the lifetime is over, on the current
/// runtime; the task ends with the reason. `None` when there is nothing to wait for.
fn stop_when(
    watch: Option<crate::settings::Watched>,
    max_lifetime: Option<Duration>,
    stopper: signal_hook::iterator::Handle,
) -> Option<tokio::task::JoinHandle<String>> {
    if watch.is_none() && max_lifetime.is_none() {
        return None;
    }
    Some(tokio::spawn(async move {
        let watched = async {
            match watch {
                Some(watched) => {
                    let pid = watched.pid;
                    watch_exit(watched).await;
                    format!("the watched process {pid} exited")
                }
                None => std::future::pending().await,
            }
        };
        let expired = async {
            match max_lifetime {
                Some(d) => {
                    tokio::time::sleep(d).await;
                    format!("--max-lifetime ({}s) is over", d.as_secs())
                }
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            r = watched => r,
            r = expired => r,
        };
        stopper.close();
        reason
    }))
}

/// Resolves when the watched process is gone: its pidfd, opened when `--watch` was checked,
/// becomes readable then; without one (before Linux 5.3), a look at its PID every second.
async fn watch_exit(watched: crate::settings::Watched) {
    // A copy of the descriptor opened when --watch was checked: the same process, whatever
    // its PID has become since.
    if let Some(owned) = watched.fd.as_deref().and_then(|fd| fd.try_clone().ok()) {
        // SAFETY: the OwnedFd is the AsyncFd's for its whole life, and stays open meanwhile.
        if let Ok(async_fd) = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
        } {
            let _ = async_fd.readable().await;
            return;
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !crate::settings::process_exists(watched.pid) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every `CREDWRAP_*` name credwrap hands a later process, none of them an option's.
    #[test]
    fn nothing_exported_is_read_as_an_option() {
        use clap::CommandFactory;
        let options: Vec<String> = crate::settings::cli::Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert!(options.iter().any(|e| e == "CREDWRAP_LOG_FILE"));
        for exported in [
            super::EXPORTED_PID,
            super::EXPORTED_LOG,
            crate::client::env::NESTED_MARKER,
            crate::endpoint::named::ENV_ROLES_TOKEN,
            crate::endpoint::ENV_CONTAINER_ENV_DIR,
        ] {
            assert!(
                !options.iter().any(|o| o == exported),
                "{exported} is exported and read as an option"
            );
        }
    }
}
