//! Which profile is selected, what signs the first STS call, and which roles are assumed in
//! turn: the AWS CLI's credential precedence (botocore's `create_credential_resolver`).
//!
//! - `--profile` (or `CREDWRAP_PROFILE`) is an explicit choice: environment keys and the SDKs'
//!   web-identity variables are skipped, as `aws --profile` skips them.
//! - `AWS_DEFAULT_PROFILE`, `AWS_PROFILE` or an existing `[default]` is an implicit one:
//!   `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` win over it, and then its credential settings
//!   (`role_arn` and the rest) are not used.
//! - A role profile's `role_arn`, `external_id`, `duration_seconds`, `role_session_name` and
//!   `mfa_serial` belong to that role. With `--role-arn` naming another role, the profile's role
//!   is assumed first, with its settings, and the other role from it (`aws --profile job sts
//!   assume-role --role-arn other` does the same).

use std::path::PathBuf;

use super::{usage, var, Env, Profile, Profiles, Source, StaticKeys, TokenSource, UsageError};
use crate::settings::cli::Cli;
use crate::settings::limits::RoleArn;
use crate::sys::secret::Secret;

/// The selected profile and how it was chosen.
pub struct Selection<'p> {
    pub profile: Option<&'p Profile>,
    /// `--profile`/`CREDWRAP_PROFILE`, not an environment variable or `[default]`.
    pub explicit: bool,
    /// How the user named it, for messages.
    pub named_by: String,
}

/// The profile `--profile` (or `CREDWRAP_PROFILE`), `AWS_DEFAULT_PROFILE`, `AWS_PROFILE` names
/// (which must exist, as the CLI insists), else `[default]` if there is one.
pub fn select_profile<'p>(
    cli: &Cli,
    env: &Env,
    profiles: &'p Profiles,
) -> Result<Selection<'p>, UsageError> {
    let named = match &cli.profile {
        Some(name) => Some((name.clone(), format!("--profile {name}"), true)),
        None => ["AWS_DEFAULT_PROFILE", "AWS_PROFILE"]
            .iter()
            .find_map(|k| var(env, k).map(|name| (name.clone(), format!("{k}={name}"), false))),
    };
    let Some((name, named_by, explicit)) = named else {
        return Ok(Selection {
            profile: profiles.get("default"),
            explicit: false,
            named_by: "the [default] profile".into(),
        });
    };
    let profile = profiles.get(&name).ok_or_else(|| {
        usage(format!(
            "profile '{name}' ({named_by}) not found in the AWS config or credentials file"
        ))
    })?;
    Ok(Selection {
        profile: Some(profile),
        explicit,
        named_by,
    })
}

/// A role to assume, and whose settings go with it.
pub struct RoleToAssume<'p> {
    pub arn: RoleArn,
    /// The role profile this role comes from: its external_id, duration_seconds and
    /// role_session_name apply.
    pub profile: Option<&'p Profile>,
    /// `AWS_ROLE_SESSION_NAME`, for the role of the SDKs' web-identity variables.
    pub env_session_name: Option<String>,
}

/// What signs the first call, the roles before `--via` (a profile's role, the web-identity
/// role), and the target.
pub struct Choice<'p> {
    pub source: Source,
    /// Assumed first, before the `--via` hops.
    pub leading: Option<RoleToAssume<'p>>,
    pub target: RoleToAssume<'p>,
    /// The source itself is a role session (a `source_profile` that assumes a role).
    pub source_is_role: bool,
    /// The selected profile, whether or not its settings apply (its region still does).
    pub selection: Selection<'p>,
}

/// What the first call is signed with, the role assumed before `--via` (if any), the target,
/// and whether the source is itself a role session.
struct Chain<'p> {
    source: Source,
    leading: Option<RoleToAssume<'p>>,
    target: RoleToAssume<'p>,
    source_is_role: bool,
}

impl<'p> Chain<'p> {
    /// `role` comes from `source`; with `--role-arn` naming another role, it is assumed first
    /// and the other one from it.
    fn to(source: Source, role: RoleToAssume<'p>, cli: &Cli, source_is_role: bool) -> Chain<'p> {
        match &cli.role_arn {
            Some(target) if *target != role.arn => Chain {
                source,
                leading: Some(role),
                target: plain(target.clone()),
                source_is_role,
            },
            _ => Chain {
                source,
                leading: None,
                target: role,
                source_is_role,
            },
        }
    }
}

fn plain<'p>(arn: RoleArn) -> RoleToAssume<'p> {
    RoleToAssume {
        arn,
        profile: None,
        env_session_name: None,
    }
}

/// How a missing default role is said, so that a job of named roles only can tell it apart.
pub const NO_ROLE: &str = "no role to assume";

fn target(cli: &Cli) -> Result<RoleArn, UsageError> {
    cli.role_arn.clone().ok_or_else(|| {
        usage(
            "no role to assume: give --role-arn (or CREDWRAP_ROLE_ARN), or --profile naming a \
             profile with role_arn",
        )
    })
}

/// The AWS CLI's order, after what the user named: a source named by a flag or `CREDWRAP_*`
/// (`--profile`, a web identity token source) beats everything the environment happens to
/// hold; then environment keys, the selected profile's role, the SDKs' web-identity
/// variables, the profile's own credentials, and, with nothing else at all, GitHub Actions'
/// token service or the default chain.
pub fn choose<'p>(
    cli: &Cli,
    env: &Env,
    profiles: &'p Profiles,
    selection: Selection<'p>,
) -> Result<Choice<'p>, UsageError> {
    let role_profile = selection.profile.filter(|p| p.get("role_arn").is_some());
    let web_identity_env = var(env, "AWS_WEB_IDENTITY_TOKEN_FILE").filter(|_| !selection.explicit);
    let chain = if let Some(token) = named_token_source(cli, env)? {
        explicit_web_identity(cli, &selection, role_profile, token)?
    } else if var(env, "AWS_ACCESS_KEY_ID").is_some() && !selection.explicit {
        environment_keys(cli, &selection, role_profile)?
    } else if let Some(p) = role_profile {
        from_role_profile(cli, p, profiles)?
    } else if let Some(file) = web_identity_env {
        from_web_identity_env(cli, env, file)?
    } else if let (None, None, Some(github)) = (
        selection.profile,
        container_credentials(env),
        github_actions(cli, env),
    ) {
        tracing::info!(
            "GitHub Actions' OIDC token service is there (the job has `permissions: id-token: \
             write`) and nothing else says where credentials come from: assuming the role with \
             AssumeRoleWithWebIdentity and a fresh token at every refresh"
        );
        Chain::to(
            Source::WebIdentity { token: github },
            plain(target(cli)?),
            cli,
            false,
        )
    } else {
        from_profile_or_default_chain(cli, &selection)?
    };
    if let Source::WebIdentity {
        token: TokenSource::File(token_file),
    } = &chain.source
    {
        if let Err(e) = std::fs::metadata(token_file) {
            return Err(usage(format!(
                "the web identity token file {} cannot be read: {e}",
                token_file.display()
            )));
        }
    }
    Ok(Choice {
        source: chain.source,
        leading: chain.leading,
        target: chain.target,
        source_is_role: chain.source_is_role,
        selection,
    })
}

/// The token source a flag or `CREDWRAP_*` named, if any (clap allows one at most).
fn named_token_source(cli: &Cli, env: &Env) -> Result<Option<TokenSource>, UsageError> {
    if let Some(file) = &cli.web_identity_token_file {
        return Ok(Some(TokenSource::File(file.clone())));
    }
    if let Some(name) = &cli.web_identity_token_env {
        let token = var(env, name).ok_or_else(|| {
            usage(format!(
                "--web-identity-token-env {name}: the variable is not set (GitLab sets it from \
                 the job's `id_tokens:` entry of that name)"
            ))
        })?;
        return Ok(Some(TokenSource::Variable {
            name: name.clone(),
            token: Secret::new(token),
        }));
    }
    if let Some(line) = &cli.web_identity_token_command {
        let argv = shlex::split(line)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| {
                usage(format!(
                    "--web-identity-token-command: `{line}` is empty or its quotes do not match"
                ))
            })?;
        return Ok(Some(TokenSource::Command {
            line: line.clone(),
            argv,
            timeout: cli.web_identity_token_timeout,
        }));
    }
    if cli.web_identity_github {
        return github_actions(cli, env).map(Some).ok_or_else(|| {
            usage(
                "--web-identity-github: ACTIONS_ID_TOKEN_REQUEST_URL and \
                 ACTIONS_ID_TOKEN_REQUEST_TOKEN are not both set: give the job \
                 `permissions: id-token: write` (and `contents: read`)",
            )
        });
    }
    Ok(None)
}

/// The SDKs' container credentials variable, when set: a credential source the default chain
/// uses (an earlier credwrap's endpoint, ECS, EKS Pod Identity), so GitHub's token service is
/// not used in its place unless named.
fn container_credentials(env: &Env) -> Option<String> {
    let name = [
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ]
    .into_iter()
    .find(|n| var(env, n).is_some())?;
    if github_actions_env(env) {
        tracing::info!(
            "{name} is set: its container credentials are the source, as for the AWS CLI \
             (--web-identity-github to use the job's OIDC token instead)"
        );
    }
    Some(name.to_string())
}

fn github_actions_env(env: &Env) -> bool {
    var(env, "ACTIONS_ID_TOKEN_REQUEST_URL").is_some()
        && var(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN").is_some()
}

/// GitHub Actions' token service, when the job may use it.
fn github_actions(cli: &Cli, env: &Env) -> Option<TokenSource> {
    let url = var(env, "ACTIONS_ID_TOKEN_REQUEST_URL")?;
    let bearer = var(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN")?;
    Some(TokenSource::GitHub {
        url,
        bearer: Secret::new(bearer),
        audience: cli.web_identity_audience.clone(),
        timeout: cli.web_identity_token_timeout,
        start_retry: cli.web_identity_token_retry,
    })
}

/// A web identity token source the user named (flag or `CREDWRAP_*`) wins over environment keys
/// and over a profile the environment selected, whose region and settings for the SDK still
/// apply. An explicit `--profile` names a source too: two named sources are a contradiction,
/// not a precedence question.
fn explicit_web_identity<'p>(
    cli: &Cli,
    selection: &Selection<'p>,
    role_profile: Option<&'p Profile>,
    token: TokenSource,
) -> Result<Chain<'p>, UsageError> {
    if selection.explicit {
        let what = if role_profile.is_some() {
            "a profile with role_arn"
        } else {
            "a profile whose credentials would sign"
        };
        return Err(usage(format!(
            "a web identity token ({}) and {} ({what}) both say where the credentials come \
             from: give one",
            token_flag(&token),
            selection.named_by
        )));
    }
    Ok(Chain::to(
        Source::WebIdentity { token },
        plain(target(cli)?),
        cli,
        false,
    ))
}

/// The flag that names a token source, for messages.
fn token_flag(token: &TokenSource) -> &'static str {
    match token {
        TokenSource::File(_) => "--web-identity-token-file",
        TokenSource::Variable { .. } => "--web-identity-token-env",
        TokenSource::Command { .. } => "--web-identity-token-command",
        TokenSource::GitHub { .. } => "--web-identity-github",
    }
}

/// Environment keys win over an implicitly selected profile, as in the AWS CLI.
fn environment_keys<'p>(
    cli: &Cli,
    selection: &Selection<'p>,
    role_profile: Option<&'p Profile>,
) -> Result<Chain<'p>, UsageError> {
    if let (Some(p), None) = (role_profile, &cli.role_arn) {
        return Err(usage(format!(
            "{} names a role profile, but AWS_ACCESS_KEY_ID is set and, as in the AWS CLI, \
             environment keys win over it: pass --profile {} to assume its role from its \
             source, or --role-arn to assume a role with the environment keys",
            selection.named_by,
            p.name()
        )));
    }
    if role_profile.is_some() {
        tracing::info!(
            "{} has role_arn, but AWS_ACCESS_KEY_ID is set: the environment keys are the \
             source, as in the AWS CLI",
            selection.named_by
        );
    }
    Ok(Chain::to(
        Source::Environment,
        plain(target(cli)?),
        cli,
        false,
    ))
}

/// The selected profile's role, with its settings, from its source.
fn from_role_profile<'p>(
    cli: &Cli,
    p: &'p Profile,
    profiles: &'p Profiles,
) -> Result<Chain<'p>, UsageError> {
    let (source, source_is_role) = profile_role_source(p, profiles)?;
    let role = RoleToAssume {
        arn: profile_role_arn(p)?,
        profile: Some(p),
        env_session_name: None,
    };
    Ok(Chain::to(source, role, cli, source_is_role))
}

/// The SDKs' own variables, as a CI runner or Kubernetes sets them; they come after a role
/// profile and before a profile's keys in the AWS CLI's order.
fn from_web_identity_env<'p>(
    cli: &Cli,
    env: &Env,
    token_file: String,
) -> Result<Chain<'p>, UsageError> {
    let arn: RoleArn = var(env, "AWS_ROLE_ARN")
        .ok_or_else(|| usage("AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN"))?
        .parse()
        .map_err(|e| usage(format!("AWS_ROLE_ARN: {e}")))?;
    let role = RoleToAssume {
        arn,
        profile: None,
        env_session_name: var(env, "AWS_ROLE_SESSION_NAME")
            .filter(|n| crate::settings::limits::is_valid_session_name(n)),
    };
    let source = Source::WebIdentity {
        token: TokenSource::File(PathBuf::from(token_file)),
    };
    Ok(Chain::to(source, role, cli, false))
}

/// The selected profile's own credentials (keys, SSO, a process), or the default chain.
fn from_profile_or_default_chain<'p>(
    cli: &Cli,
    selection: &Selection<'p>,
) -> Result<Chain<'p>, UsageError> {
    let source = match selection.profile {
        Some(p) => Source::Profile(p.name().to_string()),
        None => Source::DefaultChain,
    };
    if let Some(serial) = selection.profile.and_then(|p| p.get("mfa_serial")) {
        tracing::warn!(
            "{} has mfa_serial {serial} but no role_arn: as in the AWS CLI, mfa_serial applies \
             only to the profile's own role; pass --mfa-serial to use it for --role-arn",
            selection.named_by
        );
    }
    Ok(Chain::to(source, plain(target(cli)?), cli, false))
}

fn profile_role_arn(p: &Profile) -> Result<RoleArn, UsageError> {
    p.get("role_arn")
        .unwrap_or_default()
        .parse()
        .map_err(|e| usage(format!("profile {}: role_arn: {e}", p.name())))
}

/// What signs the AssumeRole of a role profile's `role_arn`, as the AWS CLI reads the profile,
/// and whether that is itself a role session.
fn profile_role_source(p: &Profile, profiles: &Profiles) -> Result<(Source, bool), UsageError> {
    if let Some(file) = p.get("web_identity_token_file") {
        let token = TokenSource::File(PathBuf::from(file));
        return Ok((Source::WebIdentity { token }, false));
    }
    if let Some(src) = p.get("source_profile") {
        if src == p.name() {
            // A profile that is its own source: its static keys sign the AssumeRole.
            return Ok((Source::ProfileKeys(static_keys(p)?), false));
        }
        let source = profiles.get(src).ok_or_else(|| {
            usage(format!(
                "profile {}: source_profile '{src}' not found in the AWS config or credentials file",
                p.name()
            ))
        })?;
        let is_role = source.get("role_arn").is_some();
        return Ok((Source::Profile(src.to_string()), is_role));
    }
    let source = match p.get("credential_source") {
        Some("Environment") => Source::Environment,
        Some("Ec2InstanceMetadata") => Source::Ec2InstanceMetadata,
        Some("EcsContainer") => Source::EcsContainer,
        Some(other) => {
            return Err(usage(format!(
                "profile {}: credential_source '{other}' is not Environment, Ec2InstanceMetadata \
                 or EcsContainer",
                p.name()
            )))
        }
        None => {
            return Err(usage(format!(
                "profile {} has role_arn but neither source_profile nor credential_source",
                p.name()
            )))
        }
    };
    Ok((source, false))
}

fn static_keys(p: &Profile) -> Result<StaticKeys, UsageError> {
    match (p.get("aws_access_key_id"), p.get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(StaticKeys {
            access_key_id: id.to_string(),
            secret_access_key: Secret::new(secret),
            session_token: p.get("aws_session_token").map(Secret::new),
        }),
        _ => Err(usage(format!(
            "profile {} is its own source_profile but has no aws_access_key_id and \
             aws_secret_access_key",
            p.name()
        ))),
    }
}
