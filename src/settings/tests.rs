//! Precedence, setting by setting: a flag beats its `CREDWRAP_*` variable (clap's rule), which
//! beats the SDKs' `AWS_*` convention, which beats the profile, which beats the default.

use std::sync::Mutex;

use clap::Parser;

use super::*;

const ROLE_A: &str = "arn:aws:iam::111111111111:role/flag";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/credwrap-env";
const ROLE_C: &str = "arn:aws:iam::333333333333:role/aws-env";
const ROLE_P: &str = "arn:aws:iam::444444444444:role/profile";

/// clap reads `CREDWRAP_*` from the process environment: tests that set them take turns.
static PROCESS_ENV: Mutex<()> = Mutex::new(());

/// One run's inputs: command-line words, `CREDWRAP_*` variables (seen by clap), the rest of the
/// environment (seen by the settings steps) and the profiles.
#[derive(Default)]
struct Case<'a> {
    args: Vec<&'a str>,
    credwrap_env: Vec<(&'a str, &'a str)>,
    env: Vec<(&'a str, &'a str)>,
    profiles: Vec<(&'a str, Vec<(&'a str, &'a str)>)>,
}

impl Case<'_> {
    fn resolve(&self) -> Result<AssumePlan, String> {
        let _turn = PROCESS_ENV.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in &self.credwrap_env {
            std::env::set_var(k, v);
        }
        let mut words = vec!["credwrap"];
        words.extend(&self.args);
        words.extend(["--", "true"]);
        let cli = Cli::try_parse_from(words);
        for (k, _) in &self.credwrap_env {
            std::env::remove_var(k);
        }
        let cli = cli.map_err(|e| e.to_string())?;
        let env = Env::from_slice(&self.env);
        let pairs: Vec<(&str, &[(&str, &str)])> = self
            .profiles
            .iter()
            .map(|(name, kvs)| (*name, kvs.as_slice()))
            .collect();
        let profiles = Profiles::from_pairs(&pairs);
        let mut ask = |_: &str| Ok("123456".to_string());
        resolve(&cli, &env, &profiles, &mut ask)
            .map_err(|e| e.to_string())
            .and_then(|plan| plan.assume.ok_or_else(|| "no default role".to_string()))
    }
}

/// Where a setting can be given.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layer {
    Flag,
    CredwrapEnv,
    AwsEnv,
    Profile,
}

const LAYERS: [Layer; 4] = [
    Layer::Flag,
    Layer::CredwrapEnv,
    Layer::AwsEnv,
    Layer::Profile,
];

/// How a setting is given at each layer, and where its resolved value is read.
struct Setting {
    name: &'static str,
    flag: &'static str,
    credwrap_env: &'static str,
    /// The SDK convention's variables, when the setting has one.
    aws_env: &'static [(&'static str, &'static str)],
    profile_key: &'static str,
    /// Whether giving the profile layer also selects profile `p` (with `AWS_PROFILE`).
    profile_layer_selects: bool,
    /// The value given at each layer of [`LAYERS`] (flag, CREDWRAP_*, AWS_*, profile).
    values: [&'static str; 4],
    /// The layers from strongest to weakest.
    order: [Layer; 4],
    /// What applies when no layer gives it; `None`: nothing, a usage error.
    default: Option<&'static str>,
    read: fn(&AssumePlan) -> String,
}

/// Every subset of layers: the strongest one present must win.
fn check(s: &Setting, base: impl Fn() -> Case<'static>) {
    for mask in 0u8..16 {
        let present: Vec<Layer> = LAYERS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, l)| *l)
            .collect();
        if present.contains(&Layer::AwsEnv) && s.aws_env.is_empty() {
            continue;
        }
        let mut case = base();
        for layer in &present {
            let value = s.values[LAYERS.iter().position(|l| l == layer).unwrap_or(0)];
            match layer {
                Layer::Flag => {
                    case.args.push(s.flag);
                    case.args.push(value);
                }
                Layer::CredwrapEnv => case.credwrap_env.push((s.credwrap_env, value)),
                Layer::AwsEnv => case.env.extend(s.aws_env.iter().copied()),
                Layer::Profile => {
                    if s.profile_layer_selects {
                        case.env.push(("AWS_PROFILE", "p"));
                    }
                    let p = case
                        .profiles
                        .iter_mut()
                        .find(|(n, _)| *n == "p")
                        .expect("base case has profile p");
                    p.1.push((s.profile_key, value));
                }
            }
        }
        let winner = s.order.iter().find(|l| present.contains(l));
        let want = match winner {
            Some(l) => Some(s.values[LAYERS.iter().position(|x| x == l).unwrap_or(0)]),
            None => s.default,
        };
        match (case.resolve(), want) {
            (Ok(settings), Some(want)) => {
                assert_eq!((s.read)(&settings), want, "{}: layers {present:?}", s.name)
            }
            (Err(e), Some(_)) => panic!("{}: layers {present:?}: {e}", s.name),
            (Ok(settings), None) => panic!(
                "{}: layers {present:?}: no error, got {}",
                s.name,
                (s.read)(&settings)
            ),
            (Err(_), None) => {}
        }
    }
}

/// A profile `p` that assumes ROLE_P from source profile `base`.
fn role_profile_case() -> Case<'static> {
    Case {
        env: vec![("AWS_PROFILE", "p")],
        profiles: vec![
            ("p", vec![("role_arn", ROLE_P), ("source_profile", "base")]),
            ("base", vec![("aws_access_key_id", "AKIABASE")]),
        ],
        ..Case::default()
    }
}

#[test]
fn role_arn_precedence() {
    check(
        &Setting {
            name: "role ARN",
            flag: "--role-arn",
            credwrap_env: "CREDWRAP_ROLE_ARN",
            aws_env: &[
                ("AWS_ROLE_ARN", ROLE_C),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/dev/null"),
            ],
            profile_key: "role_arn",
            profile_layer_selects: true,
            values: [ROLE_A, ROLE_B, ROLE_C, ROLE_P],
            // A role profile wins over the SDKs' web-identity variables, as in botocore.
            order: [
                Layer::Flag,
                Layer::CredwrapEnv,
                Layer::Profile,
                Layer::AwsEnv,
            ],
            default: None,
            read: |s| s.target.role_arn.to_string(),
        },
        || Case {
            profiles: vec![
                ("p", vec![("source_profile", "base")]),
                ("base", vec![("aws_access_key_id", "AKIABASE")]),
            ],
            ..Case::default()
        },
    );
}

#[test]
fn session_name_precedence() {
    check(
        &Setting {
            name: "session name",
            flag: "--role-session-name",
            credwrap_env: "CREDWRAP_ROLE_SESSION_NAME",
            aws_env: &[("AWS_ROLE_SESSION_NAME", "aws-env")],
            profile_key: "role_session_name",
            profile_layer_selects: true,
            values: ["flag", "from-credwrap-env", "aws-env", "profile"],
            // AWS_ROLE_SESSION_NAME goes with the web-identity variables' role, which a role
            // profile replaces.
            order: [
                Layer::Flag,
                Layer::CredwrapEnv,
                Layer::Profile,
                Layer::AwsEnv,
            ],
            default: Some("default"),
            read: |s| {
                // The default carries a timestamp: compare its stable prefix.
                if s.target.session_name.starts_with("credwrap-") {
                    "default".into()
                } else {
                    s.target.session_name.clone()
                }
            },
        },
        || {
            // The role comes from the SDKs' web-identity variables unless the profile layer
            // selects the role profile.
            let mut case = role_profile_case();
            case.env = vec![
                ("USER", "tester"),
                ("AWS_ROLE_ARN", ROLE_C),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/dev/null"),
            ];
            case
        },
    );
}

#[test]
fn duration_precedence() {
    check(
        &Setting {
            name: "duration",
            flag: "--duration",
            credwrap_env: "CREDWRAP_DURATION",
            aws_env: &[],
            profile_key: "duration_seconds",
            profile_layer_selects: false,
            order: LAYERS,
            values: ["7200", "5400", "", "2700"],
            default: Some("3600"),
            read: |s| s.target.duration.as_secs().to_string(),
        },
        role_profile_case,
    );
}

#[test]
fn external_id_precedence() {
    check(
        &Setting {
            name: "external id",
            flag: "--external-id",
            credwrap_env: "CREDWRAP_EXTERNAL_ID",
            aws_env: &[],
            profile_key: "external_id",
            profile_layer_selects: false,
            order: LAYERS,
            values: ["ext-flag", "ext-env", "", "ext-profile"],
            default: Some(""),
            read: |s| s.target.options.external_id.clone().unwrap_or_default(),
        },
        role_profile_case,
    );
}

#[test]
fn mfa_serial_precedence() {
    check(
        &Setting {
            name: "MFA serial",
            flag: "--mfa-serial",
            credwrap_env: "CREDWRAP_MFA_SERIAL",
            aws_env: &[],
            profile_key: "mfa_serial",
            profile_layer_selects: false,
            order: LAYERS,
            values: [
                "arn:aws:iam::111111111111:mfa/flag",
                "arn:aws:iam::111111111111:mfa/env",
                "",
                "arn:aws:iam::111111111111:mfa/profile",
            ],
            default: Some(""),
            read: |s| s.mfa.as_ref().map(|m| m.serial.clone()).unwrap_or_default(),
        },
        role_profile_case,
    );
}

#[test]
fn profile_selection_precedence() {
    // --profile beats CREDWRAP_PROFILE beats AWS_PROFILE; each names a role profile of its own.
    let profiles = || {
        vec![
            (
                "flag",
                vec![("role_arn", ROLE_A), ("source_profile", "base")],
            ),
            (
                "env",
                vec![("role_arn", ROLE_B), ("source_profile", "base")],
            ),
            (
                "aws",
                vec![("role_arn", ROLE_C), ("source_profile", "base")],
            ),
            ("base", vec![("aws_access_key_id", "AKIABASE")]),
        ]
    };
    let rows = [
        (
            vec!["--profile", "flag"],
            vec![("CREDWRAP_PROFILE", "env")],
            ROLE_A,
        ),
        (vec![], vec![("CREDWRAP_PROFILE", "env")], ROLE_B),
        (vec![], vec![], ROLE_C),
        (vec!["--profile", "flag"], vec![], ROLE_A),
    ];
    for (args, credwrap_env, want) in rows {
        let case = Case {
            args: args.clone(),
            credwrap_env: credwrap_env.clone(),
            env: vec![("AWS_PROFILE", "aws")],
            profiles: profiles(),
        };
        let s = case.resolve().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(
            s.target.role_arn.as_str(),
            want,
            "{args:?} {credwrap_env:?}"
        );
    }
}

#[test]
fn usage_errors_name_what_to_fix() {
    let cases: Vec<(Case<'static>, &str)> = vec![
        (Case::default(), "no role to assume"),
        (
            Case {
                args: vec!["--profile", "nope"],
                ..Case::default()
            },
            "profile 'nope' (--profile nope) not found",
        ),
        (
            Case {
                args: vec!["--role-arn", ROLE_A, "--mfa-code", "123456"],
                ..Case::default()
            },
            "--mfa-code needs --mfa-serial",
        ),
        (
            Case {
                args: vec![
                    "--role-arn",
                    ROLE_A,
                    "--endpoint",
                    "imds",
                    "--duration",
                    "45m",
                ],
                ..Case::default()
            },
            "--duration must be at least 1h",
        ),
        (
            Case {
                args: vec![
                    "--role-arn",
                    ROLE_A,
                    "--tag",
                    "a=1",
                    "--transitive-tag-key",
                    "b",
                ],
                ..Case::default()
            },
            "--transitive-tag-key 'b'",
        ),
        (
            Case {
                env: vec![("AWS_PROFILE", "broken")],
                profiles: vec![("broken", vec![("role_arn", ROLE_P)])],
                ..Case::default()
            },
            "neither source_profile nor credential_source",
        ),
    ];
    for (case, message) in cases {
        let err = case.resolve().err().unwrap_or_default();
        assert!(err.contains(message), "want {message:?} in {err:?}");
    }
}

#[test]
fn the_mfa_prompt_is_asked_once_and_its_answer_checked() {
    let cli = Cli::try_parse_from([
        "credwrap",
        "--role-arn",
        ROLE_A,
        "--mfa-serial",
        "arn:aws:iam::111111111111:mfa/me",
        "--",
        "true",
    ])
    .unwrap();
    let env = Env::from_slice(&[]);
    let profiles = Profiles::default();
    let mut asked = Vec::new();
    let mut ask = |serial: &str| {
        asked.push(serial.to_string());
        Ok(" 246810\n".to_string())
    };
    let s = resolve(&cli, &env, &profiles, &mut ask).unwrap();
    assert_eq!(asked, ["arn:aws:iam::111111111111:mfa/me"]);
    assert_eq!(s.assume.unwrap().mfa.unwrap().code.expose(), "246810");
    let mut bad = |_: &str| Ok("12345".to_string());
    let err = resolve(&cli, &env, &profiles, &mut bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("6 digits"), "{err}");
    let mut none = |_: &str| Err("no terminal".to_string());
    let err = resolve(&cli, &env, &profiles, &mut none)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no terminal"), "{err}");
}

/// The profiles of the AWS CLI comparison: a role profile, its source, a profile with keys.
fn cli_profiles() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        (
            "job",
            vec![
                ("role_arn", ROLE_P),
                ("source_profile", "base"),
                ("external_id", "ext-job"),
                ("duration_seconds", "5400"),
                ("role_session_name", "job-session"),
                ("mfa_serial", "arn:aws:iam::111111111111:mfa/job"),
            ],
        ),
        (
            "base",
            vec![
                ("aws_access_key_id", "AKIABASE"),
                ("aws_secret_access_key", "s"),
            ],
        ),
        (
            "plain",
            vec![
                ("aws_access_key_id", "AKIAPLAIN"),
                ("aws_secret_access_key", "s"),
                ("mfa_serial", "arn:aws:iam::111111111111:mfa/plain"),
            ],
        ),
    ]
}

/// The source as a short word, for tables.
fn source_name(s: &AssumePlan) -> String {
    match &s.source {
        Source::Profile(p) => format!("profile:{p}"),
        Source::Environment => "env".into(),
        Source::DefaultChain => "chain".into(),
        Source::WebIdentity { token } => match token {
            TokenSource::File(_) => "web-identity".into(),
            TokenSource::Variable { .. } => "token-env".into(),
            TokenSource::Command { .. } => "token-command".into(),
            TokenSource::GitHub { .. } => "github".into(),
        },
        other => format!("{other:?}"),
    }
}

/// A web identity token file that exists, for the rows that name one.
fn token_file() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("credwrap-test-token-{}", std::process::id()));
        std::fs::write(&path, "a.b.c").unwrap();
        path.to_string_lossy().into_owned()
    })
}

/// Stands for the path of a token file that exists, made at run time.
const TOKEN: &str = "@token";
/// Stands for GitHub's two token-service variables.
const GITHUB_MARK: (&str, &str) = ("@github", "");
const GITHUB: [(&str, &str); 2] = [
    (
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "https://pipelines.actions.githubusercontent.com/x/idtoken?api-version=2.0",
    ),
    ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runtime-bearer"),
];

/// (words, CREDWRAP_* variables, environment, env keys?) -> (source, target) or an error.
type SourceRow = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
    bool,
    Result<(&'static str, &'static str), &'static str>,
);

/// The rows of [`explicit_sources_beat_environment_keys_and_implicit_ones_do_not`].
const SOURCE_ROWS: &[SourceRow] = &[
    (
        &["--profile", "job"],
        &[],
        &[],
        true,
        Ok(("profile:base", ROLE_P)),
    ),
    (
        &[],
        &[("CREDWRAP_PROFILE", "job")],
        &[],
        true,
        Ok(("profile:base", ROLE_P)),
    ),
    (
        &[],
        &[],
        &[("AWS_PROFILE", "job")],
        false,
        Ok(("profile:base", ROLE_P)),
    ),
    (
        &[],
        &[],
        &[("AWS_PROFILE", "job")],
        true,
        Err("environment keys win over it"),
    ),
    (
        &["--role-arn", ROLE_A],
        &[],
        &[("AWS_PROFILE", "job")],
        true,
        Ok(("env", ROLE_A)),
    ),
    (
        &["--profile", "plain", "--role-arn", ROLE_A],
        &[],
        &[],
        true,
        Ok(("profile:plain", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[],
        &[("AWS_PROFILE", "plain")],
        true,
        Ok(("env", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[],
        &[("AWS_PROFILE", "plain")],
        false,
        Ok(("profile:plain", ROLE_A)),
    ),
    // botocore reads AWS_DEFAULT_PROFILE before AWS_PROFILE.
    (
        &[],
        &[],
        &[("AWS_DEFAULT_PROFILE", "job"), ("AWS_PROFILE", "plain")],
        false,
        Ok(("profile:base", ROLE_P)),
    ),
    // A web identity token file named by flag or CREDWRAP_*, with environment keys.
    (
        &["--web-identity-token-file", TOKEN, "--role-arn", ROLE_A],
        &[],
        &[],
        true,
        Ok(("web-identity", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[("CREDWRAP_WEB_IDENTITY_TOKEN_FILE", TOKEN)],
        &[],
        true,
        Ok(("web-identity", ROLE_A)),
    ),
    // ... and over a role profile the environment selected, with or without keys.
    (
        &["--web-identity-token-file", TOKEN, "--role-arn", ROLE_A],
        &[],
        &[("AWS_PROFILE", "job")],
        true,
        Ok(("web-identity", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[("CREDWRAP_WEB_IDENTITY_TOKEN_FILE", TOKEN)],
        &[("AWS_PROFILE", "job")],
        false,
        Ok(("web-identity", ROLE_A)),
    ),
    // The SDKs' web-identity variables are implicit: environment keys win, as in botocore.
    (
        &["--role-arn", ROLE_A],
        &[],
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN),
            ("AWS_ROLE_ARN", ROLE_C),
        ],
        true,
        Ok(("env", ROLE_A)),
    ),
    // The other token sources, by flag and by CREDWRAP_*, with environment keys.
    (
        &[
            "--web-identity-token-env",
            "GITLAB_OIDC_TOKEN",
            "--role-arn",
            ROLE_A,
        ],
        &[],
        &[("GITLAB_OIDC_TOKEN", "a.b.c")],
        true,
        Ok(("token-env", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[("CREDWRAP_WEB_IDENTITY_TOKEN_ENV", "GITLAB_OIDC_TOKEN")],
        &[("GITLAB_OIDC_TOKEN", "a.b.c")],
        true,
        Ok(("token-env", ROLE_A)),
    ),
    (
        &[
            "--web-identity-token-command",
            "buildkite-agent oidc request-token --audience sts.amazonaws.com",
            "--role-arn",
            ROLE_A,
        ],
        &[],
        &[],
        true,
        Ok(("token-command", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[(
            "CREDWRAP_WEB_IDENTITY_TOKEN_COMMAND",
            "circleci run oidc get",
        )],
        &[],
        true,
        Ok(("token-command", ROLE_A)),
    ),
    (
        &["--web-identity-github", "--role-arn", ROLE_A],
        &[],
        &[GITHUB_MARK],
        true,
        Ok(("github", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[("CREDWRAP_WEB_IDENTITY_GITHUB", "true")],
        &[GITHUB_MARK],
        true,
        Ok(("github", ROLE_A)),
    ),
    // ... and over a profile the environment selected and the SDKs' variables.
    (
        &[
            "--web-identity-token-command",
            "buildkite-agent oidc request-token",
            "--role-arn",
            ROLE_A,
        ],
        &[],
        &[("AWS_PROFILE", "job")],
        true,
        Ok(("token-command", ROLE_A)),
    ),
    (
        &[
            "--web-identity-token-env",
            "CIRCLE_OIDC_TOKEN_V2",
            "--role-arn",
            ROLE_A,
        ],
        &[],
        &[("AWS_PROFILE", "job"), ("CIRCLE_OIDC_TOKEN_V2", "a.b.c")],
        false,
        Ok(("token-env", ROLE_A)),
    ),
    (
        &["--web-identity-github", "--role-arn", ROLE_A],
        &[],
        &[
            GITHUB_MARK,
            ("AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN),
            ("AWS_ROLE_ARN", ROLE_C),
        ],
        false,
        Ok(("github", ROLE_A)),
    ),
    // Two token sources, or a token source and a profile, contradict each other.
    (
        &[
            "--web-identity-token-file",
            TOKEN,
            "--web-identity-github",
            "--role-arn",
            ROLE_A,
        ],
        &[],
        &[GITHUB_MARK],
        false,
        Err("cannot be used with"),
    ),
    (
        &[
            "--profile",
            "plain",
            "--web-identity-github",
            "--role-arn",
            ROLE_A,
        ],
        &[],
        &[GITHUB_MARK],
        false,
        Err("both say where the credentials come from"),
    ),
    (
        &["--role-arn", ROLE_A],
        &[
            ("CREDWRAP_PROFILE", "plain"),
            (
                "CREDWRAP_WEB_IDENTITY_TOKEN_COMMAND",
                "vault read -field=token x",
            ),
        ],
        &[],
        false,
        Err("both say where the credentials come from"),
    ),
    // GitHub's token service with nothing else configured: used by itself; keys in the
    // environment (an earlier configure-aws-credentials step) are configured, and win.
    (
        &["--role-arn", ROLE_A],
        &[],
        &[GITHUB_MARK],
        false,
        Ok(("github", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[],
        &[GITHUB_MARK],
        true,
        Ok(("env", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[],
        &[GITHUB_MARK, ("AWS_PROFILE", "plain")],
        false,
        Ok(("profile:plain", ROLE_A)),
    ),
    // Container credentials (an earlier credwrap's endpoint, ECS, EKS Pod Identity) are the
    // default chain's, and win over the token service unless it is named.
    (
        &["--role-arn", ROLE_A],
        &[],
        &[
            GITHUB_MARK,
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/x"),
        ],
        false,
        Ok(("chain", ROLE_A)),
    ),
    (
        &["--role-arn", ROLE_A],
        &[],
        &[
            GITHUB_MARK,
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
        ],
        false,
        Ok(("chain", ROLE_A)),
    ),
    (
        &["--web-identity-github", "--role-arn", ROLE_A],
        &[],
        &[
            GITHUB_MARK,
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/x"),
        ],
        false,
        Ok(("github", ROLE_A)),
    ),
    // Named but not there.
    (
        &["--web-identity-github", "--role-arn", ROLE_A],
        &[],
        &[],
        false,
        Err("permissions: id-token: write"),
    ),
    (
        &["--web-identity-token-env", "NOPE", "--role-arn", ROLE_A],
        &[],
        &[],
        false,
        Err("the variable is not set"),
    ),
    (
        &[
            "--web-identity-token-command",
            "'unbalanced",
            "--role-arn",
            ROLE_A,
        ],
        &[],
        &[],
        false,
        Err("quotes do not match"),
    ),
    // Two named sources contradict each other.
    (
        &["--profile", "job", "--web-identity-token-file", TOKEN],
        &[],
        &[],
        false,
        Err("both say where the credentials come from"),
    ),
    (
        &["--role-arn", ROLE_A],
        &[
            ("CREDWRAP_PROFILE", "plain"),
            ("CREDWRAP_WEB_IDENTITY_TOKEN_FILE", TOKEN),
        ],
        &[],
        true,
        Err("both say where the credentials come from"),
    ),
];

/// `TOKEN` and `GITHUB_MARK` made real.
fn expand(
    pairs: &[(&'static str, &'static str)],
    token: &'static str,
) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for &(k, v) in pairs {
        if (k, v) == GITHUB_MARK {
            out.extend(GITHUB);
        } else {
            out.push((k, if v == TOKEN { token } else { v }));
        }
    }
    out
}

/// Every option that names where credentials come from, given by flag or by `CREDWRAP_*`, wins
/// over environment keys and over a profile the environment selected; implicit ones do not.
#[test]
fn explicit_sources_beat_environment_keys_and_implicit_ones_do_not() {
    const ENV_KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
    ];
    let token = token_file();
    for &(args, credwrap_env, env, env_keys, want) in SOURCE_ROWS {
        let args: Vec<&str> = args
            .iter()
            .map(|&a| if a == TOKEN { token } else { a })
            .collect();
        let credwrap_env = expand(credwrap_env, token);
        let mut env = expand(env, token);
        if env_keys {
            env.extend(ENV_KEYS);
        }
        let case = Case {
            args: args.clone(),
            credwrap_env: credwrap_env.clone(),
            env: env.clone(),
            profiles: cli_profiles(),
        };
        let got = case
            .resolve()
            .map(|s| (source_name(&s), s.target.role_arn.to_string()));
        match (got, want) {
            (Ok((source, target)), Ok((want_source, want_target))) => {
                assert_eq!(
                    (source.as_str(), target.as_str()),
                    (want_source, want_target),
                    "{args:?} {credwrap_env:?} {env:?}"
                )
            }
            (Err(e), Err(message)) => assert!(e.contains(message), "{args:?} {env:?}: {e}"),
            (got, want) => panic!("{args:?} {credwrap_env:?} {env:?}: got {got:?}, want {want:?}"),
        }
    }
    // With no profile named, [default] counts as the CLI's implicit profile.
    let case = Case {
        profiles: vec![
            (
                "default",
                vec![("role_arn", ROLE_P), ("source_profile", "base")],
            ),
            (
                "base",
                vec![
                    ("aws_access_key_id", "AKIABASE"),
                    ("aws_secret_access_key", "s"),
                ],
            ),
        ],
        ..Case::default()
    };
    let s = case.resolve().unwrap();
    assert_eq!(
        (source_name(&s).as_str(), s.target.role_arn.as_str()),
        ("profile:base", ROLE_P)
    );
}

#[test]
fn a_role_profiles_settings_stay_with_its_own_role() {
    let case = Case {
        args: vec![
            "--profile",
            "job",
            "--role-arn",
            ROLE_A,
            "--mfa-code",
            "123456",
        ],
        profiles: cli_profiles(),
        ..Case::default()
    };
    let s = case.resolve().unwrap();
    // job's role first, with job's settings and MFA device, then the other role from it.
    assert_eq!(s.hops.len(), 1);
    let hop = &s.hops[0];
    assert_eq!(hop.role_arn.as_str(), ROLE_P);
    assert_eq!(hop.options.external_id.as_deref(), Some("ext-job"));
    assert_eq!(hop.duration.as_secs(), 5400);
    assert_eq!(hop.session_name, "job-session");
    assert_eq!(s.mfa.unwrap().serial, "arn:aws:iam::111111111111:mfa/job");
    assert_eq!(s.target.role_arn.as_str(), ROLE_A);
    assert_eq!(s.target.options.external_id, None);
    assert_ne!(s.target.session_name, "job-session");
    // Chained: the target's session lasts at most an hour.
    assert_eq!(s.target.duration.as_secs(), 3600);

    // The profile's own role named again is just the profile's role.
    let case = Case {
        args: vec![
            "--profile",
            "job",
            "--role-arn",
            ROLE_P,
            "--mfa-code",
            "123456",
        ],
        profiles: cli_profiles(),
        ..Case::default()
    };
    let s = case.resolve().unwrap();
    assert!(s.hops.is_empty());
    assert_eq!(s.target.options.external_id.as_deref(), Some("ext-job"));

    // A profile without role_arn keeps its mfa_serial to itself, as the CLI does.
    let case = Case {
        args: vec!["--profile", "plain", "--role-arn", ROLE_A],
        profiles: cli_profiles(),
        ..Case::default()
    };
    assert!(case.resolve().unwrap().mfa.is_none());
    // AWS_PROFILE counts as --profile does for a role profile's mfa_serial.
    let case = Case {
        args: vec!["--mfa-code", "123456"],
        env: vec![("AWS_PROFILE", "job")],
        profiles: cli_profiles(),
        ..Case::default()
    };
    let s = case.resolve().unwrap();
    assert_eq!(s.mfa.unwrap().serial, "arn:aws:iam::111111111111:mfa/job");
}

#[test]
fn token_file_is_for_the_container_endpoint_only() {
    let case = Case {
        args: vec!["--role-arn", ROLE_A, "--endpoint", "imds", "--token-file"],
        ..Case::default()
    };
    let err = case.resolve().err().unwrap_or_default();
    assert!(
        err.contains("--token-file is for the container endpoint"),
        "{err}"
    );
}
