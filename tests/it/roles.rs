//! Several roles in one job (`--role NAME=ARN`, `--role NAME`): the child selects one the way it
//! selects any profile, every SDK of the matrix reads it through `credential_process` (credwrap
//! itself, asking the running credwrap), and each role is assumed once per refresh for the
//! whole process tree.

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::fake_sts::ROLE_ARN;
use support::{python, run, script, Output, Sandbox};

const PROD: &str = "arn:aws:iam::123456789012:role/prod";
const DNS: &str = "arn:aws:iam::210987654321:role/dns";

/// The AssumeRole calls STS saw for `arn`.
fn assumes_of(sb: &Sandbox, arn: &str) -> usize {
    sb.sts
        .calls()
        .iter()
        .filter(|c| {
            c.action == "AssumeRole" && c.params.get("RoleArn").map(String::as_str) == Some(arn)
        })
        .count()
}

/// How many of credwrap's log lines say `what` for the named role `role`, or with `None` for
/// the default role (whose lines carry no `role{name=...}` span).
fn logged(out: &Output, role: Option<&str>, what: &str) -> usize {
    out.stderr
        .lines()
        .filter(|l| l.contains(what))
        .filter(|l| match role {
            Some(name) => l.contains(&format!("role{{name={name}}}")),
            None => !l.contains("role{name="),
        })
        .count()
}

const REFRESHED: &str = "refreshed role credentials";
const REFRESH_FAILED: &str = "refreshing role credentials failed";
const ABANDONED: &str = "refresh attempt was under way; it was abandoned";

/// How many distinct credentials issued as `issued_as` (`:assumed-role/NAME/...`) the
/// children signed GetCallerIdentity with.
fn credentials_used(sb: &Sandbox, issued_as: &str) -> usize {
    sb.sts
        .keys_used_for("GetCallerIdentity")
        .iter()
        .filter(|k| sb.sts.issued_as(k).unwrap_or_default().contains(issued_as))
        .count()
}

fn ok(out: &Output) {
    assert_eq!(
        out.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

/// Every SDK of the matrix, once as the default role and once with `AWS_PROFILE=prod`; then
/// the AWS CLI's `--profile` and boto3's `profile_name`.
#[test]
fn every_sdk_gets_the_role_its_profile_names_and_the_default_otherwise() {
    let sb = Sandbox::new();
    let matrix = script("sdk_matrix.sh");
    let by_flag = "\"$AWS_CLI\" --profile dns --endpoint-url \"$AWS_ENDPOINT_URL_STS\" sts get-caller-identity \
         --query Arn --output text | sed 's/^/cli-flag: arn=/'; \
         \"$PYTHON\" -c 'import boto3, os; s = boto3.Session(profile_name=\"prod\"); \
         print(\"boto3-session: arn=\" + s.client(\"sts\", endpoint_url=os.environ[\"AWS_ENDPOINT_URL_STS\"]).get_caller_identity()[\"Arn\"])'";
    let mut cmd = sb.credwrap();
    support::sdk_env(&mut cmd)
        .args(["--role", &format!("prod={PROD}"), "--role", &format!("dns={DNS}")])
        .args(["--role-session-name", "matrix", "--", "sh", "-c"])
        .arg(format!(
            "echo '== default'; sh {m} || exit 1; echo '== prod'; AWS_PROFILE=prod sh {m} || exit 1; \
             echo '== flags'; {by_flag}",
            m = matrix.display()
        ));
    let out = run(&mut cmd);
    ok(&out);
    let section = |name: &str| {
        let start = out.stdout.find(&format!("== {name}")).unwrap();
        let rest = &out.stdout[start + 3..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())].to_string()
    };
    for (name, want) in [
        ("default", "assumed-role/deploy/matrix"),
        ("prod", "assumed-role/prod/matrix"),
    ] {
        let text = section(name);
        for sdk in support::MATRIX {
            assert!(
                text.contains(&format!("{sdk}: arn=arn:aws:sts::"))
                    && text
                        .lines()
                        .any(|l| l.starts_with(&format!("{sdk}: arn=")) && l.ends_with(want)),
                "{name}: {sdk} is not {want}:\n{text}"
            );
        }
    }
    let flags = section("flags");
    assert!(
        flags.contains("cli-flag: arn=arn:aws:sts::210987654321:assumed-role/dns/matrix"),
        "{flags}"
    );
    assert!(
        flags.contains("boto3-session: arn=arn:aws:sts::123456789012:assumed-role/prod/matrix"),
        "{flags}"
    );
    // One first AssumeRole per role, whatever the nine SDKs asked.
    assert_eq!(
        (
            assumes_of(&sb, PROD),
            assumes_of(&sb, DNS),
            assumes_of(&sb, ROLE_ARN)
        ),
        (1, 1, 1)
    );
}

/// Three boto3 processes per role, refreshing by themselves for four lifetimes: none fails, and
/// STS sees one AssumeRole per role per refresh, not one per process.
#[test]
fn each_role_is_assumed_once_per_refresh_for_the_whole_tree() {
    let sb = Sandbox::new();
    // 12 s: the Rust SDK's margin (see refresh.rs's Rust soak).
    let (lifetime, seconds) = (12u64, 40u64);
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let soak = format!("{} {}", python().display(), script("soak.py").display());
    let out = run(sb
        .credwrap()
        .arg("-v")
        .args(["--role", &format!("prod={PROD}")])
        .env("SOAK_LIFETIME", lifetime.to_string())
        .env("SOAK_SECONDS", seconds.to_string())
        .args(["--", "sh", "-c"])
        .arg(format!(
            "for i in 1 2 3; do {soak} & p=\"$p $!\"; AWS_PROFILE=prod {soak} & p=\"$p $!\"; done; \
             s=0; for pid in $p; do wait $pid || s=1; done; exit $s"
        )));
    ok(&out);
    assert_eq!(out.stdout.matches("errors=0").count(), 6, "{}", out.stdout);
    // Every AssumeRole is a broker's: the first, then one per refresh it logged, whatever the
    // three processes of each role asked; and the refreshes kept pace with the lifetimes.
    for (arn, role) in [(PROD, Some("prod")), (ROLE_ARN, None)] {
        let (n, refreshed) = (assumes_of(&sb, arn), logged(&out, role, REFRESHED));
        let abandoned = logged(&out, role, ABANDONED);
        assert!(
            (1 + refreshed..=1 + refreshed + abandoned).contains(&n),
            "{arn}: {n} AssumeRole calls, {refreshed} refreshes, {abandoned} abandoned at exit"
        );
        assert!(
            refreshed as u64 >= seconds / lifetime - 1 && n as u64 <= 2 + 3 * seconds / lifetime,
            "{arn}: {n} AssumeRole calls in {seconds}s of {lifetime}s credentials"
        );
    }
    // Each role's processes went through several of its own credentials.
    for role in ["prod", "deploy"] {
        let used = credentials_used(&sb, &format!(":assumed-role/{role}/"));
        assert!(
            used >= 3,
            "{role}: only {used} of its credentials were used"
        );
    }
    support::assert_stderr_has(&out, "role{name=prod}");
}

/// `--role prod` serves the config's `[profile prod]` under its name: its role, source and
/// session name, and its other settings (region) kept for the child.
#[test]
fn a_profile_is_served_under_its_name_with_its_settings() {
    let sb = Sandbox::new();
    sb.write(
        ".aws/config",
        &format!(
            "[profile base]\naws_access_key_id = AKIAFAKEBASE00001\naws_secret_access_key = s\n\
             [profile prod]\nrole_arn = {PROD}\nsource_profile = base\nrole_session_name = prodsess\n\
             region = eu-west-3\n"
        ),
    );
    let out = run(sb
        .credwrap()
        .args(["--role", "prod", "--"])
        .arg(python())
        .arg("-c")
        .arg(
            "import boto3, os\n\
             # The job's own region variables would outrank any profile's, with or without credwrap.\n\
             os.environ.pop('AWS_REGION'); os.environ.pop('AWS_DEFAULT_REGION')\n\
             s = boto3.Session(profile_name='prod')\n\
             print('region=' + s.region_name)\n\
             print('arn=' + s.client('sts', endpoint_url=os.environ['AWS_ENDPOINT_URL_STS']).get_caller_identity()['Arn'])\n\
             print('config=' + open(os.environ['AWS_CONFIG_FILE']).read().replace('\\n', '|'))",
        ));
    ok(&out);
    assert!(out.stdout.contains("region=eu-west-3"), "{}", out.stdout);
    assert!(
        out.stdout.contains("assumed-role/prod/prodsess"),
        "{}",
        out.stdout
    );
    // The profile's source signed its AssumeRole; the child's config holds none of it.
    let prod_signers: Vec<_> = sb
        .sts
        .calls()
        .into_iter()
        .filter(|c| c.params.get("RoleArn").map(String::as_str) == Some(PROD))
        .filter_map(|c| c.params.get("AccessKeyId").cloned())
        .collect();
    assert!(
        prod_signers.iter().all(|k| k == "AKIAFAKEBASE00001"),
        "{prod_signers:?}"
    );
    let config = out
        .stdout
        .lines()
        .find(|l| l.starts_with("config="))
        .unwrap();
    for gone in [
        "AKIAFAKEBASE",
        "role_arn",
        "source_profile",
        "aws_secret_access_key",
    ] {
        assert!(!config.contains(gone), "{gone} reached the child: {config}");
    }
    assert!(
        config.contains("[profile prod]|credential_process = "),
        "{config}"
    );
}

/// Whole-job mode hands the same roles to processes started later.
#[test]
fn whole_job_mode_serves_the_roles_to_later_processes() {
    let sb = Sandbox::new();
    let mut cmd = sb.credwrap();
    let exports = run(cmd.args(["--role", &format!("prod={PROD}")]).args([
        "--serve",
        "--detach",
        "--max-lifetime",
        "5m",
    ]));
    ok(&exports);
    let later = run(Command::new("sh")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL_STS", sb.sts.url())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .arg("-c")
        .arg(format!(
            "{}\n AWS_PROFILE=prod {} {} && {} {}; kill \"$CREDWRAP_PID\"",
            exports.stdout,
            python().display(),
            script("whoami.py").display(),
            python().display(),
            script("whoami.py").display()
        )));
    ok(&later);
    let arns: Vec<&str> = later
        .stdout
        .lines()
        .filter(|l| l.starts_with("arn="))
        .collect();
    assert_eq!(arns.len(), 2, "{}", later.stdout);
    assert!(
        arns[0].ends_with(":assumed-role/prod/") || arns[0].contains("assumed-role/prod/"),
        "{arns:?}"
    );
    assert!(arns[1].contains("assumed-role/deploy/"), "{arns:?}");
}

/// With `--endpoint imds` for the default role, named roles still work, with a token of their
/// own in the environment.
#[test]
fn named_roles_work_beside_the_imds_endpoint() {
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .args([
            "--endpoint",
            "imds",
            "--role",
            &format!("prod={PROD}"),
            "--",
        ])
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "test -n \"$CREDWRAP_ROLES_TOKEN\" && AWS_PROFILE=prod {py} {w} && {py} {w}",
            py = python().display(),
            w = script("whoami.py").display()
        )));
    ok(&out);
    let arns: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("arn="))
        .collect();
    assert!(arns[0].contains("assumed-role/prod/"), "{arns:?}");
    assert!(arns[1].contains("assumed-role/deploy/"), "{arns:?}");
}

/// A named role's door needs the endpoint's token; a path that names no role is a plain 404,
/// and the client says in one line when its credwrap is gone.
#[test]
fn a_named_role_needs_the_secret_and_its_credwrap() {
    let sb = Sandbox::new();
    let out = run(sb
        .credwrap()
        .args(["--role", &format!("prod={PROD}"), "--", "sh", "-c"])
        .arg(
            "line=$(grep credential_process \"$AWS_CONFIG_FILE\"); uri=${line##* }; \
             echo \"uri=$uri\"; \
             AWS_CONTAINER_AUTHORIZATION_TOKEN=wrong ${line#credential_process = }; echo \"wrong=$?\"; \
             ${line#credential_process = } | grep -c SessionToken",
        ));
    ok(&out);
    support::assert_stderr_has(&out, "401: Unauthorized");
    assert!(out.stdout.contains("wrong=1"), "{}", out.stdout);
    let uri = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("uri="))
        .unwrap()
        .to_string();
    // credwrap has exited with its child: the same client now finds nobody there.
    let gone = run(Command::new(env!("CARGO_BIN_EXE_credwrap"))
        .env_clear()
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "x")
        .args(["--credential-process", &uri]));
    assert_eq!(gone.code(), Some(1));
    assert_eq!(gone.stderr.lines().count(), 1, "{}", gone.stderr);
    support::assert_stderr_has(&gone, "is gone");
}

/// Bad input is a usage error before any STS call; a role STS refuses fails before the command
/// runs, named, with STS's reason.
#[test]
fn bad_roles_fail_before_anything_runs_and_say_which() {
    let sb = Sandbox::new();
    sb.write(
        ".aws/config",
        "[profile keys]\naws_access_key_id = AKIAFAKEKEYS00001\naws_secret_access_key = s\n",
    );
    let roles_file = sb.write(
        "roles",
        "# extra roles\nprod = arn:aws:iam::123456789012:role/prod\n\nbad name\n",
    );
    for (args, says) in [
        (
            vec!["--role", "bad name=arn:aws:iam::123456789012:role/x"],
            "is not a profile name",
        ),
        (
            vec!["--role", "default=arn:aws:iam::123456789012:role/x"],
            "default is the default role",
        ),
        (
            vec!["--role", "prod=arn:aws:iam::123456789012:user/x"],
            "--role",
        ),
        (
            vec![
                "--role",
                &format!("prod={PROD}"),
                "--role",
                &format!("prod={DNS}"),
            ],
            "given twice",
        ),
        (vec!["--role", "missing"], "there is no profile missing"),
        (
            vec!["--role", "keys"],
            "are not SSO or credential_process ones that renew",
        ),
        (vec!["--roles-file", roles_file.to_str().unwrap()], "line 4"),
    ] {
        let out = run(sb.credwrap().args(&args).args(["--", "true"]));
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        support::assert_stderr_has(&out, says);
    }
    // CREDWRAP_ROLES is a comma-separated list (used when no --role is given, as for every
    // option with a variable).
    let out = run(sb
        .credwrap()
        .env(
            "CREDWRAP_ROLES",
            format!("prod={PROD}, dns={DNS},prod={DNS}"),
        )
        .args(["--", "true"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    support::assert_stderr_has(&out, "given twice");
    assert_eq!(sb.sts.calls().len(), 0, "STS was called for bad input");
    sb.sts.deny_role(DNS);
    let out = run(sb
        .credwrap()
        .args([
            "--role",
            &format!("prod={PROD}"),
            "--role",
            &format!("dns={DNS}"),
        ])
        .args(["--", "sh", "-c", "echo ran"]));
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    support::assert_stderr_has(&out, "role dns: could not");
    support::assert_stderr_has(&out, "AccessDenied");
    assert!(!out.stdout.contains("ran"), "the command ran");
}

/// The Rust SDK refreshes a named role by itself from the `Expiration` credwrap prints, for
/// four lifetimes, with no failed call (boto3's refresh is the soak above).
#[test]
fn the_rust_sdk_refreshes_a_named_role_by_itself() {
    let sb = Sandbox::new();
    // 12 s: the Rust SDK's margin (see refresh.rs's Rust soak).
    let (lifetime, seconds) = (12u64, 40u64);
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let out = run(sb
        .credwrap()
        .args(["--role", &format!("prod={PROD}")])
        .env("SOAK_LIFETIME", lifetime.to_string())
        .env("SOAK_SECONDS", seconds.to_string())
        .args(["--", "env", "AWS_PROFILE=prod"])
        .arg(support::rust_child()));
    ok(&out);
    assert!(out.stdout.contains("errors=0"), "{}", out.stdout);
    let keys = sb.sts.keys_used_for("GetCallerIdentity");
    assert!(keys.len() >= 3, "the Rust SDK used {keys:?}");
    assert_eq!(
        credentials_used(&sb, ":assumed-role/prod/"),
        keys.len(),
        "a credential that was not the named role's was used"
    );
}

/// docs/roles.md's Terraform recipe: its configuration as written, and its credwrap line with a
/// stand-in for `terraform` that does what the AWS provider does for each provider block (the
/// Go SDK v2 with the block's shared-config profile).
#[test]
fn the_terraform_recipe_gives_each_provider_its_role() {
    let sb = Sandbox::new();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("main.tf"),
        support::doc_recipe("terraform-two-providers-config"),
    )
    .unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let terraform = bin.join("terraform");
    std::fs::write(
        &terraform,
        format!(
            "#!/bin/sh\n\
             sed -n 's/^ *profile *= *\"\\(.*\\)\"/\\1/p' main.tf | while read -r p; do\n\
               printf '%s ' \"$p\"; AWS_PROFILE=$p {go} | grep '^arn=' || exit 1\n\
             done\n",
            go = support::installed(".deps/go/whoami").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&terraform, std::fs::Permissions::from_mode(0o755)).unwrap();
    let line = support::credwrap_line(&support::doc_recipe("terraform-two-providers"));
    let mut cmd = sb.shell(&line);
    let path = format!(
        "{}:{}",
        bin.display(),
        support::path_with_credwrap().to_string_lossy()
    );
    let out = run(cmd.current_dir(work.path()).env("PATH", path));
    ok(&out);
    assert!(
        out.stdout
            .contains("workload arn=arn:aws:sts::123456789012:assumed-role/workload/"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("dns arn=arn:aws:sts::210987654321:assumed-role/dns/"),
        "{}",
        out.stdout
    );
}

/// docs/roles.md's read-here-write-there recipe: its job as written, run by its credwrap line.
#[test]
fn the_read_here_write_there_recipe_reads_and_writes_as_two_roles() {
    let sb = Sandbox::new();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("job.py"),
        support::doc_recipe("read-here-write-there-job"),
    )
    .unwrap();
    let line = support::credwrap_line(&support::doc_recipe("read-here-write-there"));
    // `python` is the test venv's, as a job's would be its own.
    let venv_bin = python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        support::path_with_credwrap().to_string_lossy()
    );
    let out = run(sb.shell(&line).current_dir(work.path()).env("PATH", path));
    ok(&out);
    assert!(
        out.stdout
            .contains("reading as arn:aws:sts::123456789012:assumed-role/reader/"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("writing as arn:aws:sts::210987654321:assumed-role/archive-writer/"),
        "{}",
        out.stdout
    );
}

/// `[profile vault]`, whose `credential_process` is the executable script `helper`.
fn vault_profile(sb: &Sandbox, helper: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.write(
        ".aws/config",
        &format!(
            "[profile vault]\ncredential_process = {}\n",
            helper.display()
        ),
    );
}

/// `--role vault` for a profile with no role_arn whose `credential_process` renews (as
/// aws-vault's or a secrets manager's does): its own credentials are served under its name,
/// the process is run once per refresh for the whole tree, not per client, and the child's
/// config holds none of it.
#[test]
fn a_credential_process_profile_is_served_as_it_is_and_refreshed() {
    let sb = Sandbox::new();
    // A Python helper that imports boto3 takes a second or more on a loaded machine: lifetimes
    // of 12 s leave it room.
    let (lifetime, seconds) = (12u64, 36u64);
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let helper = sb.write(
        "vault.py",
        &format!(
            "#!{}\nimport boto3, json, os\n\
             open(os.environ['VAULT_COUNT'], 'a').write('run\\n')\n\
             c = boto3.client('sts', region_name='us-east-1').assume_role(RoleArn='{PROD}', RoleSessionName='vault')['Credentials']\n\
             print(json.dumps({{'Version': 1, 'AccessKeyId': c['AccessKeyId'], \
             'SecretAccessKey': c['SecretAccessKey'], 'SessionToken': c['SessionToken'], \
             'Expiration': c['Expiration'].strftime('%Y-%m-%dT%H:%M:%SZ')}}))\n",
            python().display()
        ),
    );
    vault_profile(&sb, &helper);
    let count = sb.path("count");
    let soak = format!("{} {}", python().display(), script("soak.py").display());
    let out = run(sb
        .credwrap()
        .arg("-v")
        .args(["--role", "vault"])
        .env("VAULT_COUNT", &count)
        .env("SOAK_LIFETIME", lifetime.to_string())
        .env("SOAK_SECONDS", seconds.to_string())
        .args(["--", "sh", "-c"])
        .arg(format!(
            "grep -c vault.py \"$AWS_CONFIG_FILE\"; \
             AWS_PROFILE=vault {soak} & a=$!; AWS_PROFILE=vault {soak} & b=$!; \
             wait $a && wait $b"
        )));
    ok(&out);
    assert!(
        out.stdout.starts_with("0\n"),
        "the helper reached the child's config: {}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("errors=0").count(), 2, "{}", out.stdout);
    let runs = std::fs::read_to_string(&count).unwrap().lines().count();
    let refreshes = logged(&out, Some("vault"), REFRESHED);
    let failed = logged(&out, Some("vault"), REFRESH_FAILED);
    // The child may end while a refresh is under way: credwrap says it abandoned it, and that
    // attempt may or may not have got as far as the helper.
    let abandoned = logged(&out, Some("vault"), ABANDONED);
    let accounted = 1 + refreshes + failed;
    assert!(
        (accounted..=accounted + abandoned).contains(&runs),
        "{runs} runs of the helper, {refreshes} refreshes, {failed} failed, {abandoned} abandoned"
    );
    assert!(
        refreshes as u64 >= seconds / lifetime - 1,
        "{refreshes} refreshes"
    );
    let vault_keys = credentials_used(&sb, ":assumed-role/prod/vault");
    assert!(
        vault_keys >= 3,
        "the children used {vault_keys} of the helper's credentials"
    );
}

/// The command ends while a refresh is running the profile's `credential_process`: credwrap
/// exits with the command at once, not after the helper, and says the attempt was abandoned.
#[test]
fn a_refresh_under_way_when_the_command_ends_is_said_to_be_abandoned() {
    let sb = Sandbox::new();
    let count = sb.path("count");
    // The first run's credentials are due for refresh within seconds; the second run hangs.
    let helper = sb.write(
        "vault.sh",
        r#"#!/bin/sh
echo run >> "$VAULT_COUNT"
[ "$(wc -l < "$VAULT_COUNT")" -ge 2 ] && exec sleep 30
printf '{"Version": 1, "AccessKeyId": "ASIAVAULT", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": "%s"}\n' \
    "$(date -u -d @$(( $(date +%s) + 8 )) +%Y-%m-%dT%H:%M:%SZ)"
"#,
    );
    vault_profile(&sb, &helper);
    let started = std::time::Instant::now();
    let out = run(sb
        .credwrap()
        .arg("-v")
        .args(["--role", "vault"])
        .env("VAULT_COUNT", &count)
        .args(["--", "sh", "-c"])
        // Ends as soon as the refresh has started the helper a second time.
        .arg(r#"until [ "$(wc -l < "$VAULT_COUNT")" -ge 2 ]; do sleep 0.05; done"#));
    ok(&out);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "credwrap waited for the helper"
    );
    assert_eq!(
        (
            logged(&out, Some("vault"), REFRESHED),
            logged(&out, Some("vault"), REFRESH_FAILED),
            logged(&out, Some("vault"), ABANDONED),
        ),
        (0, 0, 1),
        "{}",
        out.stderr
    );
}

/// A job of named roles only: each is selected by its profile, and a process that selects none
/// gets no credentials from credwrap at all (its SDK says it found none), not someone's role.
#[test]
fn a_job_of_named_roles_only_gives_nothing_to_a_process_that_selects_none() {
    let sb = Sandbox::new();
    let whoami = format!("{} {}", python().display(), script("whoami.py").display());
    let creds = format!(
        "{} -c 'import boto3; print(\"creds=%s\" % boto3.Session().get_credentials())'",
        python().display()
    );
    let out = run(sb
        .credwrap()
        .env_remove("CREDWRAP_ROLE_ARN")
        .args(["--role", &format!("prod={PROD}"), "--", "sh", "-c"])
        .arg(format!(
            "echo \"uri=$AWS_CONTAINER_CREDENTIALS_FULL_URI\"; AWS_PROFILE=prod {whoami} && {creds}"
        )));
    ok(&out);
    assert!(out.stdout.contains("uri=\n"), "{}", out.stdout);
    assert!(out.stdout.contains("assumed-role/prod/"), "{}", out.stdout);
    assert!(out.stdout.contains("creds=None"), "{}", out.stdout);
    for (args, says) in [
        (
            vec!["--endpoint", "imds"],
            "--endpoint imds serves the default role",
        ),
        (vec!["--via", PROD], "--via chains to the default role"),
    ] {
        let out = run(sb
            .credwrap()
            .env_remove("CREDWRAP_ROLE_ARN")
            .args(["--role", &format!("prod={PROD}")])
            .args(&args)
            .args(["--", "true"]));
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        support::assert_stderr_has(&out, says);
    }
}

/// The AWS CLI, JS v3 and Go v2 select the named role by profile in a process per call, as a
/// job's tools run, for three lifetimes side by side: 0 failed calls, and still one AssumeRole
/// per refresh (boto3 and Rust refresh in one process: the soaks above).
#[test]
fn the_cli_js_and_go_select_a_named_role_for_three_lifetimes() {
    let sb = Sandbox::new();
    let (lifetime, seconds) = (6u64, 18u64);
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let step = script("ci_step.sh");
    let mut cmd = sb.credwrap();
    support::sdk_env(&mut cmd)
        .arg("-v")
        .args(["--role", &format!("prod={PROD}"), "--", "sh", "-c"])
        .arg(format!(
            "for sdk in awscli js go; do AWS_PROFILE=prod WANT_ROLE=prod sh {step} $sdk {seconds} & \
             p=\"$p $!\"; done; s=0; for pid in $p; do wait $pid || s=1; done; exit $s",
            step = step.display()
        ));
    let out = run(&mut cmd);
    ok(&out);
    for sdk in ["awscli", "js", "go"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("sdk={sdk} ")))
            .unwrap_or_else(|| panic!("{sdk}: {}", out.stdout));
        assert!(line.ends_with(" errors=0"), "{line}\n{}", out.stderr);
        let calls: usize = line
            .split("calls=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(calls >= 3, "{line}");
    }
    let refreshed = logged(&out, Some("prod"), REFRESHED);
    assert!(refreshed >= 2, "{refreshed} refreshes in {seconds}s");
    let (n, abandoned) = (assumes_of(&sb, PROD), logged(&out, Some("prod"), ABANDONED));
    assert!(
        (1 + refreshed..=1 + refreshed + abandoned).contains(&n),
        "{n} AssumeRole calls, {refreshed} refreshes, {abandoned} abandoned at exit"
    );
}

/// A named role whose refresh fails mid-job keeps serving what it holds while that lasts, and
/// the other role goes on refreshing, untouched.
#[test]
fn a_failing_role_disturbs_no_other() {
    let sb = Sandbox::new();
    let lifetime = 8u64;
    sb.sts.set_lifetime(Duration::from_secs(lifetime));
    let run_ = support::start(
        sb.credwrap()
            .arg("-v")
            .args([
                "--role",
                &format!("prod={PROD}"),
                "--role",
                &format!("dns={DNS}"),
            ])
            .env("SOAK_LIFETIME", lifetime.to_string())
            .env("SOAK_SECONDS", (3 * lifetime).to_string())
            .args(["--", "env", "AWS_PROFILE=prod"])
            .arg(python())
            .arg(script("soak.py")),
    );
    run_.line_until("ready", |l| l == "ready");
    sb.sts.deny_role(DNS);
    run_.log_until("dns failing", |l| {
        l.contains("role{name=dns}") && l.contains("refreshing role credentials failed")
    });
    let out = run_.finish();
    ok(&out);
    assert!(out.stdout.contains("errors=0"), "{}", out.stdout);
    let prod_refreshes = logged(&out, Some("prod"), REFRESHED);
    assert!(
        prod_refreshes >= 2,
        "prod stopped refreshing: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("role{name=dns}") && l.contains("AccessDenied")),
        "{}",
        out.stderr
    );
}

/// Two profiles with the same MFA device: one code, one MFA session (GetSessionToken), both
/// roles assumed from it.
#[test]
fn one_mfa_code_and_session_serve_every_role_that_needs_it() {
    let sb = Sandbox::new();
    let serial = "arn:aws:iam::111111111111:mfa/me";
    sb.write(
        ".aws/config",
        &format!(
            "[profile prod]\nrole_arn = {PROD}\ncredential_source = Environment\nmfa_serial = {serial}\n\
             [profile dns]\nrole_arn = {DNS}\ncredential_source = Environment\nmfa_serial = {serial}\n"
        ),
    );
    let out = run(sb
        .credwrap()
        .args(["--mfa-serial", serial, "--mfa-code", "123456"])
        .args(["--role", "prod", "--role", "dns", "--", "true"]));
    ok(&out);
    assert_eq!(
        sb.sts.count("GetSessionToken"),
        1,
        "{:?}",
        sb.sts.calls().iter().map(|c| &c.action).collect::<Vec<_>>()
    );
    assert_eq!((assumes_of(&sb, PROD), assumes_of(&sb, DNS)), (1, 1));
    // Both roles were assumed with the MFA session's keys, not the source's.
    let mfa_keys: Vec<_> = sb
        .sts
        .calls()
        .into_iter()
        .filter(|c| {
            c.action == "AssumeRole"
                && c.params.get("RoleArn").map(String::as_str) != Some(ROLE_ARN)
        })
        .filter_map(|c| c.access_key_id)
        .collect();
    assert_eq!(mfa_keys.len(), 2);
    assert!(
        mfa_keys
            .iter()
            .all(|k| k != support::fake_sts::SOURCE_KEY_ID),
        "{mfa_keys:?}"
    );
}
