//! Parity with the AWS CLI is the spec: for each way of choosing a profile (`--profile`,
//! `CREDWRAP_PROFILE`, `AWS_PROFILE`, `AWS_DEFAULT_PROFILE`), with and without keys in the
//! environment, with a role profile and a profile of keys, the AWS CLI (v1, from .deps/venv) and
//! credwrap run against the same fake STS, and the AssumeRole calls each sends (who signed them,
//! the role, external ID, session name and duration) must be the same.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;

use support::fake_sts::Call;
use support::{run, Sandbox};

const JOB_ROLE: &str = "arn:aws:iam::123456789012:role/job";
const OTHER_ROLE: &str = "arn:aws:iam::123456789012:role/other";
const ENV_KEY: &str = "AKIAPARITYENV00001";
const BASE_KEY: &str = "AKIAPARITYBASE0001";
const PLAIN_KEY: &str = "AKIAPARITYPLAIN001";

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        ".aws/config",
        &format!(
            "[profile job]\nrole_arn = {JOB_ROLE}\nsource_profile = base\nexternal_id = ext-job\n\
             duration_seconds = 5400\nrole_session_name = job-session\n\n\
             [profile base]\nregion = us-east-1\n\n[profile plain]\nregion = us-east-1\n"
        ),
    );
    sb.write(
        ".aws/credentials",
        &format!(
            "[base]\naws_access_key_id = {BASE_KEY}\naws_secret_access_key = base-secret\n\n\
             [plain]\naws_access_key_id = {PLAIN_KEY}\naws_secret_access_key = plain-secret\n"
        ),
    );
    sb
}

/// How the profile is chosen.
#[derive(Clone, Copy, Debug)]
enum Choice {
    /// credwrap `--profile`; the CLI's `--profile`.
    Flag,
    /// credwrap's `CREDWRAP_PROFILE`; the CLI has only `--profile` for an explicit choice.
    CredwrapEnv,
    AwsProfile,
    /// `AWS_DEFAULT_PROFILE`, with `AWS_PROFILE` naming the other profile (botocore reads
    /// AWS_DEFAULT_PROFILE first).
    AwsDefaultProfile,
}

struct Row {
    choice: Choice,
    profile: &'static str,
    env_keys: bool,
    /// `--role-arn` for credwrap, `sts assume-role --role-arn` for the CLI; without it the CLI
    /// runs `sts get-caller-identity`, which assumes the profile's role.
    role_arn: Option<&'static str>,
}

fn row(
    choice: Choice,
    profile: &'static str,
    env_keys: bool,
    role_arn: Option<&'static str>,
) -> Row {
    Row {
        choice,
        profile,
        env_keys,
        role_arn,
    }
}

/// The environment both programs get: the sandbox's files and STS, keys only if asked.
fn base_env(sb: &Sandbox, program: impl AsRef<std::ffi::OsStr>, row: &Row) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sb.home.path())
        .env("AWS_CONFIG_FILE", sb.path(".aws/config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", sb.path(".aws/credentials"))
        .env("AWS_ENDPOINT_URL_STS", sb.sts.url())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1");
    if row.env_keys {
        cmd.env("AWS_ACCESS_KEY_ID", ENV_KEY)
            .env("AWS_SECRET_ACCESS_KEY", "env-secret");
    }
    let other = if row.profile == "job" { "plain" } else { "job" };
    match row.choice {
        Choice::Flag | Choice::CredwrapEnv => {}
        Choice::AwsProfile => {
            cmd.env("AWS_PROFILE", row.profile);
        }
        Choice::AwsDefaultProfile => {
            cmd.env("AWS_DEFAULT_PROFILE", row.profile)
                .env("AWS_PROFILE", other);
        }
    }
    cmd
}

fn aws_cli(sb: &Sandbox, row: &Row) -> Command {
    let mut cmd = base_env(sb, support::installed(".deps/venv/bin/aws"), row);
    if matches!(row.choice, Choice::Flag | Choice::CredwrapEnv) {
        cmd.args(["--profile", row.profile]);
    }
    match row.role_arn {
        Some(arn) => cmd
            .args(["sts", "assume-role", "--role-arn", arn])
            .args(["--role-session-name", "parity"]),
        None => cmd.args(["sts", "get-caller-identity"]),
    };
    cmd
}

fn credwrap(sb: &Sandbox, row: &Row) -> Command {
    let mut cmd = base_env(sb, env!("CARGO_BIN_EXE_credwrap"), row);
    match row.choice {
        Choice::Flag => {
            cmd.args(["--profile", row.profile]);
        }
        Choice::CredwrapEnv => {
            cmd.env("CREDWRAP_PROFILE", row.profile);
        }
        _ => {}
    }
    if let Some(arn) = row.role_arn {
        cmd.args(["--role-arn", arn, "--role-session-name", "parity"]);
    }
    cmd.args(["--", "true"]);
    cmd
}

/// An AssumeRole call as both programs can be compared on: a role session's key differs from
/// run to run, and so do default session names; STS's default duration is an hour.
fn normalized(c: &Call) -> BTreeMap<&'static str, String> {
    let signer = c.access_key_id.clone().unwrap_or_default();
    let session = c.params.get("RoleSessionName").cloned().unwrap_or_default();
    let default_name = session.starts_with("botocore-session-") || session.starts_with("credwrap-");
    BTreeMap::from([
        (
            "signer",
            if signer.starts_with("ASIA") {
                "a role session".into()
            } else {
                signer
            },
        ),
        (
            "RoleArn",
            c.params.get("RoleArn").cloned().unwrap_or_default(),
        ),
        (
            "ExternalId",
            c.params.get("ExternalId").cloned().unwrap_or_default(),
        ),
        (
            "RoleSessionName",
            if default_name {
                "<default>".into()
            } else {
                session
            },
        ),
        (
            "DurationSeconds",
            c.params
                .get("DurationSeconds")
                .cloned()
                .unwrap_or_else(|| "3600".into()),
        ),
    ])
}

/// The AssumeRole calls one program sent, normalized.
type Calls = Vec<BTreeMap<&'static str, String>>;

fn assume_role_calls(sb: &Sandbox) -> Calls {
    sb.sts
        .calls()
        .iter()
        .filter(|c| c.action == "AssumeRole")
        .map(normalized)
        .collect()
}

/// Runs the row with the AWS CLI and with credwrap, each against a fresh fake STS, and returns
/// both lists of AssumeRole calls and credwrap's output.
fn compare(row: &Row) -> (Calls, Calls, support::Output) {
    let sb = sandbox();
    let cli = run(&mut aws_cli(&sb, row));
    assert_eq!(
        cli.code(),
        Some(0),
        "the AWS CLI failed for {:?} {}: {}",
        row.choice,
        row.profile,
        cli.stderr
    );
    let by_cli = assume_role_calls(&sb);
    let sb = sandbox();
    let out = run(&mut credwrap(&sb, row));
    (by_cli, assume_role_calls(&sb), out)
}

#[test]
fn credwrap_signs_and_asks_for_what_the_aws_cli_does() {
    use Choice::*;
    let rows = [
        // A role profile: its role, signed by its source_profile's keys...
        row(Flag, "job", true, None),
        row(CredwrapEnv, "job", true, None),
        row(AwsProfile, "job", false, None),
        row(Flag, "job", false, None),
        row(AwsDefaultProfile, "job", false, None),
        // ...and with --role-arn naming another role: the profile's role first, then that one.
        row(Flag, "job", true, Some(OTHER_ROLE)),
        row(AwsProfile, "job", false, Some(OTHER_ROLE)),
        // Environment keys win over AWS_PROFILE, never over an explicit --profile.
        row(AwsProfile, "job", true, Some(OTHER_ROLE)),
        // A profile of keys: the source for --role-arn.
        row(Flag, "plain", true, Some(OTHER_ROLE)),
        row(CredwrapEnv, "plain", true, Some(OTHER_ROLE)),
        row(AwsProfile, "plain", true, Some(OTHER_ROLE)),
        row(AwsProfile, "plain", false, Some(OTHER_ROLE)),
    ];
    let mut table = String::new();
    for row in &rows {
        let what = format!(
            "{:?} {} env_keys={} role_arn={:?}",
            row.choice, row.profile, row.env_keys, row.role_arn
        );
        let (by_cli, by_credwrap, out) = compare(row);
        assert_eq!(out.code(), Some(0), "{what}: {}", out.stderr);
        assert!(!by_cli.is_empty(), "{what}: the AWS CLI assumed nothing");
        assert_eq!(by_credwrap, by_cli, "{what}");
        let signers: Vec<&str> = by_cli.iter().map(|c| c["signer"].as_str()).collect();
        table.push_str(&format!("{what}: {}\n", signers.join(" then ")));
    }
    println!("--- who signs each AssumeRole, CLI and credwrap alike ---\n{table}");
}

/// `AWS_PROFILE=job` with keys in the environment: the AWS CLI runs as the keys and assumes
/// nothing; credwrap, which must assume a role, says why it will not take job's and stops.
#[test]
fn an_implicit_role_profile_under_environment_keys_is_refused_clearly() {
    let row = row(Choice::AwsProfile, "job", true, None);
    let (by_cli, by_credwrap, out) = compare(&row);
    assert!(by_cli.is_empty(), "{by_cli:?}");
    assert!(by_credwrap.is_empty(), "{by_credwrap:?}");
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "AWS_PROFILE=job");
    support::assert_stderr_has(&out, "--profile job");
}
