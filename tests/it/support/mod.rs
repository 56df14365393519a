//! Helpers shared by the integration tests: the fake STS, and running the built binary in a
//! controlled environment (never the real home directory, never real AWS, never IMDS).

pub mod corp_net;
pub mod endpoint;
pub mod fake_sts;
pub mod github;
pub mod moto;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use fake_sts::{Expiry, FakeSts, Fault};

/// A lock on something the whole machine has one of, held until dropped: `flock` on a file
/// named for it, so it holds between the threads of one test process and between the processes
/// nextest runs side by side. A test that panics while holding it lets it go.
pub struct Exclusive(#[allow(dead_code, reason = "held for its lock")] std::fs::File);

/// 169.254.170.2 and port 80 on it: the namespaced networks and Docker's network both use it.
pub const GATEWAY_ADDRESS: &str = "gateway-169.254.170.2";
/// The Docker daemon's images, networks and containers named `credwrap-test`.
pub const DOCKER: &str = "docker";

/// Waits for the machine-wide lock `name` (one of the constants above).
pub fn exclusive(name: &str) -> Exclusive {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(format!("credwrap-tests-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Exclusive(file);
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::Interrupted,
            "flock {}: {e}",
            path.display()
        );
    }
}

/// `out.stderr` contains `what`, or the test fails showing all of stderr.
#[track_caller]
pub fn assert_stderr_has(out: &Output, what: &str) {
    assert!(
        out.stderr.contains(what),
        "stderr lacks {what:?}:\n{}",
        out.stderr
    );
}

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
        std::fs::create_dir_all(home.path().join("tmp")).unwrap();
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
        self.sandboxed(env!("CARGO_BIN_EXE_credwrap"))
    }

    /// `sh -c SCRIPT` in the same environment as [`Sandbox::credwrap`], with the credwrap under
    /// test first on PATH: a recipe of the docs, as written.
    pub fn shell(&self, script: &str) -> Command {
        let mut cmd = self.sandboxed("sh");
        cmd.env("PATH", path_with_credwrap()).arg("-c").arg(script);
        cmd
    }

    fn sandboxed(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            // Private directories go here: a test that kills credwrap leaves nothing in /tmp.
            .env("TMPDIR", self.home.path().join("tmp"))
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

/// A started process (credwrap, usually, with its child) whose output the test reads line by
/// line as it comes, to synchronise on events, and gets in full at the end. Dropped before it
/// finished (a failed assertion), it is killed with its process group, so that a failing test
/// leaves no credwrap behind holding a port.
pub struct Running {
    /// None once finished.
    child: Option<Child>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            // Its own session's group (see `Sandbox::credwrap`), then the process itself.
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Starts `cmd` with stdin, stdout and stderr piped.
pub fn start(cmd: &mut Command) -> Running {
    spawn(cmd.stdin(Stdio::piped()))
}

/// Runs to completion with no stdin (or panics after [`TIMEOUT`]), capturing both streams.
pub fn run(cmd: &mut Command) -> Output {
    spawn(cmd.stdin(Stdio::null())).finish()
}

fn spawn(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Stream::new(child.stdout.take().unwrap());
    let stderr = Stream::new(child.stderr.take().unwrap());
    Running {
        child: Some(child),
        stdout: Some(stdout),
        stderr: Some(stderr),
    }
}

impl Running {
    fn child(&self) -> &Child {
        self.child.as_ref().expect("not finished")
    }

    fn out(&self) -> &Stream {
        self.stdout.as_ref().expect("not finished")
    }

    fn err(&self) -> &Stream {
        self.stderr.as_ref().expect("not finished")
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child().id() as i32)
    }

    /// Sends `sig` to the process itself (credwrap, not its child).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    /// The next line on stdout, or a panic naming what was awaited.
    pub fn line(&self, what: &str) -> String {
        self.out().next(what)
    }

    /// Skips stdout lines until one satisfies `pred`.
    pub fn line_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.out().until(what, pred)
    }

    /// The stdout lines before the first one equal to `marker` (which is consumed).
    pub fn lines_before(&self, marker: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.out().next(marker);
            if line == marker {
                return lines;
            }
            lines.push(line);
        }
    }

    /// Skips stderr lines (credwrap's log) until one satisfies `pred`.
    pub fn log_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.err().until(what, pred)
    }

    /// What `--serve` hands out: its `export` lines, read to the end of stdout (it closes
    /// stdout once they are written).
    pub fn exports(&self) -> std::collections::HashMap<String, String> {
        let mut text = String::new();
        while let Some(line) = self.next_line() {
            text.push_str(&line);
            text.push('\n');
        }
        exports(&text)
    }

    /// The next stdout line, or `None` once stdout is closed.
    pub fn next_line(&self) -> Option<String> {
        self.out().recv()
    }

    pub fn stdin(&mut self) -> &mut std::process::ChildStdin {
        self.child
            .as_mut()
            .and_then(|c| c.stdin.as_mut())
            .expect("started with a piped stdin")
    }

    /// Waits for the exit status only (output may still be held open by grandchildren).
    pub fn wait(&mut self) -> ExitStatus {
        self.child.as_mut().expect("not finished").wait().unwrap()
    }

    /// Waits for the process (killing it after [`TIMEOUT`]) and returns everything it printed,
    /// including the lines the test already read.
    pub fn finish(mut self) -> Output {
        let mut child = self.child.take().expect("not finished");
        drop(child.stdin.take());
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
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        Output {
            status,
            stdout: stdout.map(Stream::all).unwrap_or_default(),
            stderr: stderr.map(Stream::all).unwrap_or_default(),
        }
    }
}

/// One output stream, read by a thread: each line is both sent to the test and kept.
struct Stream {
    /// Behind a lock so that a `Running` can be shared by a test's threads.
    rx: std::sync::Mutex<mpsc::Receiver<String>>,
    reader: std::thread::JoinHandle<String>,
}

impl Stream {
    fn new(r: impl Read + Send + 'static) -> Stream {
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        Stream {
            rx: std::sync::Mutex::new(rx),
            reader,
        }
    }

    fn recv(&self) -> Option<String> {
        self.rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv_timeout(TIMEOUT)
            .ok()
    }

    fn next(&self, what: &str) -> String {
        self.recv()
            .unwrap_or_else(|| panic!("never printed {what}"))
    }

    fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.next(what);
            if pred(&line) {
                return line;
            }
        }
    }

    /// Everything the stream carried, once it is closed.
    fn all(self) -> String {
        self.reader.join().unwrap_or_default()
    }
}

/// Polls `check` until it gives a value, or panics after [`TIMEOUT`] naming what was awaited:
/// for events the test can only observe by looking (a call count, a file, a process state).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < TIMEOUT, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test that cannot run here: skipped with a message, or, where `scripts/test` asked for
/// every test to run (CREDWRAP_TESTS_STRICT, set as root and in CI), a failure naming why.
pub fn skip<T>(why: &str) -> Option<T> {
    if std::env::var_os("CREDWRAP_TESTS_STRICT").is_some_and(|v| !v.is_empty()) {
        panic!("this test must run here (CREDWRAP_TESTS_STRICT) but cannot: {why}");
    }
    println!("SKIPPED: {why}");
    None
}

/// A file `scripts/test` installs (under `.deps/`, or a Debian package's), which must exist.
pub fn installed(path: impl AsRef<Path>) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs the test dependencies",
        path.display()
    );
    path
}

/// The Python interpreter of the test environment that `scripts/test` installs.
pub fn python() -> PathBuf {
    installed(".deps/venv/bin/python")
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

/// `export NAME='value'` lines (as `--serve` prints them for a POSIX shell) as a map; `unset`
/// lines are left out.
pub fn exports(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_string(), v.replace("'\\''", "'"))
        })
        .collect()
}

/// Whether process `pid` has ended: no such process, or a zombie that whoever adopted it (init,
/// a subreaper) has not reaped yet. A detached credwrap's parent is gone, so the test cannot
/// wait for it.
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// The code block that follows `<!-- recipe: NAME -->` in the user docs (README.md and
/// docs/*.md): the tests run the recipes as written, so that the two cannot drift apart. A
/// recipe name stands in exactly one place.
pub fn doc_recipe(name: &str) -> String {
    let marker = format!("<!-- recipe: {name} -->");
    let mut found: Vec<(PathBuf, String)> = user_docs()
        .into_iter()
        .filter(|(_, text)| text.contains(&marker))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{marker} must stand in exactly one page; found in {:?}",
        found.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let (path, text) = found.remove(0);
    let after = text.split_once(&marker).unwrap().1;
    let block = after
        .split_once("```")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("no code block after {marker} in {}", path.display()))
        .0;
    block.to_string()
}

/// One page of the user docs, by its path from the repository's root (`docs/ci.md`).
pub fn doc(page: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(page);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every page under docs/, with their paths.
pub fn user_docs() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The shell command in `recipe` that runs credwrap: the line naming it and its `\`
/// continuations, without a YAML list's `- `.
pub fn credwrap_line(recipe: &str) -> String {
    let mut lines = recipe.lines().skip_while(|l| !l.contains("credwrap "));
    let mut out = String::new();
    for line in lines.by_ref() {
        let line = line.trim_start();
        let line = line.strip_prefix("- ").unwrap_or(line);
        let line = line.strip_prefix("run: ").unwrap_or(line);
        out.push_str(line);
        if !line.ends_with('\\') {
            break;
        }
        out.push('\n');
    }
    assert!(!out.is_empty(), "no credwrap command in\n{recipe}");
    out
}

/// PATH with the credwrap under test first, for recipes that say `credwrap`.
pub fn path_with_credwrap() -> std::ffi::OsString {
    let dir = Path::new(env!("CARGO_BIN_EXE_credwrap")).parent().unwrap();
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

pub fn node_modules() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/js/node_modules");
    assert!(
        dir.join("@aws-sdk/client-sts").exists(),
        "{} lacks @aws-sdk/client-sts: run scripts/test, which installs it",
        dir.display()
    );
    dir
}

/// Where tests/children/sdk_matrix.sh finds each SDK.
pub fn sdk_env(cmd: &mut Command) -> &mut Command {
    cmd.env("PYTHON", python())
        .env("AWS_CLI", installed(".deps/venv/bin/aws"))
        .env("NODE_MODULES", node_modules())
        .env("RUST_CHILD", rust_child())
        .env("GO_CHILD", installed(".deps/go/whoami"))
        .env("PYTHON_OLD", installed(".deps/venv-old/bin/python"))
        .env("AWS_CLI_OLD", installed(".deps/venv-old/bin/aws"))
        .env("AWS_CLI_V2", installed("/usr/bin/aws"))
        .env("CHILDREN", script(""))
}

/// The SDKs tests/children/sdk_matrix.sh runs, by the names it prefixes their lines with.
pub const MATRIX: [&str; 8] = [
    "boto3",
    "awscli",
    "js",
    "rust",
    "go",
    "boto3-1.17",
    "awscli-1.19",
    "awscli-v2-debian",
];
