//! End to end with the built binary: exit codes, failures before the child, the child's env.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;

use support::fake_sts::{ROLE_ARN, SOURCE_KEY_ID, SOURCE_SECRET};
use support::{run, Sandbox};

#[test]
fn passes_the_exit_code_through() {
    let sb = Sandbox::new();
    for (script, code) in [("exit 0", 0), ("exit 7", 7), ("exit 255", 255)] {
        let out = run(sb.credwrap().args(["--", "sh", "-c", script]));
        assert_eq!(out.code(), Some(code), "{script}: {}", out.stderr);
    }
    // One AssumeRole per run, with what the command line asked for.
    let calls = sb.sts.calls();
    assert_eq!(sb.sts.count("AssumeRole"), 3, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.params["RoleArn"], ROLE_ARN);
    assert_eq!(c.params["DurationSeconds"], "3600");
    assert!(
        c.params["RoleSessionName"].starts_with("credwrap-"),
        "{c:?}"
    );
    assert_eq!(c.access_key_id.as_deref(), Some(SOURCE_KEY_ID));
}

#[test]
fn options_reach_sts() {
    let sb = Sandbox::new();
    let out = run(sb.credwrap().args([
        "--duration",
        "90m",
        "--role-session-name",
        "nightly.etl@team",
        "--external-id",
        "ext:id/1",
        "--",
        "true",
    ]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let c = &sb.sts.calls()[0];
    assert_eq!(c.params["DurationSeconds"], "5400");
    assert_eq!(c.params["RoleSessionName"], "nightly.etl@team");
    assert_eq!(c.params["ExternalId"], "ext:id/1");
}

#[test]
fn command_not_found_is_127_and_not_executable_is_126() {
    let sb = Sandbox::new();
    let out = run(sb.credwrap().args(["--", "no-such-command-credwrap"]));
    assert_eq!(out.code(), Some(127), "{}", out.stderr);
    support::assert_stderr_has(&out, "no-such-command-credwrap");

    // Found nowhere: known before anything is assumed.
    assert_eq!(
        sb.sts.calls().len(),
        0,
        "STS was called for a missing command"
    );

    let script = sb.write("not-executable.sh", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(sb.credwrap().arg("--").arg(&script));
    assert_eq!(out.code(), Some(126), "{}", out.stderr);
}

/// An empty command name is no command, as in bash (`'': command not found`, 127); joined to a
/// PATH entry it would name a directory, which is "permission denied" (126).
#[test]
fn an_empty_command_is_not_found() {
    let sb = Sandbox::new();
    let out = run(sb.credwrap().args(["--", ""]));
    assert_eq!(out.code(), Some(127), "{}", out.stderr);
    support::assert_stderr_has(&out, "command not found");
    assert_eq!(sb.sts.calls().len(), 0);
}

/// `credwrap --man | head -1`: a reader that has gone away took what it wanted. credwrap exits
/// 0 and says nothing, as ripgrep does; here the pipe is closed before anything is written.
#[test]
fn generated_docs_to_a_closed_pipe_exit_quietly() {
    for args in [&["--man"][..], &["--completions", "bash"]] {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_credwrap"))
            .args(args)
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?}", out.status);
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn child_killed_by_a_signal_is_mirrored() {
    let sb = Sandbox::new();
    let out = run(sb.credwrap().args(["--", "sh", "-c", "kill -KILL $$"]));
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{:?} {}",
        out.status,
        out.stderr
    );
    // What a calling shell sees: 128+9.
    let out = run(std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -- sh -c 'kill -KILL $$'; echo \"status=$?\"",
            env!("CARGO_BIN_EXE_credwrap")
        ))
        .envs(
            sb.credwrap()
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k, v))),
        ));
    assert!(
        out.stdout.contains("status=137"),
        "{} {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn denied_role_exits_125_without_starting_the_command() {
    let sb = Sandbox::new();
    sb.sts.deny_role(ROLE_ARN);
    let marker = sb.path("child-ran");
    let out = run(sb.credwrap().arg("--").arg("touch").arg(&marker));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "AccessDenied");
    assert!(
        out.stderr.contains("trust policy"),
        "hint missing: {}",
        out.stderr
    );
    assert!(!marker.exists());
    assert_eq!(out.stderr.lines().count(), 2, "{}", out.stderr);
}

#[test]
fn no_source_credentials_exits_125_with_a_hint() {
    let sb = Sandbox::new();
    let marker = sb.path("child-ran");
    let out = run(sb
        .credwrap()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .arg("--")
        .arg("touch")
        .arg(&marker));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "no source credentials");
    support::assert_stderr_has(&out, "hint:");
    assert!(!marker.exists());
    assert_eq!(sb.sts.calls().len(), 0);
}

#[test]
fn unreachable_sts_exits_125() {
    let sb = Sandbox::new();
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(sb
        .credwrap()
        .env("AWS_ENDPOINT_URL_STS", format!("http://127.0.0.1:{port}"))
        .args(["--", "true"]));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "could not reach STS");
}

#[test]
fn child_env_holds_no_source_credentials() {
    let sb = Sandbox::new();
    sb.write(".aws/config", "[profile someprofile]\nregion = us-east-1\n");
    let out = run(sb
        .credwrap()
        .env("AWS_SESSION_TOKEN", "source-session-token")
        .env("AWS_PROFILE", "someprofile")
        .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/other")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", "/tmp/token")
        .env(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/x",
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/tmp/tok")
        .env("KEEP_ME", "yes")
        .args(["--", "env"]));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let env = &out.stdout;
    for leaked in [
        SOURCE_KEY_ID,
        SOURCE_SECRET,
        "source-session-token",
        "AWS_ACCESS_KEY_ID=",
        "AWS_SECRET_ACCESS_KEY=",
        "AWS_SESSION_TOKEN=",
        "AWS_PROFILE=",
        "AWS_ROLE_ARN=",
        "AWS_WEB_IDENTITY_TOKEN_FILE=",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=",
    ] {
        assert!(!env.contains(leaked), "child env contains {leaked}:\n{env}");
    }
    for expected in [
        "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN=",
        "AWS_EC2_METADATA_DISABLED=true",
        "AWS_DEFAULT_REGION=us-east-1",
        "AWS_REGION=us-east-1",
        "KEEP_ME=yes",
        "no_proxy=127.0.0.1",
    ] {
        assert!(env.contains(expected), "child env lacks {expected}:\n{env}");
    }
    // The stand-in credentials file is empty and private, and gone after the run.
    let creds = env
        .lines()
        .find_map(|l| l.strip_prefix("AWS_SHARED_CREDENTIALS_FILE="))
        .expect("AWS_SHARED_CREDENTIALS_FILE is set");
    assert!(
        !std::path::Path::new(creds).exists(),
        "{creds} was not removed"
    );
}

/// A file credwrap cannot start says why, with bash's codes, and is never run by /bin/sh.
#[test]
fn exec_failures_say_what_happened() {
    let sb = Sandbox::new();
    let marker = sb.path("ran-as-shell-script");
    let exe = |name: &str, bytes: &[u8]| {
        let p = sb.path(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let touch = format!("touch {}\nexit 0\n", marker.display());
    let cases: Vec<(std::path::PathBuf, i32, &str)> = vec![
        (
            exe(
                "missing-interpreter",
                format!("#!/no/such/interpreter -x\n{touch}").as_bytes(),
            ),
            127,
            "its interpreter '/no/such/interpreter' (from its #! line) was not found",
        ),
        (
            exe(
                "crlf",
                format!("#!/bin/sh\r\n{}", touch.replace('\n', "\r\n")).as_bytes(),
            ),
            127,
            "carriage return (Windows line endings)",
        ),
        // A text file without a #! line: glibc's execvp would run it with /bin/sh.
        (exe("no-shebang", touch.as_bytes()), 126, "needs a #! line"),
        (
            exe(
                "corrupt-elf",
                b"\x7fELF\x02\x01\x01\x00garbage-not-a-program",
            ),
            126,
            "ELF binary this system cannot run",
        ),
    ];
    for (path, code, message) in cases {
        let out = run(sb.credwrap().arg("--").arg(&path));
        assert_eq!(out.code(), Some(code), "{}: {}", path.display(), out.stderr);
        assert!(
            out.stderr.contains(message),
            "{}: {}",
            path.display(),
            out.stderr
        );
        assert!(!marker.exists(), "{} was run by a shell", path.display());
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// The PATH search is execvp's: a non-executable file earlier in PATH is passed over.
#[test]
fn path_search_skips_what_cannot_be_executed() {
    let sb = Sandbox::new();
    let (first, second) = (sb.path("bin1"), sb.path("bin2"));
    for (dir, mode) in [(&first, 0o644), (&second, 0o755)] {
        std::fs::create_dir(dir).unwrap();
        let tool = dir.join("credwrap-test-tool");
        std::fs::write(&tool, "#!/bin/sh\nexit 9\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let path = format!("{}:{}:/usr/bin:/bin", first.display(), second.display());
    let out = run(sb
        .credwrap()
        .env("PATH", &path)
        .args(["--", "credwrap-test-tool"]));
    assert_eq!(out.code(), Some(9), "{}", out.stderr);
    // Only the non-executable one: permission denied, 126.
    let path = format!("{}:/usr/bin:/bin", first.display());
    let out = run(sb
        .credwrap()
        .env("PATH", &path)
        .args(["--", "credwrap-test-tool"]));
    assert_eq!(out.code(), Some(126), "{}", out.stderr);
    support::assert_stderr_has(&out, "permission denied");
}
