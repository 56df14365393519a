//! Helpers shared by the integration tests: the fake STS, and running the built binary in a
//! controlled environment (never the real home directory, never real AWS, never IMDS).

#![allow(dead_code, unused_imports)]

pub mod endpoint;
pub mod fake_sts;
pub mod moto;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use fake_sts::{FakeSts, Fault};

/// Generous: a cold boto3 import on a loaded 2-core CI machine takes seconds.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// A sandbox for one credwrap run: a fake STS, a private HOME with AWS files the test controls.
pub struct Sandbox {
    pub sts: FakeSts,
    pub home: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(home.path().join(".aws/config"), "").unwrap();
        std::fs::write(home.path().join(".aws/credentials"), "").unwrap();
        Sandbox {
            sts: FakeSts::start(),
            home,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `credwrap` with a clean environment: source keys, the fake STS, a private HOME, and
    /// IMDS disabled so no SDK falls through to 169.254.169.254.
    pub fn credwrap(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_credwrap"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_STS", self.sts.url())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", fake_sts::SOURCE_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", fake_sts::SOURCE_SECRET)
            .env("AWS_CONFIG_FILE", self.path(".aws/config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path(".aws/credentials"))
            .env("CREDWRAP_ROLE_ARN", fake_sts::ROLE_ARN);
        // A session of its own: no controlling terminal, as in CI, whatever runs the tests.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        cmd
    }
}

/// The output and status of a finished run.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Starts `cmd` with all three streams piped, its stdout read line by line; [`finish`] collects
/// the rest.
pub fn start(cmd: &mut Command) -> (Child, Lines) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    (child, lines)
}

/// Runs to completion (or panics after [`TIMEOUT`]), capturing both streams.
pub fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child)
}

/// Waits for a started child with piped stdout/stderr, killing it if it outlives [`TIMEOUT`].
pub fn finish(mut child: Child) -> Output {
    let mut out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(TIMEOUT) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("process {pid} did not finish within {TIMEOUT:?}");
        }
    };
    let stdout = out.take().map(|h| h.join().unwrap()).unwrap_or_default();
    let stderr = err.map(|h| h.join().unwrap()).unwrap_or_default();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Reads lines from a child's stdout, with a deadline, so tests synchronise on what the child
/// prints instead of sleeping.
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    pub fn new(stdout: ChildStdout) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    /// The next line, or a panic naming what was awaited.
    pub fn next(&self, what: &str) -> String {
        self.rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("the child never printed {what}"))
    }

    /// The next line, or an error once the child closed its stdout (or after [`TIMEOUT`]).
    pub fn rx_recv(&self) -> Result<String, mpsc::RecvTimeoutError> {
        self.rx.recv_timeout(TIMEOUT)
    }

    /// Skips lines until one satisfies `pred`.
    pub fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.next(what);
            if pred(&line) {
                return line;
            }
        }
    }
}

/// The Python interpreter of the test environment that `scripts/test` installs.
pub fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test, which installs the test dependencies",
        venv.display()
    );
    venv
}

/// The Rust-SDK child, built by `cargo test` from examples/sdk_child.rs.
pub fn rust_child() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_credwrap"))
        .parent()
        .unwrap()
        .join("examples/sdk_child");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --all-targets` (scripts/test does)",
        bin.display()
    );
    bin
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/children")
        .join(name)
}
