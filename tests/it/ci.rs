//! Whole CI jobs served by one credwrap (`--serve --detach`), imitated faithfully on 127.0.0.1,
//! each running docs/ci.md's recipe as written (`support::doc_recipe`):
//!
//! - GitHub Actions: step 1 runs the action's script (action/run.sh start, with docs/ci.md's
//!   inputs) with GITHUB_ENV and RUNNER_TEMP set, the job's OIDC token service
//!   (tests/support/github.rs) and, as after an earlier `configure-aws-credentials` step, static
//!   keys in the job's environment. Every later step is a fresh process tree with the
//!   environment the runner builds from $GITHUB_ENV: boto3, the AWS CLI, JS v3 and Go v2 call
//!   STS across several role-credential and OIDC-token lifetimes, with no failed call, and every
//!   other SDK of the matrix is the role despite the blanked keys. Then the post step stops
//!   credwrap, and nothing is left. The one-step recipe without the action too.
//! - GitLab: a token in a variable, `eval "$(credwrap ...)"` in the job's shell, stopped when
//!   that shell exits (`--watch $$`).
//! - Buildkite: the agent's token command, failing for a while mid-job.
//! - CircleCI: a token command, the exports appended to $BASH_ENV, read by every later step.
//! - A terminal: a profile's role for one shell, for as long as it lives.

use crate::support;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::fake_sts::{HOSTILE_KEY_ID, HOSTILE_SECRET, ROLE_ARN, SOURCE_KEY_ID, SOURCE_SECRET};
use support::github::{jwt, TokenService, ISSUER};
use support::{
    credwrap_line, doc_recipe, gone, installed, python, run, rust_child, script, Output, Sandbox,
};

/// The role's credentials live this long; OIDC tokens less.
const ROLE_LIFETIME: u64 = 6;
const TOKEN_LIFETIME: u64 = 4;
/// Each SDK step calls STS for this long: three role lifetimes and more.
const STEP_SECONDS: u64 = 3 * ROLE_LIFETIME + 2;

/// Prints (for `--nocapture` and the closing notes) how many AssumeRoleWithWebIdentity calls a
/// job made with how many distinct tokens, and what the token service saw.
fn report(job: &str, sb: &Sandbox, service: Option<(usize, usize)>) {
    let subjects = sb.sts.web_identity_subjects();
    let distinct: std::collections::HashSet<_> = subjects.iter().collect();
    let service = service.map_or_else(String::new, |(requests, issued)| {
        format!("; token service: {requests} requests, {issued} tokens")
    });
    println!(
        "{job}: {} AssumeRoleWithWebIdentity calls with {} distinct tokens{service}",
        subjects.len(),
        distinct.len()
    );
}

/// What a job's steps have besides what a test adds: credwrap and the fake CI tools on PATH,
/// the SDKs, the STS, no IMDS, no credentials.
fn job_env(sb: &Sandbox) -> HashMap<String, String> {
    let tools = fake_ci_tools(sb);
    let mut path = vec![tools, installed(".deps/venv/bin")];
    path.extend(std::env::split_paths(&support::path_with_credwrap()));
    let mut env: HashMap<String, String> = HashMap::new();
    for (k, v) in [
        (
            "PATH",
            std::env::join_paths(path).unwrap().into_string().unwrap(),
        ),
        ("HOME", sb.home.path().display().to_string()),
        ("TMPDIR", sb.path("tmp").display().to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_ENDPOINT_URL_STS", sb.sts.url()),
        (
            "AWS_CONFIG_FILE",
            sb.path(".aws/config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            sb.path(".aws/credentials").display().to_string(),
        ),
        ("DEPLOY_ROLE_ARN", ROLE_ARN.to_string()),
        ("PYTHON", python().display().to_string()),
        (
            "AWS_CLI",
            installed(".deps/venv/bin/aws").display().to_string(),
        ),
        (
            "NODE_MODULES",
            installed(".deps/js/node_modules").display().to_string(),
        ),
        (
            "GO_CHILD",
            installed(".deps/go/whoami").display().to_string(),
        ),
        ("RUST_CHILD", rust_child().display().to_string()),
        (
            "PYTHON_OLD",
            installed(".deps/venv-old/bin/python").display().to_string(),
        ),
        (
            "AWS_CLI_OLD",
            installed(".deps/venv-old/bin/aws").display().to_string(),
        ),
        (
            "AWS_CLI_V2",
            installed("/usr/bin/aws").display().to_string(),
        ),
        ("CHILDREN", script("").display().to_string()),
        ("SOAK_LIFETIME", ROLE_LIFETIME.to_string()),
        // The token commands' tokens (tests/children/oidc_token.py).
        ("OIDC_FAIL", sb.path("agent-down").display().to_string()),
        ("OIDC_COUNTER", sb.path("issued").display().to_string()),
        ("OIDC_ISSUER", ISSUER.to_string()),
        ("OIDC_TTL", TOKEN_LIFETIME.to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    env
}

/// `buildkite-agent` and `circleci` as the recipes call them: a token on stdout, and a usage
/// error for any other arguments (so a recipe that calls them wrongly fails).
fn fake_ci_tools(sb: &Sandbox) -> PathBuf {
    let dir = sb.path("ci-tools");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, expected) in [
        (
            "buildkite-agent",
            r#"[ "$*" = "oidc request-token --audience sts.amazonaws.com" ]"#,
        ),
        (
            "circleci",
            r#"[ "$1 $2 $3 $4" = "run oidc get --claims" ] && [ "$5" = '{"aud":"sts.amazonaws.com"}' ] && [ $# -eq 5 ]"#,
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n{expected} || {{ echo \"{name}: unexpected arguments: $*\" >&2; exit 2; }}\n\
                 exec \"$PYTHON\" \"$CHILDREN/oidc_token.py\"\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// A process tree of its own (a step), with exactly `env`.
fn step(env: &HashMap<String, String>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().envs(env);
    // SAFETY: setsid between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    cmd
}

/// A step that runs `script` in bash, as the CIs run a step's commands.
fn bash(env: &HashMap<String, String>, script: &str) -> Output {
    run(step(env, "bash").arg("-c").arg(script))
}

/// The runner's reading of $GITHUB_ENV: `NAME=value` lines and `NAME<<DELIMITER` blocks.
fn github_env(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delimiter {
                    break;
                }
                value.push(l);
            }
            out.push((name.to_string(), value.join("\n")));
        } else if let Some((name, value)) = line.split_once('=') {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

/// A field `NAME=N` of a summary line.
fn field(line: &str, name: &str) -> usize {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .parse()
        .unwrap()
}

/// `sdk=NAME calls=N errors=N` from a step's output, checked: calls made, none failed.
fn assert_step(out: &Output, sdk: &str) -> usize {
    assert_eq!(out.code(), Some(0), "{sdk}: {}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("sdk={sdk} ")))
        .unwrap_or_else(|| panic!("{sdk}: {}\n{}", out.stdout, out.stderr));
    assert!(field(line, "calls") >= 3, "{line}");
    assert_eq!(field(line, "errors"), 0, "{sdk}: {line}\n{}", out.stderr);
    field(line, "calls")
}

/// One step per SDK, side by side (each still a fresh process tree), each calling STS for
/// `seconds`: boto3 in one long-lived process that must refresh by itself, as a data job does;
/// the others in a process per call, as a step's tools run.
fn sdk_steps(env: &HashMap<String, String>, sdks: &[&str], seconds: u64) -> Vec<(String, usize)> {
    let outs: Vec<(String, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = sdks
            .iter()
            .map(|sdk| {
                s.spawn(move || {
                    let out = if *sdk == "boto3" {
                        let mut cmd = step(env, python());
                        cmd.arg(script("soak.py"))
                            .env("SOAK_SECONDS", seconds.to_string());
                        let mut out = run(&mut cmd);
                        let summary = out.stdout.lines().last().unwrap_or_default().to_string();
                        out.stdout = format!("sdk=boto3 {summary}\n");
                        out
                    } else {
                        run(step(env, "sh")
                            .arg(script("ci_step.sh"))
                            .args([*sdk, &seconds.to_string()]))
                    };
                    (sdk.to_string(), out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    outs.iter()
        .map(|(sdk, out)| {
            let calls = assert_step(out, sdk);
            if sdk == "boto3" {
                let keys = field(&out.stdout, "keys");
                assert!(
                    keys >= 3,
                    "boto3 saw {keys} role keys in one process: {}",
                    out.stdout
                );
            }
            (sdk.clone(), calls)
        })
        .collect()
}

/// credwrap's private directories left under `dir`.
fn left_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("credwrap-"))
        .collect()
}

/// credwrap `pid` stops (waited for as `what`) and leaves no private directory in `dir`.
fn stops_and_leaves_nothing(pid: i32, dir: &Path, what: &str) {
    support::eventually(what, || gone(pid).then_some(()));
    assert!(left_in(dir).is_empty(), "left {:?}", left_in(dir));
}

/// A sandbox whose STS issues role credentials that live [`ROLE_LIFETIME`] and accepts only
/// unexpired tokens from the fake CI issuer.
fn ci_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(ROLE_LIFETIME));
    sb.sts.require_jwts_from(ISSUER);
    sb
}

/// A `NAME=value` line a test script echoed.
fn echoed(out: &Output, name: &str) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in\n{}\n{}", out.stdout, out.stderr))
        .to_string()
}

/// Stops a detached credwrap that a failed test would leave behind.
struct Stop(i32);

impl Drop for Stop {
    fn drop(&mut self) {
        // SAFETY: kill(2); the pid is the detached credwrap's, gone or not.
        unsafe { libc::kill(self.0, libc::SIGTERM) };
    }
}

/// docs/ci.md's `with:` inputs of the credwrap action, as the runner passes them.
fn action_inputs(recipe: &str) -> Vec<(String, String)> {
    let mut lines = recipe
        .lines()
        .skip_while(|l| !l.contains("uses: credwrap/credwrap@"));
    lines.next().expect("the action's step");
    let with = lines.next().expect("its with:");
    assert_eq!(with.trim(), "with:");
    let indent = with.len() - with.trim_start().len();
    let mut inputs: Vec<(String, String)> = Vec::new();
    let mut block: Option<usize> = None;
    for l in lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent) {
        let depth = l.len() - l.trim_start().len();
        // The lines of a `key: |` block, as the runner joins them.
        if let (Some(key_depth), Some((_, v))) = (block, inputs.last_mut()) {
            if depth > key_depth || l.trim().is_empty() {
                v.push_str(l.trim());
                v.push('\n');
                continue;
            }
        }
        let (k, v) = l.trim().split_once(':').unwrap();
        let v = v.trim();
        block = (v == "|").then_some(depth);
        let v = if v == "|" {
            String::new()
        } else {
            v.to_string()
        };
        inputs.push((format!("INPUT_{}", k.to_uppercase()), v));
    }
    inputs
}

/// The inputs of each use of the action in `recipe`, in order.
fn action_uses(recipe: &str) -> Vec<Vec<(String, String)>> {
    let marker = "uses: credwrap/credwrap@";
    recipe
        .match_indices(marker)
        .map(|(i, _)| {
            let line_start = recipe[..i].rfind('\n').map_or(0, |n| n + 1);
            action_inputs(&recipe[line_start..])
        })
        .collect()
}

#[test]
fn the_action_has_the_inputs_the_readme_names() {
    let yml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml")).unwrap();
    let declared: Vec<&str> = yml
        .split_once("inputs:\n")
        .unwrap()
        .1
        .lines()
        .take_while(|l| l.starts_with(' ') || l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    let readme = support::doc("docs/ci.md");
    for input in &declared {
        assert!(
            readme.contains(&format!("`{input}`")) || readme.contains(&format!("{input}: ")),
            "docs/ci.md does not name the action's input {input}"
        );
    }
    for (k, _) in action_inputs(&doc_recipe("github-action")) {
        let name = k.trim_start_matches("INPUT_").to_lowercase();
        assert!(
            declared.contains(&name.as_str()),
            "docs/ci.md's recipe uses {name}, which action.yml does not declare"
        );
    }
}

/// A GitHub job as the runner runs an action: the job's environment with a token service,
/// `$GITHUB_ENV` and `$RUNNER_TEMP` of its own, and the long-lived worker credwrap watches.
struct GithubJob {
    env: HashMap<String, String>,
    env_file: PathBuf,
    runner_temp: tempfile::TempDir,
    worker: std::process::Child,
}

impl GithubJob {
    fn new(sb: &Sandbox, github: &TokenService) -> GithubJob {
        let runner_temp = tempfile::tempdir().unwrap();
        let env_file = runner_temp.path().join("github_env");
        std::fs::write(&env_file, "").unwrap();
        let worker = Command::new("sleep").arg("600").spawn().unwrap();
        let mut env = job_env(sb);
        for (k, v) in github.job_env() {
            env.insert(k.to_string(), v);
        }
        env.insert("GITHUB_ENV".into(), env_file.display().to_string());
        env.insert(
            "RUNNER_TEMP".into(),
            runner_temp.path().display().to_string(),
        );
        GithubJob {
            env,
            env_file,
            runner_temp,
            worker,
        }
    }

    /// The action's script (`start` or `stop`) as main.js and post.js run it.
    fn action(&self, env: &HashMap<String, String>, what: &str) -> Command {
        let mut cmd = step(env, "bash");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("action/run.sh"))
            .arg(what)
            .env("CREDWRAP_ACTION_WATCH", self.worker.id().to_string());
        cmd
    }
}

impl Drop for GithubJob {
    fn drop(&mut self) {
        let _ = self.worker.kill();
        let _ = self.worker.wait();
    }
}

#[test]
fn a_github_job_is_served_for_every_step_and_leaves_nothing() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    // The runner's worker, which credwrap watches, lives as long as `job`.
    let job = GithubJob::new(&sb, &github);
    let mut env = job.env.clone();
    for (k, v) in [
        ("GITHUB_ACTIONS", "true".to_string()),
        ("GITHUB_RUN_ID", "4242".into()),
        // An earlier configure-aws-credentials step left static keys to every later step.
        ("AWS_ACCESS_KEY_ID", HOSTILE_KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", HOSTILE_SECRET.to_string()),
        ("AWS_SESSION_TOKEN", "hostile-session".to_string()),
    ] {
        env.insert(k.to_string(), v);
    }

    // Step 1: the action, as main.js runs it (with the worker as the process to watch), with
    // docs/ci.md's inputs; credwrap is on PATH, so it installs nothing.
    let started = Instant::now();
    let out = run(job
        .action(&env, "start")
        .envs(action_inputs(&doc_recipe("github-action"))));
    let took = started.elapsed();
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    println!("step 1 (the action) returned in {took:?}");
    assert!(
        took < Duration::from_secs(30),
        "the action's step blocked: {took:?}"
    );
    let exported = github_env(&job.env_file);
    let token = exported
        .iter()
        .find(|(k, _)| k == "AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("the token in $GITHUB_ENV");
    assert!(
        out.stdout.contains(&format!("::add-mask::{token}")),
        "{}",
        out.stdout
    );
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(
            exported.contains(&(key.to_string(), String::new())),
            "{key} not blanked"
        );
    }
    let pid: i32 = exported
        .iter()
        .find(|(k, _)| k == "CREDWRAP_PID")
        .map(|(_, v)| v.parse().unwrap())
        .expect("CREDWRAP_PID");
    let _stop = Stop(pid);

    // Steps 2 to 5: what the runner gives a later step; each SDK in a tree of its own.
    let mut later = env.clone();
    later.extend(exported.iter().cloned());
    for (sdk, calls) in sdk_steps(&later, &["boto3", "awscli", "js", "go"], STEP_SECONDS) {
        println!("{sdk} with blanked static keys: {calls} calls as the role, 0 failed");
    }
    // Step 6: every SDK of the matrix, old ones too, once: a blank key is no key to each.
    let matrix = run(step(&later, "sh").arg(script("sdk_matrix.sh")));
    assert_eq!(matrix.code(), Some(0), "{}", matrix.stdout);
    for sdk in support::MATRIX {
        let line = matrix
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{sdk}: arn=")))
            .unwrap_or_else(|| panic!("{sdk}: {}", matrix.stdout));
        assert!(line.contains(":assumed-role/deploy/"), "{line}");
        println!("{line} (static keys blank)");
    }
    assert!(
        sb.sts
            .keys_used_for("GetCallerIdentity")
            .iter()
            .all(|k| k.starts_with("ASIAFAKEROLE")),
        "a step signed with the static keys"
    );
    // Step 7: credwrap in front of one command, as usage.md shows it, in a later step: nothing
    // whole-job mode exported changes its options, and the job's role is its source.
    let nested = bash(
        &later,
        "credwrap --role-arn arn:aws:iam::123456789012:role/other -- \
         aws --endpoint-url \"$AWS_ENDPOINT_URL_STS\" sts get-caller-identity --query Arn --output text",
    );
    assert_eq!(
        nested.code(),
        Some(0),
        "{}\n{}",
        nested.stdout,
        nested.stderr
    );
    assert!(
        nested.stdout.contains(":assumed-role/other/"),
        "{}",
        nested.stdout
    );
    assert!(github.audiences().iter().all(|a| a == "sts.amazonaws.com"));

    // The job ends: the post step stops credwrap; nothing is left.
    let out = run(&mut job.action(&later, "stop"));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    // One token per AssumeRole, counted once credwrap is gone; a refresh cut short by the stop
    // may have fetched its token and not yet called STS.
    let (requests, issued) = github.counts();
    let assumes = sb.sts.web_identity_subjects().len();
    report("GitHub, the action", &sb, Some((requests, issued)));
    assert!(assumes >= 3, "only {assumes} refreshes");
    let abandoned = out.stdout.contains("it was abandoned");
    assert!(
        issued == assumes || (abandoned && issued == assumes + 1),
        "{issued} tokens for {assumes} AssumeRole calls (a refresh abandoned: {abandoned})"
    );
    assert!(
        out.stdout.contains("::group::credwrap log"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("refreshed role credentials"),
        "{}",
        out.stdout
    );
    // The log is printed into the job's log: no secret in it.
    assert!(
        !out.stdout.contains(&token),
        "the endpoint's token is in the log"
    );
    for (key, secret, session) in sb.sts.issued_secrets() {
        for s in [key, secret, session] {
            assert!(!out.stdout.contains(&s), "a role credential is in the log");
        }
    }
    assert!(!out.stdout.contains("eyJ"), "an OIDC token is in the log");
    assert!(gone(pid), "credwrap {pid} is still running");
    assert!(
        left_in(job.runner_temp.path()).is_empty(),
        "left {:?}",
        left_in(job.runner_temp.path())
    );
    assert!(
        !job.runner_temp.path().join("credwrap.log").exists(),
        "the log was left"
    );
}

/// docs/ci.md's one-step recipe without the action: later steps are the role, and its log is
/// where it said.
#[test]
fn a_github_job_is_served_by_one_run_step() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    let runner_temp = tempfile::tempdir().unwrap();
    let env_file = runner_temp.path().join("github_env");
    std::fs::write(&env_file, "").unwrap();
    let mut env = job_env(&sb);
    env.extend(github.job_env().map(|(k, v)| (k.to_string(), v)));
    env.insert("GITHUB_ENV".into(), env_file.display().to_string());
    env.insert(
        "RUNNER_TEMP".into(),
        runner_temp.path().display().to_string(),
    );

    // $PPID in the step's shell is the process that started it: here this test.
    let out = bash(&env, &credwrap_line(&doc_recipe("github-run")));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let mut later = env.clone();
    later.extend(github_env(&env_file));
    let pid: i32 = later["CREDWRAP_PID"].parse().unwrap();
    let _stop = Stop(pid);
    sdk_steps(&later, &["go"], 2 * ROLE_LIFETIME + 1);
    assert!(sb.sts.web_identity_subjects().len() >= 2);
    report("GitHub, one run step", &sb, Some(github.counts()));
    assert!(
        runner_temp.path().join("credwrap.log").exists(),
        "no log where --log-file said"
    );
    // SAFETY: kill(2).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    stops_and_leaves_nothing(pid, runner_temp.path(), "credwrap to stop");
}

/// The safety net: without the post step, credwrap stops when the process it watches (the
/// runner's worker, a terminal's shell) exits, and removes its files.
#[test]
fn whole_job_mode_stops_when_the_watched_process_exits() {
    let sb = Sandbox::new();
    let mut watched = Command::new("sleep").arg("600").spawn().unwrap();
    let out =
        run(sb
            .credwrap()
            .args(["--serve", "--detach", "--watch", &watched.id().to_string()]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let pid: i32 = support::exports(&out.stdout)["CREDWRAP_PID"]
        .parse()
        .unwrap();
    let _stop = Stop(pid);
    assert!(!gone(pid));
    let _ = watched.kill();
    let _ = watched.wait();
    stops_and_leaves_nothing(
        pid,
        &sb.path("tmp"),
        "credwrap to stop with the watched process",
    );
}

/// `--watch` holds the process from the moment the option is checked: one that dies while
/// credwrap is starting, and whose PID the kernel then gives to another process, is still seen
/// as gone, and credwrap stops rather than serve until the stranger exits. (A PID namespace of
/// the test's own, where root can choose the next PID.)
#[test]
fn watch_is_not_fooled_by_a_reused_pid() {
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } != 0
        && support::skip::<()>("a PID namespace needs root").is_none()
    {
        return;
    }
    let sb = Sandbox::new();
    // Start-up waits on STS until the watched process is gone and its PID taken again.
    sb.sts
        .set_fault(support::fake_sts::Fault::Slow(Duration::from_secs(4)));
    let go = sb.path("go");
    let script = format!(
        "sleep 600 & w=$!\n\
         credwrap --serve --watch $w --role-arn {ROLE_ARN} >/dev/null 2>&1 & c=$!\n\
         echo started\n\
         while [ ! -e {go} ]; do sleep 0.05; done\n\
         kill $w; wait $w\n\
         echo $((w - 1)) > /proc/sys/kernel/ns_last_pid\n\
         sleep 600 & n=$!\n\
         echo \"watched=$w new=$n\"\n\
         wait $c; echo \"credwrap exited $?\"\n\
         kill $n\n",
        go = go.display()
    );
    let shell = sb.shell(&script);
    let program = shell.get_program().to_owned();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(program)
        .args(shell.get_args())
        .env_clear()
        .envs(shell.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let run = support::start(&mut cmd);
    run.line_until("the script's start", |l| l == "started");
    support::eventually("credwrap's AssumeRole", || {
        (sb.sts.count("AssumeRole") >= 1).then_some(())
    });
    std::fs::write(&go, "").unwrap();
    let pids = run.line_until("the PIDs", |l| l.starts_with("watched="));
    let (w, n) = pids
        .strip_prefix("watched=")
        .and_then(|r| r.split_once(" new="))
        .unwrap();
    assert_eq!(
        w, n,
        "the PID was not reused; the test proves nothing: {pids}"
    );
    sb.sts.set_fault(support::fake_sts::Fault::None);
    let exited = run.line_until("credwrap to stop", |l| l.starts_with("credwrap exited"));
    assert_eq!(exited, "credwrap exited 0");
    let _ = run.finish();
}

/// GitLab CI: `id_tokens:` puts the token in a variable; the job's shell evals credwrap's
/// exports; its tools are served across several role lifetimes; the shell exits and credwrap
/// with it.
#[test]
fn a_gitlab_job_evals_the_exports_and_is_served_until_its_shell_exits() {
    let sb = ci_sandbox();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut env = job_env(&sb);
    env.insert(
        "AWS_OIDC_TOKEN".into(),
        jwt(serde_json::json!({"iss": ISSUER, "sub": "project_path:acme/app:ref_type:branch:ref:main", "exp": now + 3600})),
    );
    env.insert("CI_JOB_ID".into(), "777".into());
    env.insert("SOAK_SECONDS".into(), "8".into());
    // The job's script as the runner hands it to one shell: docs/ci.md's line, then the tools.
    let out = bash(
        &env,
        &format!(
            "set -e\n{}\necho pid=$CREDWRAP_PID\n\
             sh \"$CHILDREN/ci_step.sh\" awscli {STEP_SECONDS}\n\"$PYTHON\" \"$CHILDREN/soak.py\"\n",
            credwrap_line(&doc_recipe("gitlab"))
        ),
    );
    assert_step(&out, "awscli");
    assert!(out.stdout.contains("errors=0"), "{}", out.stdout);
    let pid: i32 = echoed(&out, "pid").parse().unwrap();
    let _stop = Stop(pid);
    stops_and_leaves_nothing(
        pid,
        &sb.path("tmp"),
        "credwrap to stop with the job's shell",
    );
    assert!(sb.sts.web_identity_subjects().len() >= 3);
    report("GitLab, the token in a variable", &sb, None);
    assert!(sb.sts.calls().iter().any(|c| c
        .params
        .get("RoleSessionName")
        .is_some_and(|n| n.starts_with("credwrap-gl777-"))));
}

/// Buildkite: the agent's token command, run for every refresh; it fails for a while in the
/// middle of the job, and no step sees an error.
#[test]
fn a_buildkite_job_survives_its_token_command_failing_for_a_while() {
    let sb = ci_sandbox();
    let mut env = job_env(&sb);
    env.insert("BUILDKITE_BUILD_NUMBER".into(), "99".into());
    let fail = PathBuf::from(&env["OIDC_FAIL"]);
    let log_path = sb.path("log-path");
    // The step's command: docs/ci.md's line, then the tools; the log is copied out before the
    // shell exits (credwrap removes it when it stops).
    let script_text = format!(
        "set -e\n{}\necho \"$CREDWRAP_LOG_PATH\" > {}\necho pid=$CREDWRAP_PID\n\
         sh \"$CHILDREN/ci_step.sh\" go {STEP_SECONDS}\ncat \"$CREDWRAP_LOG_PATH\" >&2\n",
        credwrap_line(&doc_recipe("buildkite")),
        log_path.display()
    );
    // The agent goes away for two refreshes' worth of attempts, then comes back.
    let breaker = std::thread::spawn({
        let (fail, log_path) = (fail.clone(), log_path.clone());
        move || {
            let log = support::eventually("the log's path", || {
                std::fs::read_to_string(&log_path)
                    .ok()
                    .filter(|p| p.ends_with('\n'))
            });
            std::thread::sleep(Duration::from_secs(ROLE_LIFETIME / 2));
            std::fs::write(&fail, "").unwrap();
            support::eventually("failed fetches in credwrap's log", || {
                let text = std::fs::read_to_string(log.trim()).unwrap_or_default();
                (text.matches("could not reach the OIDC endpoint").count() >= 2).then_some(())
            });
            std::fs::remove_file(&fail).unwrap();
        }
    });
    let out = bash(&env, &script_text);
    breaker.join().unwrap();
    assert_step(&out, "go");
    support::assert_stderr_has(&out, "still serving the current credential");
    assert!(sb.sts.web_identity_subjects().len() >= 3);
    report("Buildkite, the token command", &sb, None);
    let pid: i32 = echoed(&out, "pid").parse().unwrap();
    let _stop = Stop(pid);
    stops_and_leaves_nothing(
        pid,
        &sb.path("tmp"),
        "credwrap to stop with the step's shell",
    );
}

/// CircleCI: the token command at every refresh; the exports appended to $BASH_ENV, which
/// every later step's bash reads first.
#[test]
fn a_circleci_job_hands_the_exports_on_through_bash_env() {
    let sb = ci_sandbox();
    let mut env = job_env(&sb);
    let bash_env = sb.path("bash_env");
    std::fs::write(&bash_env, "").unwrap();
    env.insert("BASH_ENV".into(), bash_env.display().to_string());
    let out = bash(&env, &credwrap_line(&doc_recipe("circleci")));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let exports = support::exports(&std::fs::read_to_string(&bash_env).unwrap());
    let pid: i32 = exports["CREDWRAP_PID"].parse().unwrap();
    let _stop = Stop(pid);
    // A later step: a new bash, which sources $BASH_ENV by itself.
    let out = bash(
        &env,
        &format!("sh \"$CHILDREN/ci_step.sh\" js {STEP_SECONDS}"),
    );
    assert_step(&out, "js");
    assert!(sb.sts.web_identity_subjects().len() >= 3);
    report("CircleCI, the token command", &sb, None);
    // The job's machine goes away.
    // SAFETY: kill(2).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    stops_and_leaves_nothing(pid, &sb.path("tmp"), "credwrap to stop");
}

/// A terminal: docs/ci.md's line for a profile's role, then the AWS CLI as docs/ci.md shows it
/// and a long-lived boto3 across several role lifetimes; the shell exits, credwrap with it.
#[test]
fn a_terminal_is_the_role_until_its_shell_exits() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(ROLE_LIFETIME));
    sb.write(
        ".aws/config",
        &format!("[profile prod-admin]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n"),
    );
    sb.write(
        ".aws/credentials",
        &format!("[base]\naws_access_key_id = {SOURCE_KEY_ID}\naws_secret_access_key = {SOURCE_SECRET}\n"),
    );
    let mut env = job_env(&sb);
    env.insert("SOAK_SECONDS".into(), (2 * ROLE_LIFETIME + 2).to_string());
    let recipe = doc_recipe("terminal");
    let out = bash(
        &env,
        &format!("set -e\n{recipe}echo pid=$CREDWRAP_PID\n\"$PYTHON\" \"$CHILDREN/soak.py\"\n"),
    );
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(":assumed-role/deploy/"),
        "{}",
        out.stdout
    );
    let summary = out.stdout.lines().find(|l| l.starts_with("keys=")).unwrap();
    assert!(
        field(summary, "keys") >= 2 && field(summary, "errors") == 0,
        "{summary}"
    );
    let pid: i32 = echoed(&out, "pid").parse().unwrap();
    let _stop = Stop(pid);
    stops_and_leaves_nothing(pid, &sb.path("tmp"), "credwrap to stop with the shell");
    assert!(sb.sts.keys_used_for("AssumeRole").contains(SOURCE_KEY_ID));
}

/// action.yml's entry points, under node as the runner starts them: main.js runs
/// `run.sh start` (here refused for want of a role, as the runner would show it) and post.js
/// `run.sh stop` (nothing to stop).
#[test]
fn the_actions_entry_points_run_its_script() {
    let sb = Sandbox::new();
    let runner_temp = tempfile::tempdir().unwrap();
    let mut env = job_env(&sb);
    env.insert(
        "RUNNER_TEMP".into(),
        runner_temp.path().display().to_string(),
    );
    let action = Path::new(env!("CARGO_MANIFEST_DIR")).join("action");
    let out = run(step(&env, "node").arg(action.join("main.js")));
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    support::assert_stderr_has(
        &out,
        "::error title=credwrap::the role-arn input (or role-to-assume) is required",
    );
    let out = run(step(&env, "node").arg(action.join("post.js")));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    support::assert_stderr_has(&out, "nothing to stop");
}

/// docs/roles.md's action recipe: the `roles` input, one NAME=ARN a line as the runner passes a
/// block scalar; later steps select a role as a profile, and get the main role otherwise.
#[test]
fn the_actions_roles_input_gives_later_steps_each_role_by_profile() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    let job = GithubJob::new(&sb, &github);
    let inputs = action_inputs(&doc_recipe("github-action-roles"));
    assert!(
        inputs
            .iter()
            .any(|(k, v)| k == "INPUT_ROLES" && v.lines().count() == 2),
        "{inputs:?}"
    );
    let out = run(job.action(&job.env, "start").envs(inputs));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let exported = github_env(&job.env_file);
    let pid: i32 = exported
        .iter()
        .find(|(k, _)| k == "CREDWRAP_PID")
        .map(|(_, v)| v.parse().unwrap())
        .expect("CREDWRAP_PID");
    let _stop = Stop(pid);
    let mut later = job.env.clone();
    later.extend(exported.iter().cloned());
    let cli = "aws --endpoint-url \"$AWS_ENDPOINT_URL_STS\" sts get-caller-identity --query Arn --output text";
    let out = bash(
        &later,
        &format!("{cli} --profile registry && AWS_PROFILE=dns {cli} && {cli}"),
    );
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let arns: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(arns.len(), 3, "{}", out.stdout);
    assert!(arns[0].contains(":assumed-role/push/"), "{arns:?}");
    assert!(arns[1].contains(":assumed-role/dns/"), "{arns:?}");
    assert!(arns[2].contains(":assumed-role/deploy/"), "{arns:?}");
    // Every role from the job's OIDC token; the post step stops credwrap.
    assert!(sb.sts.web_identity_subjects().len() >= 3);
    let out = run(&mut job.action(&later, "stop"));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(gone(pid), "credwrap {pid} is still running");
    assert!(left_in(job.runner_temp.path()).is_empty());
}

/// Inputs are trimmed as `@actions/core`'s getInput trims them, and no input can start a
/// workflow command: a line break in a single-line input is refused with an `::error` naming
/// the input, and what an error message quotes is escaped as the toolkit escapes data.
#[test]
fn the_actions_inputs_are_trimmed_and_cannot_inject_workflow_commands() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    let job = GithubJob::new(&sb, &github);
    let role = support::fake_sts::ROLE_ARN;
    let out = run(job
        .action(&job.env, "start")
        .env("INPUT_ROLE-ARN", format!("  {role} \n"))
        .env("INPUT_DURATION", " 2h ")
        .env("INPUT_TOKEN-SOURCE", "\tgithub "));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let pid: i32 = github_env(&job.env_file)
        .iter()
        .find(|(k, _)| k == "CREDWRAP_PID")
        .map(|(_, v)| v.parse().unwrap())
        .expect("CREDWRAP_PID");
    let _stop = Stop(pid);
    // A runner reads commands on both streams, at the start of a line.
    let commands = |out: &Output| -> Vec<String> {
        out.stdout
            .lines()
            .chain(out.stderr.lines())
            .filter(|l| l.trim_start().starts_with("::"))
            .map(str::to_string)
            .collect()
    };
    for (name, value, says) in [
        (
            "INPUT_ROLE-ARN",
            format!("{role}\n::warning title=x::injected"),
            "::error title=credwrap::the role-arn input holds a line break: give it on one line",
        ),
        (
            "INPUT_TOKEN-SOURCE",
            "x%0A::warning title=x::injected".to_string(),
            "::error title=credwrap::token-source is github or job, not x%250A::warning title=x::injected",
        ),
    ] {
        let out = run(job
            .action(&job.env, "start")
            .env("INPUT_ROLE-ARN", role)
            .env(name, value));
        assert_eq!(out.code(), Some(1), "{name}: {}\n{}", out.stdout, out.stderr);
        assert_eq!(commands(&out), [says], "{name}");
    }
}

/// The action used twice in one job (two roles, or a matrix that repeats it): each post step
/// stops its own credwrap and prints its own log, from its own `$GITHUB_STATE`, whatever the
/// job-wide `CREDWRAP_PID` says (the last use's).
#[test]
fn each_use_of_the_action_stops_its_own_credwrap() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    let job = GithubJob::new(&sb, &github);
    let other = "arn:aws:iam::123456789012:role/other";
    // The runner gives each action instance a state file of its own, and hands what it wrote
    // back to that instance's post step as STATE_* variables.
    let mut uses = Vec::new();
    for (n, role) in [(1, support::fake_sts::ROLE_ARN), (2, other)] {
        let state = job.runner_temp.path().join(format!("state-{n}"));
        std::fs::write(&state, "").unwrap();
        let out = run(job
            .action(&job.env, "start")
            .env("INPUT_ROLE-ARN", role)
            .env("GITHUB_STATE", &state));
        assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
        let saved = github_env(&state);
        let pid: i32 = saved
            .iter()
            .find(|(k, _)| k == "CREDWRAP_PID")
            .map(|(_, v)| v.parse().unwrap())
            .expect("CREDWRAP_PID in $GITHUB_STATE");
        uses.push((pid, Stop(pid), saved, role));
    }
    assert_ne!(uses[0].0, uses[1].0);
    let mut later = job.env.clone();
    later.extend(github_env(&job.env_file));
    // Post steps run in reverse order of their mains.
    let log_of = |saved: &[(String, String)]| {
        let log = saved
            .iter()
            .find(|(k, _)| k == "CREDWRAP_LOG")
            .map(|(_, v)| v.clone());
        PathBuf::from(log.expect("CREDWRAP_LOG in $GITHUB_STATE"))
    };
    assert_ne!(
        log_of(&uses[0].2),
        log_of(&uses[1].2),
        "two uses share a log"
    );
    for (i, (pid, _stop, saved, role)) in uses.iter().enumerate().rev() {
        let mut env = later.clone();
        env.extend(saved.iter().map(|(k, v)| (format!("STATE_{k}"), v.clone())));
        let out = run(&mut job.action(&env, "stop"));
        assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
        assert!(gone(*pid), "credwrap {pid} ({role}) is still running");
        assert!(
            out.stdout.contains("::group::credwrap log"),
            "{}",
            out.stdout
        );
        // This use's log was printed and removed; an earlier use's is still there for its own.
        assert!(
            !log_of(saved).exists(),
            "{role}: its log was not the one printed"
        );
        if i > 0 {
            assert!(
                log_of(&uses[0].2).exists(),
                "the first use's log went with the second's"
            );
        }
    }
    assert!(left_in(job.runner_temp.path())
        .iter()
        .all(|f| f.starts_with("state-") || f == "github_env"));
}

/// A self-hosted runner on EKS: the runner pod's own IRSA or Pod Identity variables are in every
/// step's environment, and a step cannot unset them. In a later step every SDK of the matrix is
/// the action's role, not the pod's, and none fails.
#[test]
fn later_steps_are_the_actions_role_whatever_the_runner_pods_variables() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(300));
    // The pod's projected token: a JWT the STS would take, so an SDK that used it would be the
    // pod's role rather than fail.
    let irsa_token = sb.path("eks-token");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": ISSUER, "sub": "system:serviceaccount:runners:runner",
        "aud": "sts.amazonaws.com", "iat": now, "exp": now + 3600});
    std::fs::write(&irsa_token, jwt(claims)).unwrap();
    // The Pod Identity agent's token; its address answers nothing (nothing listens there).
    let pod_identity_token = sb.path("eks-pod-identity-token");
    std::fs::write(&pod_identity_token, "pod-identity-agent-token").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = format!("http://{}/v1/credentials", closed.local_addr().unwrap());
    drop(closed);
    let runners: [(&str, Vec<(&str, String)>); 2] = [
        (
            "IRSA",
            vec![
                (
                    "AWS_ROLE_ARN",
                    "arn:aws:iam::123456789012:role/runner-pod".to_string(),
                ),
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    irsa_token.display().to_string(),
                ),
            ],
        ),
        (
            "Pod Identity",
            vec![
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    pod_identity_token.display().to_string(),
                ),
            ],
        ),
    ];
    for (runner, vars) in runners {
        let job = GithubJob::new(&sb, &github);
        let mut env = job.env.clone();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let out = run(job.action(&env, "start").env("INPUT_ROLE-ARN", ROLE_ARN));
        assert_eq!(
            out.code(),
            Some(0),
            "{runner}: {}\n{}",
            out.stdout,
            out.stderr
        );
        let exported = github_env(&job.env_file);
        let pid: i32 = exported
            .iter()
            .find(|(k, _)| k == "CREDWRAP_PID")
            .map(|(_, v)| v.parse().unwrap())
            .expect("CREDWRAP_PID");
        let _stop = Stop(pid);
        let mut later = env.clone();
        later.extend(exported.iter().cloned());
        let matrix = run(step(&later, "sh").arg(script("sdk_matrix.sh")));
        let mut wrong = Vec::new();
        for sdk in support::MATRIX {
            let line = matrix
                .stdout
                .lines()
                .find(|l| l.starts_with(&format!("{sdk}: arn=")));
            println!("{runner}: {sdk}: {}", line.unwrap_or("no identity"));
            if !line.is_some_and(|l| l.contains(":assumed-role/deploy/")) {
                wrong.push(sdk);
            }
        }
        assert!(
            wrong.is_empty(),
            "{runner}: {wrong:?} were not the action's role:\n{}",
            matrix.stdout
        );
        assert_eq!(matrix.code(), Some(0), "{runner}: {}", matrix.stdout);
        let out = run(&mut job.action(&later, "stop"));
        assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
        assert!(gone(pid), "credwrap {pid} is still running");
    }
}

/// The `CREDWRAP_PID` a use of the action saved in its `$GITHUB_STATE` (or the job's).
fn saved_pid(file: &Path) -> i32 {
    github_env(file)
        .iter()
        .rev()
        .find(|(k, _)| k == "CREDWRAP_PID")
        .map(|(_, v)| v.parse().unwrap())
        .expect("CREDWRAP_PID")
}

/// configure-aws-credentials' `role-chaining: true` (credwrap's `token-source: job`), as
/// docs/ci.md's recipe gives it: the second use assumes its role from the role the first use
/// serves, and refreshes from it as it refreshes. The target trusts only the first role, so the
/// job's OIDC token would be refused; and with nothing in the job to chain from, it fails rather
/// than fall back to the token.
#[test]
fn role_chaining_assumes_from_the_role_the_job_already_has() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    let uses = action_uses(&doc_recipe("github-action-chaining"));
    let role_of = |inputs: &[(String, String)]| -> String {
        inputs
            .iter()
            .find(|(k, _)| k == "INPUT_ROLE-TO-ASSUME")
            .map(|(_, v)| v.clone())
            .expect("role-to-assume")
    };
    let (hub, target) = (role_of(&uses[0]), role_of(&uses[1]));
    assert!(uses[1].contains(&("INPUT_ROLE-CHAINING".into(), "true".into())));
    sb.sts.trust_only(&target, &hub);

    // Nothing to chain from: refused, and the token service never asked.
    let job = GithubJob::new(&sb, &github);
    let out = run(job.action(&job.env, "start").envs(uses[1].clone()));
    assert_ne!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(github.counts().0, 0, "fell back to the job's OIDC token");
    println!("chaining from nothing: {}", out.stderr.trim());

    let mut state = Vec::new();
    let mut env = job.env.clone();
    for (n, inputs) in uses.iter().enumerate() {
        let file = job.runner_temp.path().join(format!("state-{n}"));
        std::fs::write(&file, "").unwrap();
        let out = run(job
            .action(&env, "start")
            .envs(inputs.clone())
            .env("GITHUB_STATE", &file));
        assert_eq!(
            out.code(),
            Some(0),
            "use {n}: {}\n{}",
            out.stdout,
            out.stderr
        );
        state.push((Stop(saved_pid(&file)), file));
        // What the runner gives the next step: the job's environment and every export so far.
        env = job.env.clone();
        env.extend(github_env(&job.env_file));
    }
    // The later steps are the target, across several lifetimes of both roles.
    sdk_steps(&env, &["boto3", "awscli"], STEP_SECONDS);
    let cli = "aws --endpoint-url \"$AWS_ENDPOINT_URL_STS\" sts get-caller-identity --query Arn --output text";
    let out = bash(&env, cli);
    assert!(
        out.stdout.contains(":222222222222:assumed-role/deploy/"),
        "{}",
        out.stdout
    );
    let chained: Vec<_> = sb
        .sts
        .calls()
        .into_iter()
        .filter(|c| c.params.get("RoleArn") == Some(&target))
        .collect();
    assert!(
        chained.len() >= 3,
        "the target was assumed {} times",
        chained.len()
    );
    let mut sources = std::collections::HashSet::new();
    for call in &chained {
        assert_eq!(call.action, "AssumeRole", "{call:?}");
        let key = call.access_key_id.clone().unwrap();
        let signer = sb.sts.issued_as(&key).unwrap_or_default();
        assert!(
            signer.contains(":assumed-role/ci-hub/"),
            "signed as {signer}"
        );
        sources.insert(key);
    }
    // The first role refreshed meanwhile, and the target was assumed from its new keys.
    assert!(sources.len() >= 2, "always from the same keys: {sources:?}");
    println!(
        "chained: {} AssumeRole calls for the target from {} keys of the first role",
        chained.len(),
        sources.len()
    );
    for (stop, file) in state.iter().rev() {
        let mut post = env.clone();
        post.extend(
            github_env(file)
                .into_iter()
                .map(|(k, v)| (format!("STATE_{k}"), v)),
        );
        let out = run(&mut job.action(&post, "stop"));
        assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
        assert!(gone(stop.0));
    }
}

/// Switching from configure-aws-credentials is a one-word change: its input names are taken,
/// the region is required unless the job has one and is exported as both variables, the outputs
/// `aws-account-id` and `authenticated-arn` are set, the account is masked before anything
/// prints it when asked, and `output-credentials` says what to do instead.
#[test]
fn configure_aws_credentials_inputs_and_outputs_are_taken_as_they_are() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    let job = GithubJob::new(&sb, &github);
    let mut env = job.env.clone();
    env.remove("AWS_REGION");
    let refused = |inputs: &[(&str, &str)], says: &str| {
        let out = run(job.action(&env, "start").envs(inputs.iter().copied()));
        assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
        support::assert_stderr_has(&out, says);
    };
    refused(
        &[("INPUT_ROLE-TO-ASSUME", ROLE_ARN)],
        "::error title=credwrap::the region input (or aws-region) is required",
    );
    refused(
        &[
            ("INPUT_ROLE-TO-ASSUME", ROLE_ARN),
            ("INPUT_AWS-REGION", "eu-west-1"),
            ("INPUT_OUTPUT-CREDENTIALS", "true"),
        ],
        "aws configure export-credentials --format env",
    );
    refused(
        &[
            ("INPUT_ROLE-TO-ASSUME", ROLE_ARN),
            ("INPUT_ROLE-ARN", "arn:aws:iam::123456789012:role/other"),
            ("INPUT_AWS-REGION", "eu-west-1"),
        ],
        "the role-arn and role-to-assume inputs are one input under two names",
    );
    assert_eq!(github.counts().0, 0, "a refused start asked for a token");

    let outputs = job.runner_temp.path().join("github_output");
    std::fs::write(&outputs, "").unwrap();
    let managed = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    let policy = "{\"Version\": \"2012-10-17\",\n \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"s3:*\", \"Resource\": \"*\"}]}";
    let out = run(job
        .action(&env, "start")
        .env("GITHUB_OUTPUT", &outputs)
        .env("INPUT_ROLE-TO-ASSUME", ROLE_ARN)
        .env("INPUT_AWS-REGION", "eu-west-1")
        .env("INPUT_ROLE-SESSION-NAME", "deploy-42")
        .env("INPUT_ROLE-DURATION-SECONDS", "3600")
        .env("INPUT_AUDIENCE", "sts.amazonaws.com")
        .env("INPUT_MASK-AWS-ACCOUNT-ID", "true")
        .env("INPUT_MANAGED-SESSION-POLICIES", format!("{managed}\n"))
        .env("INPUT_INLINE-SESSION-POLICY", policy)
        .env("INPUT_ROLE-CHAINING", "false")
        .env("INPUT_OUTPUT-CREDENTIALS", "false"));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let _stop = Stop(saved_pid(&job.env_file));
    assert_eq!(
        out.stdout.lines().next(),
        Some("::add-mask::123456789012"),
        "{}",
        out.stdout
    );
    let set = github_env(&outputs);
    assert_eq!(
        set,
        [
            ("aws-account-id".to_string(), "123456789012".to_string()),
            (
                "authenticated-arn".to_string(),
                "arn:aws:sts::123456789012:assumed-role/deploy/deploy-42".to_string()
            ),
        ]
    );
    let exported = github_env(&job.env_file);
    for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        assert!(
            exported.contains(&(name.to_string(), "eu-west-1".to_string())),
            "{name}: {exported:?}"
        );
    }
    let call = sb
        .sts
        .calls()
        .into_iter()
        .find(|c| c.action == "AssumeRoleWithWebIdentity")
        .expect("the role assumed");
    let param = |k: &str| call.params.get(k).cloned().unwrap_or_default();
    assert_eq!(param("RoleSessionName"), "deploy-42");
    assert_eq!(param("DurationSeconds"), "3600");
    assert_eq!(param("PolicyArns.member.1.arn"), managed);
    let sent: serde_json::Value = serde_json::from_str(&param("Policy")).unwrap();
    assert_eq!(sent["Statement"][0]["Action"], "s3:*");
    // A later step's SDK has that region.
    let mut later = env.clone();
    later.extend(exported);
    let out = bash(
        &later,
        "\"$PYTHON\" -c 'import boto3; print(boto3.session.Session().region_name)'",
    );
    assert_eq!(out.stdout.trim(), "eu-west-1", "{}", out.stderr);
}

/// `--log-file` is written 0600 and never through a symbolic link: a link someone planted where
/// the log goes is refused (its target untouched), and a log others could read becomes 0600.
#[test]
fn the_log_file_is_private_and_never_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = dir.path().join("credwrap.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let serve = |log: &Path| {
        run(sb
            .credwrap()
            .args(["--role-arn", ROLE_ARN, "--serve", "--detach", "--log-file"])
            .arg(log))
    };
    let out = serve(&link);
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    support::assert_stderr_has(&out, "is a symbolic link");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    let open = dir.path().join("open.log");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve(&open);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let pid: i32 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("export CREDWRAP_PID="))
        .map(|v| v.trim_matches('\'').parse().unwrap())
        .expect("CREDWRAP_PID");
    let _stop = Stop(pid);
    let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the log is {mode:o}");
}

/// The action's script does not hide its own failures: a `credwrap` input that names no
/// program is an `::error` the job's log shows, and a failed build from source (no release to
/// install, cargo failing) ends the step with cargo's failure, not with a missing binary run.
#[test]
fn the_actions_own_failures_are_shown_and_stop_it() {
    let sb = ci_sandbox();
    let github = TokenService::start(Duration::from_secs(TOKEN_LIFETIME));
    let job = GithubJob::new(&sb, &github);
    let out = run(job
        .action(&job.env, "start")
        .env("INPUT_ROLE-ARN", ROLE_ARN)
        .env("INPUT_CREDWRAP", "/nonexistent/credwrap"));
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    support::assert_stderr_has(
        &out,
        "::error title=credwrap::the credwrap input names /nonexistent/credwrap",
    );

    // No credwrap on PATH, no release to download, and a cargo that fails.
    let tools = tempfile::tempdir().unwrap();
    let cargo = tools.path().join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\necho 'cargo: build failed' >&2\nexit 101\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/download", closed.local_addr().unwrap());
    drop(closed);
    let mut env = job.env.clone();
    env.insert(
        "PATH".into(),
        format!("{}:/usr/bin:/bin", tools.path().display()),
    );
    // A version input that is not a version would make a URL into another repository.
    let out = run(job
        .action(&env, "start")
        .env("INPUT_ROLE-ARN", ROLE_ARN)
        .env(
            "INPUT_VERSION",
            "1.0/../../../attacker/fork/releases/download/v1",
        )
        .env("CREDWRAP_RELEASE_URL", &url));
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    support::assert_stderr_has(
        &out,
        "::error title=credwrap::the version input is a release version such as 0.2.0",
    );
    let out = run(job
        .action(&env, "start")
        .env("INPUT_ROLE-ARN", ROLE_ARN)
        .env("CREDWRAP_RELEASE_URL", url));
    assert_eq!(out.code(), Some(101), "{}\n{}", out.stdout, out.stderr);
    support::assert_stderr_has(&out, "cargo: build failed");
    assert!(
        !out.stderr.contains("No such file or directory"),
        "ran a binary that was never built: {}",
        out.stderr
    );
}
