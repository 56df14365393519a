//! What people assume roles with: profiles, MFA, web identity, chaining and session options.
//! The strict fake STS records every call's parameters and signing key; the tests assert them.

use crate::support;

use std::time::Duration;

use support::fake_sts::{
    Call, HOSTILE_KEY_ID, HOSTILE_SECRET, ROLE_ARN, SOURCE_KEY_ID, SOURCE_SECRET,
};
use support::{run, Output, Sandbox};

fn ok(out: &Output) {
    assert_eq!(
        out.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

fn calls(sb: &Sandbox, action: &str) -> Vec<Call> {
    sb.sts
        .calls()
        .into_iter()
        .filter(|c| c.action == action)
        .collect()
}

/// Waits until the fake STS has seen `n` calls of `action` (the event a refresh test waits for).
fn wait_for_calls(sb: &Sandbox, action: &str, n: usize) {
    support::eventually(&format!("{n} {action} calls"), || {
        (sb.sts.count(action) >= n).then_some(())
    });
}

#[test]
fn every_session_option_is_sent() {
    let sb = Sandbox::new();
    let policy_file = sb.write(
        "policy.json",
        "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}\n",
    );
    let out = run(sb
        .credwrap()
        .args([
            "--role-session-name",
            "opts",
            "--duration",
            "2h",
            "--external-id",
            "ext-1",
        ])
        .args([
            "--tag",
            "team=data",
            "--tag",
            "cost center=42",
            "--transitive-tag-key",
            "team",
        ])
        .args(["--source-identity", "alice@example.com"])
        .args(["--policy-arn", "arn:aws:iam::aws:policy/ReadOnlyAccess"])
        .args([
            "--policy-arn",
            "arn:aws:iam::123456789012:policy/team/limits",
        ])
        .arg("--policy")
        .arg(format!("@{}", policy_file.display()))
        .args(["--", "true"]));
    ok(&out);
    let c = &calls(&sb, "AssumeRole")[0];
    let p = &c.params;
    assert_eq!(p["RoleArn"], ROLE_ARN);
    assert_eq!(p["RoleSessionName"], "opts");
    assert_eq!(p["DurationSeconds"], "7200");
    assert_eq!(p["ExternalId"], "ext-1");
    assert_eq!(p["Tags.member.1.Key"], "team");
    assert_eq!(p["Tags.member.1.Value"], "data");
    assert_eq!(p["Tags.member.2.Key"], "cost center");
    assert_eq!(p["Tags.member.2.Value"], "42");
    assert_eq!(p["TransitiveTagKeys.member.1"], "team");
    assert_eq!(p["SourceIdentity"], "alice@example.com");
    assert_eq!(
        p["PolicyArns.member.1.arn"],
        "arn:aws:iam::aws:policy/ReadOnlyAccess"
    );
    assert_eq!(
        p["PolicyArns.member.2.arn"],
        "arn:aws:iam::123456789012:policy/team/limits"
    );
    assert_eq!(p["Policy"], r#"{"Statement":[],"Version":"2012-10-17"}"#);
}

#[test]
fn options_come_from_credwrap_env_vars_too() {
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .env("CREDWRAP_ROLE_SESSION_NAME", "from-env")
        .env("CREDWRAP_DURATION", "45m")
        .env("CREDWRAP_EXTERNAL_ID", "ext-env")
        .env("CREDWRAP_TAGS", "a=1,b=2")
        .env("CREDWRAP_TRANSITIVE_TAG_KEYS", "a")
        .env("CREDWRAP_SOURCE_IDENTITY", "bob")
        .env(
            "CREDWRAP_POLICY_ARNS",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
        )
        .env(
            "CREDWRAP_POLICY",
            r#"{"Version":"2012-10-17","Statement":[]}"#,
        )
        .env("CREDWRAP_LOG_FORMAT", "json")
        .env("CREDWRAP_ENDPOINT", "ecs")
        .args(["-v", "--", "true"]));
    ok(&out);
    let p = &calls(&sb, "AssumeRole")[0].params;
    assert_eq!(p["RoleSessionName"], "from-env");
    assert_eq!(p["DurationSeconds"], "2700");
    assert_eq!(p["ExternalId"], "ext-env");
    assert_eq!(p["Tags.member.2.Key"], "b");
    assert_eq!(p["TransitiveTagKeys.member.1"], "a");
    assert_eq!(p["SourceIdentity"], "bob");
    assert!(p.contains_key("PolicyArns.member.1.arn"));
    assert!(p.contains_key("Policy"));
    // --log-format json: every log line is a JSON object.
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("assumed role"))
        .expect("an info line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(v["level"], "INFO");
}

#[test]
fn session_option_limits_exit_2_before_any_call() {
    let long_key = "k".repeat(129);
    let long_value = format!("--tag=k={}", "v".repeat(257));
    let many_tags: Vec<String> = (0..51).map(|i| format!("--tag=k{i}=v")).collect();
    let many_arns: Vec<String> = (0..11)
        .map(|i| format!("--policy-arn=arn:aws:iam::aws:policy/P{i}"))
        .collect();
    let big_policy = format!(r#"--policy={{"Sid":"{}"}}"#, "x".repeat(2100));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![format!("--tag={long_key}=v")], "--tag"),
        (vec![long_value], "--tag"),
        (vec!["--tag=novalue".into()], "--tag"),
        (vec!["--tag=aws:x=1".into()], "--tag"),
        (vec!["--tag=a=1".into(), "--tag=A=2".into()], "--tag"),
        (many_tags, "--tag"),
        (
            vec!["--tag=a=1".into(), "--transitive-tag-key=b".into()],
            "--transitive-tag-key",
        ),
        (vec!["--source-identity=aws:me".into()], "--source-identity"),
        (vec!["--source-identity=x".into()], "--source-identity"),
        (
            vec!["--policy-arn=arn:aws:iam::aws:role/x".into()],
            "--policy-arn",
        ),
        (many_arns, "--policy-arn"),
        (vec!["--policy={not json".into()], "--policy"),
        (vec!["--policy=[1,2]".into()], "--policy"),
        (vec![big_policy], "--policy"),
        (vec!["--policy=@/no/such/file".into()], "--policy"),
        (vec!["--mfa-serial=short".into()], "--mfa-serial"),
        (
            vec![
                "--mfa-serial=arn:aws:iam::123456789012:mfa/me".into(),
                "--mfa-code=12345".into(),
            ],
            "--mfa-code",
        ),
        (vec!["--mfa-code=123456".into()], "--mfa-code"),
        (vec!["--mfa-duration=10m".into()], "--mfa-duration"),
        (vec!["--via=arn:aws:iam::123:role/x".into()], "--via"),
        (vec!["--profile=nosuchprofile".into()], "nosuchprofile"),
    ];
    for (args, names) in cases {
        let sb = Sandbox::new();
        let marker = sb.path("ran");
        let out = run(sb
            .credwrap()
            .args(&args)
            .arg("--")
            .arg("touch")
            .arg(&marker));
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(names),
            "{args:?} should name {names}: {}",
            out.stderr
        );
        assert_eq!(sb.sts.calls().len(), 0, "{args:?} called STS");
        assert!(!marker.exists());
    }
}

fn without_env_keys(sb: &Sandbox) -> std::process::Command {
    let mut cmd = sb.credwrap();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env_remove("CREDWRAP_ROLE_ARN");
    cmd
}

const PROFILES: &str = "\
[profile target]
role_arn = arn:aws:iam::123456789012:role/from-profile
source_profile = base
external_id = ext-from-profile
duration_seconds = 5400
role_session_name = from-profile-session
region = eu-west-1

[profile base]
region = us-east-1
";

fn profile_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write(".aws/config", PROFILES);
    sb.write(
        ".aws/credentials",
        &format!("[base]\naws_access_key_id = {SOURCE_KEY_ID}\naws_secret_access_key = {SOURCE_SECRET}\n"),
    );
    sb
}

#[test]
fn a_role_profile_supplies_the_role_and_its_settings() {
    let sb = profile_sandbox();
    let out = run(without_env_keys(&sb).args(["--profile", "target", "--", "env"]));
    ok(&out);
    let c = &calls(&sb, "AssumeRole")[0];
    assert_eq!(
        c.params["RoleArn"],
        "arn:aws:iam::123456789012:role/from-profile"
    );
    assert_eq!(c.params["ExternalId"], "ext-from-profile");
    assert_eq!(c.params["DurationSeconds"], "5400");
    assert_eq!(c.params["RoleSessionName"], "from-profile-session");
    // Signed with the source profile's keys, not assumed twice.
    assert_eq!(c.access_key_id.as_deref(), Some(SOURCE_KEY_ID));
    assert_eq!(sb.sts.count("AssumeRole"), 1);
    // The same from AWS_PROFILE, and flags win over the profile.
    let sb = profile_sandbox();
    let out = run(without_env_keys(&sb).env("AWS_PROFILE", "target").args([
        "--duration",
        "2h",
        "--role-session-name",
        "flag-wins",
        "--",
        "true",
    ]));
    ok(&out);
    let c = &calls(&sb, "AssumeRole")[0];
    assert_eq!(
        c.params["RoleArn"],
        "arn:aws:iam::123456789012:role/from-profile"
    );
    assert_eq!(c.params["DurationSeconds"], "7200");
    assert_eq!(c.params["RoleSessionName"], "flag-wins");
}

#[test]
fn a_profile_without_role_arn_is_the_source_for_role_arn() {
    let sb = Sandbox::new();
    sb.write(
        ".aws/credentials",
        &format!("[other]\naws_access_key_id = {HOSTILE_KEY_ID}\naws_secret_access_key = {HOSTILE_SECRET}\n"),
    );
    sb.write(".aws/config", "[profile other]\nregion = eu-west-1\n");
    let out = run(without_env_keys(&sb).args([
        "--profile",
        "other",
        "--role-arn",
        ROLE_ARN,
        "--",
        "env",
    ]));
    ok(&out);
    let c = &calls(&sb, "AssumeRole")[0];
    assert_eq!(c.params["RoleArn"], ROLE_ARN);
    assert_eq!(c.access_key_id.as_deref(), Some(HOSTILE_KEY_ID));
    // The profile's region reaches the child.
    assert!(
        out.stdout.contains("AWS_REGION=eu-west-1"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_profile_role_without_a_source_is_a_usage_error() {
    let sb = Sandbox::new();
    sb.write(
        ".aws/config",
        "[profile broken]\nrole_arn = arn:aws:iam::123456789012:role/x\n",
    );
    let out = run(without_env_keys(&sb).args(["--profile", "broken", "--", "true"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "source_profile");
    assert_eq!(sb.sts.calls().len(), 0);
}

#[test]
fn mfa_gets_one_session_and_refreshes_from_it() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    let serial = "arn:aws:iam::111111111111:mfa/source";
    let child = support::start(
        sb.credwrap()
            .args(["--mfa-serial", serial, "--mfa-duration", "1h"])
            .env("CREDWRAP_MFA_CODE", "123456")
            .args(["--", "sh", "-c", "env; echo ready; read x; exit 0"]),
    );
    let env = child.lines_before("ready");
    assert!(
        !env.iter().any(|l| l.contains("CREDWRAP_MFA_CODE")),
        "the MFA code reached the child"
    );
    // Two refreshes after the first AssumeRole, without asking for a code again.
    wait_for_calls(&sb, "AssumeRole", 3);
    let out = child.finish();
    ok(&out);
    let gst = calls(&sb, "GetSessionToken");
    assert_eq!(gst.len(), 1);
    assert_eq!(gst[0].params["SerialNumber"], serial);
    assert_eq!(gst[0].params["TokenCode"], "123456");
    assert_eq!(gst[0].params["DurationSeconds"], "3600");
    assert_eq!(gst[0].access_key_id.as_deref(), Some(SOURCE_KEY_ID));
    // Every AssumeRole, first and refreshes, is signed by the one MFA session.
    let signers: std::collections::BTreeSet<_> = calls(&sb, "AssumeRole")
        .into_iter()
        .map(|c| c.access_key_id.unwrap_or_default())
        .collect();
    assert_eq!(signers.len(), 1, "{signers:?}");
    assert!(
        signers.iter().all(|k| k.starts_with("ASIAFAKEROLE")),
        "{signers:?}"
    );
}

/// [`profile_sandbox`] plus a role profile `mfa` that names an MFA device.
fn mfa_profile_sandbox() -> Sandbox {
    let sb = profile_sandbox();
    sb.write(
        ".aws/config",
        &format!("{PROFILES}\n[profile mfa]\nrole_arn = {ROLE_ARN}\nsource_profile = base\nmfa_serial = arn:aws:iam::111111111111:mfa/source\n"),
    );
    sb
}

#[test]
fn mfa_serial_from_the_profile_and_code_from_the_flag() {
    let sb = mfa_profile_sandbox();
    let out =
        run(without_env_keys(&sb).args(["--profile", "mfa", "--mfa-code", "654321", "--", "true"]));
    ok(&out);
    let gst = calls(&sb, "GetSessionToken");
    assert_eq!(
        gst[0].params["SerialNumber"],
        "arn:aws:iam::111111111111:mfa/source"
    );
    assert_eq!(gst[0].params["TokenCode"], "654321");
    // No terminal and no code: a usage error, before any call.
    let sb = mfa_profile_sandbox();
    let out = run(without_env_keys(&sb).args(["--profile", "mfa", "--", "true"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "--mfa-code");
    assert_eq!(sb.sts.calls().len(), 0);
}

#[test]
fn web_identity_rereads_the_token_at_every_refresh() {
    for convention in [false, true] {
        let sb = Sandbox::new();
        sb.sts.set_lifetime(Duration::from_secs(6));
        let token = sb.write("oidc-token", "first.jwt.token\n");
        let mut cmd = without_env_keys(&sb);
        if convention {
            // The SDKs' own variables, as GitHub Actions' configure step or EKS sets them.
            cmd.env("AWS_ROLE_ARN", ROLE_ARN)
                .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
                .env("AWS_ROLE_SESSION_NAME", "ci-run-1");
        } else {
            cmd.args(["--role-arn", ROLE_ARN, "--role-session-name", "ci-run-1"])
                .arg("--web-identity-token-file")
                .arg(&token);
        }
        let child = support::start(cmd.args(["--", "sh", "-c", "read x; exit 0"]));
        wait_for_calls(&sb, "AssumeRoleWithWebIdentity", 1);
        // The CI system rotates the token; the next refresh must send the new one.
        std::fs::write(&token, "second.jwt.token\n").unwrap();
        wait_for_calls(&sb, "AssumeRoleWithWebIdentity", 2);
        let out = child.finish();
        ok(&out);
        let calls = calls(&sb, "AssumeRoleWithWebIdentity");
        assert_eq!(calls[0].params["WebIdentityToken"], "first.jwt.token");
        assert_eq!(calls[1].params["WebIdentityToken"], "second.jwt.token");
        assert_eq!(calls[0].params["RoleArn"], ROLE_ARN);
        assert_eq!(calls[0].params["RoleSessionName"], "ci-run-1");
        assert!(
            calls[0].access_key_id.is_none(),
            "web identity calls are unsigned"
        );
        assert_eq!(sb.sts.count("AssumeRole"), 0);
    }
}

/// A CI job where an earlier step exported keys and this step asks for OIDC on purpose: the
/// token file the user named wins over the keys in the environment, by flag and by variable.
#[test]
fn a_named_web_identity_token_wins_over_environment_keys() {
    for by_variable in [false, true] {
        let sb = Sandbox::new();
        let token = sb.write("oidc-token", "named.jwt.token");
        let mut cmd = sb.credwrap();
        if by_variable {
            cmd.env("CREDWRAP_WEB_IDENTITY_TOKEN_FILE", &token);
        } else {
            cmd.arg("--web-identity-token-file").arg(&token);
        }
        let out = support::run(cmd.args(["--", "true"]));
        ok(&out);
        let calls = calls(&sb, "AssumeRoleWithWebIdentity");
        assert_eq!(calls.len(), 1, "by variable: {by_variable}");
        assert_eq!(calls[0].params["WebIdentityToken"], "named.jwt.token");
        assert_eq!(sb.sts.count("AssumeRole"), 0, "the environment keys signed");
    }
}

#[test]
fn via_chains_roles_in_order_and_refresh_reruns_the_chain() {
    let sb = Sandbox::new();
    sb.sts.set_lifetime(Duration::from_secs(6));
    let a = "arn:aws:iam::111111111111:role/hop-a";
    let b = "arn:aws:iam::222222222222:role/hop-b";
    let child = support::start(
        sb.credwrap()
            .args(["--via", a, "--via", b, "--duration", "2h", "--tag", "k=v"])
            .args(["--", "sh", "-c", "read x; exit 0"]),
    );
    // One refresh: the whole chain again.
    wait_for_calls(&sb, "AssumeRole", 6);
    let out = child.finish();
    ok(&out);
    support::assert_stderr_has(&out, "role chaining limits a session to 1h");
    let calls = calls(&sb, "AssumeRole");
    for round in calls.chunks(3).take(2) {
        assert_eq!(round[0].params["RoleArn"], a);
        assert_eq!(round[1].params["RoleArn"], b);
        assert_eq!(round[2].params["RoleArn"], ROLE_ARN);
        assert_eq!(round[0].access_key_id.as_deref(), Some(SOURCE_KEY_ID));
        // Each hop is signed with the previous hop's key.
        assert_ne!(round[1].access_key_id.as_deref(), Some(SOURCE_KEY_ID));
        assert!(round[1]
            .access_key_id
            .as_deref()
            .unwrap()
            .starts_with("ASIAFAKEROLE"));
        assert_ne!(round[1].access_key_id, round[2].access_key_id);
        for hop in round {
            assert_eq!(hop.params["DurationSeconds"], "3600", "{hop:?}");
        }
        // Session options go with the role the child gets.
        assert!(!round[0].params.contains_key("Tags.member.1.Key"));
        assert_eq!(round[2].params["Tags.member.1.Key"], "k");
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli_definitions() {
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .env_remove("CREDWRAP_ROLE_ARN")
        .args(["--completions", "bash"]));
    ok(&out);
    assert!(out.stdout.contains("--role-arn") && out.stdout.contains("--web-identity-token-file"));
    let out = run(sb.credwrap().env_remove("CREDWRAP_ROLE_ARN").arg("--man"));
    ok(&out);
    assert!(
        out.stdout.contains(".TH credwrap") && out.stdout.contains("role\\-arn"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    assert_eq!(sb.sts.calls().len(), 0);
}

/// Without --mfa-code, credwrap asks once on the terminal, and the code typed is what STS gets.
#[test]
fn mfa_code_is_asked_on_the_terminal() {
    let sb = Sandbox::new();
    let cmd = sb.credwrap();
    let mut py = std::process::Command::new(support::python());
    py.arg(support::script("pty_answer.py"))
        .arg(cmd.get_program())
        .args([
            "--mfa-serial",
            "arn:aws:iam::111111111111:mfa/source",
            "--",
            "echo",
            "child-ran",
        ])
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env(
            "PROMPT",
            "MFA code for arn:aws:iam::111111111111:mfa/source:",
        )
        .env("ANSWER", "246810");
    let out = run(&mut py);
    assert!(
        out.stdout.contains("child-ran"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("exit=0"), "{}", out.stdout);
    let gst = calls(&sb, "GetSessionToken");
    assert_eq!(gst.len(), 1);
    assert_eq!(gst[0].params["TokenCode"], "246810");
}
