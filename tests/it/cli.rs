//! Bad input fails with exit 2 and a message naming the option, before any STS call or spawn.

use crate::support;

use support::{run, Sandbox};

fn rejects(args: &[&str], names: &str) {
    let sb = Sandbox::new();
    let marker = sb.path("child-ran");
    let mut cmd = sb.credwrap();
    cmd.args(args).arg("--").arg("touch").arg(&marker);
    let out = run(&mut cmd);
    assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
    assert!(
        out.stderr.contains(names),
        "{args:?}: message should name {names}: {}",
        out.stderr
    );
    assert_eq!(sb.sts.calls().len(), 0, "{args:?} called STS");
    assert!(!marker.exists(), "{args:?} started the command");
}

#[test]
fn bad_role_arns() {
    for arn in [
        "deploy",
        "arn:aws:iam::12345:role/deploy",
        "arn:aws:iam::123456789012:user/deploy",
        "arn:aws:s3::123456789012:role/deploy",
        "arn:nope:iam::123456789012:role/deploy",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/has space",
    ] {
        rejects(&["--role-arn", arn], "--role-arn");
    }
}

#[test]
fn bad_session_names() {
    for name in ["x", "has space", &"n".repeat(65), "semi;colon"] {
        rejects(&["--role-session-name", name], "--role-session-name");
    }
}

#[test]
fn bad_durations() {
    for d in ["10m", "1799", "12h1s", "13h", "abc", "1h30", "-5", "0"] {
        rejects(&[&format!("--duration={d}")], "--duration");
    }
}

#[test]
fn bad_external_ids_and_regions() {
    rejects(&["--external-id", "x"], "--external-id");
    rejects(&["--external-id", "has space"], "--external-id");
    rejects(&["--region", "US EAST"], "--region");
}

#[test]
fn bad_role_arn_from_env() {
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .env("CREDWRAP_ROLE_ARN", "not-an-arn")
        .args(["--", "true"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "--role-arn");
    assert_eq!(sb.sts.calls().len(), 0);
}

#[test]
fn missing_command_and_missing_role() {
    let sb = Sandbox::new();
    let out = run(&mut sb.credwrap());
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "COMMAND");

    let out = run(sb
        .credwrap()
        .env_remove("CREDWRAP_ROLE_ARN")
        .args(["--", "true"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "--role-arn");
    assert_eq!(sb.sts.calls().len(), 0);
}

#[test]
fn token_file_with_the_imds_endpoint() {
    rejects(&["--endpoint", "imds", "--token-file"], "--token-file");
}

#[test]
fn unknown_option_and_quiet_with_verbose() {
    rejects(&["--no-such-option"], "--no-such-option");
    rejects(&["-q", "-v"], "--quiet");
}

#[test]
fn help_and_version_succeed() {
    let sb = Sandbox::new();
    let out = run(sb.credwrap().arg("--help"));
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.contains("--role-arn"));
    let out = run(sb.credwrap().arg("--version"));
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.starts_with("credwrap "));
}
