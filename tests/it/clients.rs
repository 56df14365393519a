//! Real SDKs as the child judge the endpoints: boto3, the AWS CLI v1, the AWS SDK for JavaScript
//! v3, the Rust SDK, the Go SDK v2 (as Debian packages it), an old botocore lane (boto3 1.17,
//! AWS CLI 1.19) and Debian's AWS CLI v2 each call STS GetCallerIdentity and must come back as
//! credwrap's role, over the container endpoint and the IMDS one, from the strict fake STS and
//! from moto, whatever hostile credentials the parent environment carries.

use crate::support;

use std::process::Command;

use support::fake_sts::{HOSTILE_KEY_ID, HOSTILE_SECRET};
use support::moto::Moto;
use support::{run, Output, Sandbox};

const ASSUMED: &str = "arn:aws:sts::123456789012:assumed-role/deploy/matrix";
use support::MATRIX as SDKS;

/// credwrap running tests/children/sdk_matrix.sh: every SDK in turn.
fn matrix(cmd: &mut Command, endpoint: &str) -> Output {
    run(support::sdk_env(cmd)
        .args([
            "--endpoint",
            endpoint,
            "--role-session-name",
            "matrix",
            "--",
        ])
        .arg(support::script("sdk_matrix.sh")))
}

fn assert_every_sdk_is_the_role(out: &Output, what: &str) {
    assert_eq!(
        out.code(),
        Some(0),
        "{what}\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    for sdk in SDKS {
        let line = format!("{sdk}: arn={ASSUMED}");
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{what}: {sdk} did not run as the role\n{}",
            out.stdout
        );
    }
}

/// Each hostile environment, as a change to the sandbox and to credwrap's environment.
fn hostile(sb: &Sandbox, case: &str, cmd: &mut Command) {
    let keys =
        format!("aws_access_key_id = {HOSTILE_KEY_ID}\naws_secret_access_key = {HOSTILE_SECRET}\n");
    match case {
        "clean" => {}
        // credwrap itself takes env keys as its source; the child must not see them.
        "static-keys-in-env" => {
            cmd.env("AWS_ACCESS_KEY_ID", HOSTILE_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", HOSTILE_SECRET)
                .env("AWS_SECURITY_TOKEN", "hostile-legacy-token");
        }
        "aws-profile" => {
            sb.write(
                ".aws/config",
                &format!("[profile hostile]\nregion = us-east-1\n{keys}"),
            );
            cmd.env("AWS_PROFILE", "hostile");
        }
        "default-profile-in-credentials-file" => {
            sb.write(".aws/credentials", &format!("[default]\n{keys}"));
        }
        "web-identity" => {
            let token = sb.write("web-identity-token", "hostile.jwt.token");
            cmd.env("AWS_ROLE_ARN", "arn:aws:iam::222222222222:role/hostile-web")
                .env("AWS_WEB_IDENTITY_TOKEN_FILE", token);
        }
        "container-runtime" => {
            let token = sb.write("container-token", "hostile-container-token");
            cmd.env(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/hostile",
            )
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token);
        }
        other => panic!("unknown case {other}"),
    }
}

fn fake_sts_matrix(endpoint: &str) {
    for case in [
        "clean",
        "static-keys-in-env",
        "aws-profile",
        "default-profile-in-credentials-file",
        "web-identity",
        "container-runtime",
    ] {
        let sb = Sandbox::new();
        let mut cmd = sb.credwrap();
        hostile(&sb, case, &mut cmd);
        let out = matrix(&mut cmd, endpoint);
        assert_every_sdk_is_the_role(&out, &format!("{endpoint} endpoint, {case}"));
        // Every identity call was signed with a role key from this STS, none with another key.
        let keys = sb.sts.keys_used_for("GetCallerIdentity");
        assert!(
            keys.iter().all(|k| k.starts_with("ASIAFAKEROLE")),
            "{case}: {keys:?}"
        );
        assert_eq!(sb.sts.count("AssumeRole"), 1, "{case}");
    }
}

#[test]
fn every_sdk_over_the_container_endpoint_in_hostile_environments() {
    fake_sts_matrix("ecs");
}

#[test]
fn every_sdk_over_the_imds_endpoint_in_hostile_environments() {
    fake_sts_matrix("imds");
}

#[test]
fn every_sdk_with_moto_as_the_sts() {
    let moto = Moto::start();
    for endpoint in ["ecs", "imds"] {
        let sb = Sandbox::new();
        let mut cmd = sb.credwrap();
        cmd.env("AWS_ENDPOINT_URL_STS", &moto.url);
        let out = matrix(&mut cmd, endpoint);
        assert_every_sdk_is_the_role(&out, &format!("moto, {endpoint} endpoint"));
    }
}

/// When credwrap has no valid credential, every SDK fails with a message that says so (they are
/// recorded in docs/troubleshooting.md).
#[test]
fn every_sdk_reports_an_unavailable_endpoint_readably() {
    for endpoint in ["ecs", "imds"] {
        let sb = Sandbox::new();
        sb.sts.set_lifetime(std::time::Duration::from_secs(4));
        let mut cmd = sb.credwrap();
        // The child waits until the test has let the credential expire with STS refusing.
        support::sdk_env(&mut cmd)
            .args(["--endpoint", endpoint, "--"])
            .args([
                "sh",
                "-c",
                "echo waiting; read go; exec \"$CHILDREN/sdk_matrix.sh\"",
            ]);
        let mut child = support::start(&mut cmd);
        child.line_until("waiting", |l| l == "waiting");
        sb.sts.deny_role(support::fake_sts::ROLE_ARN);
        let expiry = sb.sts.latest_expiry().expect("a credential was issued");
        support::eventually("the credential to expire", || {
            (std::time::SystemTime::now() > expiry).then_some(())
        });
        use std::io::Write;
        child.stdin().write_all(b"go\n").unwrap();
        let out = child.finish();
        let stdout = out.stdout.clone();
        assert_ne!(out.code(), Some(0), "{endpoint}: {stdout}");
        for sdk in SDKS {
            assert!(
                stdout.contains(&format!("{sdk}: exit=")),
                "{endpoint}: {sdk} did not fail\n{stdout}"
            );
            assert!(
                !stdout.contains(&format!("{sdk}: arn=")),
                "{endpoint}: {sdk} got an identity\n{stdout}"
            );
        }
        println!(
            "--- what each SDK prints when the {endpoint} endpoint has no credential ---\n{stdout}"
        );
    }
}
