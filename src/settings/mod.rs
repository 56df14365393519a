//! Turns the command line, the environment and the AWS profiles into one validated plan of what
//! to assume and from what (ripgrep's "low args → high args" step).
//!
//! Every step is a plain function of its inputs (the parsed [`Cli`], an [`Env`], the parsed
//! [`Profiles`]), so precedence is unit-tested without touching the process. Nothing here calls
//! the network: a bad value, a missing profile or a missing MFA code is a usage error (exit 2).
//! Every rule that involves more than one option lives here, once.

mod profiles;
pub mod prompt;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use aws_types::os_shim_internal::Env;
pub use profiles::{Profile, Profiles};

use crate::cli::{usage_error, Cli, EndpointKind};
use crate::limits::{self, RoleArn, Tag};
use crate::secret::Secret;

/// Where credwrap's own source credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// aws-config's default chain, with this profile selected if any.
    DefaultChain {
        profile: Option<String>,
    },
    /// A profile's `credential_source`.
    Environment,
    Ec2InstanceMetadata,
    EcsContainer,
    /// AssumeRoleWithWebIdentity with the token in this file, re-read at every refresh.
    WebIdentity {
        token_file: PathBuf,
    },
}

/// Session options sent with the AssumeRole of the final role.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub external_id: Option<String>,
    pub tags: Vec<Tag>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    pub policy_arns: Vec<String>,
    pub policy: Option<String>,
}

/// An MFA device and the code read for it.
#[derive(Clone)]
pub struct Mfa {
    pub serial: String,
    pub code: Secret,
    pub duration: Duration,
}

impl std::fmt::Debug for Mfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mfa({}, {:?})", self.serial, self.duration)
    }
}

/// Everything the role module needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: Source,
    pub mfa: Option<Mfa>,
    /// Roles assumed in turn before the target (from --via).
    pub via: Vec<RoleArn>,
    pub role_arn: RoleArn,
    pub session_name: String,
    pub duration: Duration,
    pub options: SessionOptions,
    pub region: Option<String>,
}

/// A usage error found while resolving: printed like clap's and exits 2.
pub type UsageError = clap::Error;

fn usage(message: impl AsRef<str>) -> UsageError {
    usage_error(message.as_ref())
}

/// Asks for an MFA code for a serial; [`prompt::terminal`] in the program, a closure in tests.
pub type AskCode<'a> = &'a mut dyn FnMut(&str) -> Result<String, String>;

/// The plan for this run, from the command line, the environment and the profiles.
pub fn resolve(
    cli: &Cli,
    env: &Env,
    profiles: &Profiles,
    ask_code: AskCode<'_>,
) -> Result<Settings, UsageError> {
    let selected = selected_profile(cli, env, profiles)?;
    let plan = role_and_source(cli, env, profiles, selected)?;
    let session_name = session_name(cli, env, &plan)?;
    let duration = duration(cli, &plan)?;
    let options = session_options(cli, &plan)?;
    let mfa = mfa(cli, &plan, ask_code)?;
    Ok(Settings {
        source: plan.source,
        mfa,
        via: cli.via.clone(),
        role_arn: plan.role_arn,
        session_name,
        duration,
        options,
        region: cli.region.clone(),
    })
}

/// A non-empty environment variable.
fn var(env: &Env, key: &str) -> Option<String> {
    env.get(key).ok().filter(|v| !v.is_empty())
}

/// The profile `--profile`/`CREDWRAP_PROFILE` or `AWS_PROFILE` names, which must exist.
fn selected_profile<'p>(
    cli: &Cli,
    env: &Env,
    profiles: &'p Profiles,
) -> Result<Option<&'p Profile>, UsageError> {
    let Some(name) = cli.profile.clone().or_else(|| var(env, "AWS_PROFILE")) else {
        return Ok(None);
    };
    profiles.get(&name).map(Some).ok_or_else(|| {
        usage(format!(
            "profile '{name}' not found in the AWS config or credentials file"
        ))
    })
}

/// Which role to assume and what signs the first call.
struct RolePlan<'p> {
    role_arn: RoleArn,
    source: Source,
    /// The profile whose role this is, when its settings apply to it.
    role_profile: Option<&'p Profile>,
    /// The selected profile, whether or not it names the role.
    profile: Option<&'p Profile>,
    /// The role is assumed from another role's session: STS caps the session at 1h.
    chained: bool,
    /// The session name from `AWS_ROLE_SESSION_NAME` (the SDKs' web-identity convention).
    env_session_name: Option<String>,
}

fn role_and_source<'p>(
    cli: &Cli,
    env: &Env,
    profiles: &'p Profiles,
    profile: Option<&'p Profile>,
) -> Result<RolePlan<'p>, UsageError> {
    let mut role_arn = cli.role_arn.clone();
    let mut role_profile = None;
    let mut env_session_name = None;
    let mut chained = !cli.via.is_empty();
    let source = if let Some(p) = profile.filter(|p| p.get("role_arn").is_some()) {
        let arn = profile_role_arn(p)?;
        role_arn = role_arn.or(Some(arn));
        role_profile = Some(p);
        let source = profile_role_source(p)?;
        // A source profile that assumes a role itself makes ours a chained session.
        chained |= p
            .get("source_profile")
            .and_then(|src| profiles.get(src))
            .is_some_and(|src| src.get("role_arn").is_some());
        source
    } else if let Some(file) = &cli.web_identity_token_file {
        Source::WebIdentity {
            token_file: file.clone(),
        }
    } else if let (None, None, Some(arn), Some(file)) = (
        &role_arn,
        profile,
        var(env, "AWS_ROLE_ARN"),
        var(env, "AWS_WEB_IDENTITY_TOKEN_FILE"),
    ) {
        // The SDKs' own convention, as a CI runner or Kubernetes sets it up.
        role_arn = Some(
            arn.parse()
                .map_err(|e| usage(format!("AWS_ROLE_ARN: {e}")))?,
        );
        env_session_name =
            var(env, "AWS_ROLE_SESSION_NAME").filter(|n| limits::is_valid_session_name(n));
        Source::WebIdentity {
            token_file: PathBuf::from(file),
        }
    } else {
        Source::DefaultChain {
            profile: profile.map(|p| p.name().to_string()),
        }
    };
    let role_arn = role_arn.ok_or_else(|| {
        usage(
            "no role to assume: give --role-arn (or CREDWRAP_ROLE_ARN), or --profile naming a \
             profile with role_arn",
        )
    })?;
    if let Source::WebIdentity { token_file } = &source {
        if let Err(e) = std::fs::metadata(token_file) {
            return Err(usage(format!(
                "--web-identity-token-file: cannot read {}: {e}",
                token_file.display()
            )));
        }
    }
    Ok(RolePlan {
        role_arn,
        source,
        role_profile,
        profile,
        chained,
        env_session_name,
    })
}

fn profile_role_arn(p: &Profile) -> Result<RoleArn, UsageError> {
    p.get("role_arn")
        .unwrap_or_default()
        .parse()
        .map_err(|e| usage(format!("profile {}: role_arn: {e}", p.name())))
}

/// What signs the AssumeRole of a role profile's `role_arn`, as the AWS CLI reads the profile.
fn profile_role_source(p: &Profile) -> Result<Source, UsageError> {
    if let Some(file) = p.get("web_identity_token_file") {
        return Ok(Source::WebIdentity {
            token_file: PathBuf::from(file),
        });
    }
    if let Some(src) = p.get("source_profile") {
        return Ok(Source::DefaultChain {
            profile: Some(src.to_string()),
        });
    }
    match p.get("credential_source") {
        Some("Environment") => Ok(Source::Environment),
        Some("Ec2InstanceMetadata") => Ok(Source::Ec2InstanceMetadata),
        Some("EcsContainer") => Ok(Source::EcsContainer),
        Some(other) => Err(usage(format!(
            "profile {}: credential_source '{other}' is not Environment, Ec2InstanceMetadata \
             or EcsContainer",
            p.name()
        ))),
        None => Err(usage(format!(
            "profile {} has role_arn but neither source_profile nor credential_source",
            p.name()
        ))),
    }
}

fn session_name(cli: &Cli, env: &Env, plan: &RolePlan<'_>) -> Result<String, UsageError> {
    let from_profile = plan
        .role_profile
        .and_then(|p| p.get("role_session_name"))
        .map(str::to_string);
    match cli
        .role_session_name
        .clone()
        .or_else(|| plan.env_session_name.clone())
        .or(from_profile)
    {
        Some(n) if limits::is_valid_session_name(&n) => Ok(n),
        Some(n) => Err(usage(format!(
            "role_session_name '{n}' must be 2-64 characters of [A-Za-z0-9_+=,.@-]"
        ))),
        None => Ok(default_session_name(env, SystemTime::now())),
    }
}

fn duration(cli: &Cli, plan: &RolePlan<'_>) -> Result<Duration, UsageError> {
    let from_profile = plan.role_profile.and_then(|p| p.get("duration_seconds"));
    let mut duration = match (cli.duration, from_profile) {
        (Some(d), _) => d,
        (None, Some(secs)) => limits::session_duration(secs)
            .map_err(|e| usage(format!("profile duration_seconds: {e}")))?,
        (None, None) => limits::DEFAULT_DURATION,
    };
    if plan.chained && duration > limits::CHAINED_MAX {
        tracing::warn!(
            "role chaining limits a session to 1h: using --duration 1h instead of {}s",
            duration.as_secs()
        );
        duration = limits::CHAINED_MAX;
    }
    if cli.endpoint == EndpointKind::Imds && duration < limits::MIN_IMDS_DURATION {
        return Err(usage(
            "--duration must be at least 1h with --endpoint imds (the profile or --duration asks \
             less): IMDS clients keep using a credential past its expiry, so credwrap never \
             serves one with less than 25 minutes left",
        ));
    }
    Ok(duration)
}

fn session_options(cli: &Cli, plan: &RolePlan<'_>) -> Result<SessionOptions, UsageError> {
    let options = SessionOptions {
        external_id: cli.external_id.clone().or_else(|| {
            plan.role_profile
                .and_then(|p| p.get("external_id"))
                .map(str::to_string)
        }),
        tags: cli.tags.clone(),
        transitive_tag_keys: cli.transitive_tag_keys.clone(),
        source_identity: cli.source_identity.clone(),
        policy_arns: cli.policy_arns.clone(),
        policy: cli.policy.clone(),
    };
    if let Some(id) = &options.external_id {
        limits::external_id(id).map_err(|e| usage(format!("external_id: {e}")))?;
    }
    check_session_option_limits(&options)?;
    let web_identity = matches!(plan.source, Source::WebIdentity { .. });
    if web_identity && cli.via.is_empty() {
        let unsupported = [
            (options.external_id.is_some(), "--external-id"),
            (!options.tags.is_empty(), "--tag"),
            (
                !options.transitive_tag_keys.is_empty(),
                "--transitive-tag-key",
            ),
            (options.source_identity.is_some(), "--source-identity"),
        ];
        if let Some((_, flag)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(usage(format!(
                "{flag} cannot be sent with AssumeRoleWithWebIdentity (the token carries them); \
                 assume a further role with --via to use it"
            )));
        }
    }
    Ok(options)
}

/// STS's limits across values: how many tags and policies, and how large together.
fn check_session_option_limits(o: &SessionOptions) -> Result<(), UsageError> {
    if o.tags.len() > limits::MAX_TAGS {
        return Err(usage(format!(
            "--tag: at most {} session tags",
            limits::MAX_TAGS
        )));
    }
    let mut keys: Vec<String> = o.tags.iter().map(|t| t.key.to_lowercase()).collect();
    keys.sort();
    if let Some(dup) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(usage(format!(
            "--tag: key '{}' given twice (keys are case-insensitive)",
            dup[0]
        )));
    }
    if o.transitive_tag_keys.len() > limits::MAX_TRANSITIVE_TAG_KEYS {
        return Err(usage(format!(
            "--transitive-tag-key: at most {} keys",
            limits::MAX_TRANSITIVE_TAG_KEYS
        )));
    }
    if let Some(k) = o
        .transitive_tag_keys
        .iter()
        .find(|k| !keys.contains(&k.to_lowercase()))
    {
        return Err(usage(format!(
            "--transitive-tag-key '{k}' is not the key of a --tag"
        )));
    }
    if o.policy_arns.len() > limits::MAX_POLICY_ARNS {
        return Err(usage(format!(
            "--policy-arn: at most {} policy ARNs",
            limits::MAX_POLICY_ARNS
        )));
    }
    let policy_chars = o.policy.as_ref().map_or(0, String::len)
        + o.policy_arns.iter().map(String::len).sum::<usize>();
    if policy_chars > limits::MAX_POLICY_CHARS {
        return Err(usage(format!(
            "--policy and --policy-arn: {policy_chars} characters together; STS allows {}",
            limits::MAX_POLICY_CHARS
        )));
    }
    Ok(())
}

fn mfa(cli: &Cli, plan: &RolePlan<'_>, ask_code: AskCode<'_>) -> Result<Option<Mfa>, UsageError> {
    let serial = cli.mfa_serial.clone().or_else(|| {
        plan.profile
            .and_then(|p| p.get("mfa_serial"))
            .map(str::to_string)
    });
    let Some(serial) = serial else {
        if cli.mfa_code.is_some() {
            return Err(usage(
                "--mfa-code needs --mfa-serial (or a profile with mfa_serial)",
            ));
        }
        return Ok(None);
    };
    if matches!(plan.source, Source::WebIdentity { .. }) {
        return Err(usage("MFA and web identity cannot be combined"));
    }
    limits::mfa_serial(&serial).map_err(|e| usage(format!("mfa_serial: {e}")))?;
    let code = match &cli.mfa_code {
        Some(code) => code.clone(),
        None => ask_code(&serial).map_err(usage)?,
    };
    let code = limits::mfa_code(code.trim()).map_err(|e| usage(format!("the MFA code {e}")))?;
    Ok(Some(Mfa {
        serial,
        code: Secret::new(code),
        duration: cli.mfa_duration,
    }))
}

/// `credwrap-<who>-<unix time>`: tells a CloudTrail reader the session came from credwrap, and
/// from which CI run when there is one.
fn default_session_name(env: &Env, now: SystemTime) -> String {
    let who = var(env, "GITHUB_RUN_ID")
        .map(|id| format!("gh{id}"))
        .or_else(|| var(env, "CI_JOB_ID").map(|id| format!("gl{id}")))
        .or_else(|| var(env, "BUILDKITE_BUILD_NUMBER").map(|id| format!("bk{id}")))
        .or_else(|| var(env, "USER"))
        .or_else(|| var(env, "LOGNAME"))
        .unwrap_or_else(|| format!("pid{}", std::process::id()));
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let who: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c))
        .take(40)
        .collect();
    let name = format!("credwrap-{who}-{secs}");
    if limits::is_valid_session_name(&name) {
        name
    } else {
        format!("credwrap-{secs}")
    }
}

#[cfg(test)]
mod tests;
