//! Real SDKs as the child: they, not our own client code, judge the endpoint.

mod support;

use support::fake_sts::{HOSTILE_KEY_ID, HOSTILE_SECRET, ROLE_ARN};
use support::{python, run, script, Sandbox};

const ASSUMED: &str = "arn:aws:sts::123456789012:assumed-role/deploy/";

fn boto3_identity(sb: &Sandbox, cmd: &mut std::process::Command) -> String {
    let out = run(cmd
        .args(["--role-session-name", "boto3-test", "--"])
        .arg(python())
        .arg(script("whoami.py")));
    assert_eq!(
        out.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("method=container-role"),
        "boto3 did not use the container provider: {}",
        out.stdout
    );
    assert_eq!(sb.sts.count("AssumeRole"), 1);
    out.stdout
}

#[test]
fn boto3_runs_as_the_role() {
    let sb = Sandbox::new();
    let stdout = boto3_identity(&sb, &mut sb.credwrap());
    assert!(
        stdout.contains(&format!("arn={ASSUMED}boto3-test")),
        "{stdout}"
    );
    // The identity call was signed with the role's key, not the source key.
    let calls = sb.sts.calls();
    let gci = calls
        .iter()
        .find(|c| c.action == "GetCallerIdentity")
        .unwrap();
    assert!(
        gci.access_key_id
            .as_deref()
            .unwrap()
            .starts_with("ASIAFAKEROLE"),
        "{gci:?}"
    );
    let _ = ROLE_ARN;
}

#[test]
fn boto3_ignores_a_hostile_default_profile_and_aws_profile() {
    let sb = Sandbox::new();
    let keys =
        format!("aws_access_key_id = {HOSTILE_KEY_ID}\naws_secret_access_key = {HOSTILE_SECRET}\n");
    sb.write(
        ".aws/credentials",
        &format!("[default]\n{keys}\n[hostile]\n{keys}"),
    );
    sb.write(
        ".aws/config",
        &format!(
            "[default]\nregion = us-east-1\n{keys}\n[profile hostile]\nregion = us-east-1\n{keys}"
        ),
    );
    let mut cmd = sb.credwrap();
    cmd.env("AWS_PROFILE", "hostile");
    let stdout = boto3_identity(&sb, &mut cmd);
    assert!(
        stdout.contains(&format!("arn={ASSUMED}boto3-test")),
        "{stdout}"
    );
    assert!(!stdout.contains("hostile"), "{stdout}");
}
