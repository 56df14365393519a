//! Turns the command line, the selected AWS profile and the SDK's environment conventions into
//! one validated plan of what to assume and from what. Everything here happens before any
//! network call: a bad value, a missing profile or a missing MFA code is a usage error (exit 2).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::EnvConfigFiles as ProfileFiles;
use aws_types::os_shim_internal::{Env, Fs};

use crate::cli::{self, Cli, EndpointKind, RoleArn, Tag};

/// Chained role sessions last at most an hour: STS's rule for role chaining.
pub const CHAINED_MAX: Duration = Duration::from_secs(3600);
const DEFAULT_DURATION: Duration = Duration::from_secs(3600);

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
    pub code: crate::secret::Secret,
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

fn usage(message: String) -> UsageError {
    cli::usage_error(clap::error::ErrorKind::ValueValidation, &message)
}

pub async fn resolve(cli: &Cli) -> Result<Settings, UsageError> {
    let env_var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let profile_name = cli.profile.clone().or_else(|| env_var("AWS_PROFILE"));
    let profiles = match &profile_name {
        Some(name) => Some(load_profiles(name).await?),
        None => None,
    };
    let profile = |key: &str| -> Option<String> {
        let set = profiles.as_ref()?;
        set.get_profile(set.selected_profile())?
            .get(key)
            .map(str::to_string)
    };

    let mut chained = !cli.via.is_empty();
    let mut role_arn = cli.role_arn.clone();
    let mut session_name = cli.role_session_name.clone();
    let source = if let Some(profile_role) = profile("role_arn") {
        let name = profile_name.clone().unwrap_or_default();
        let arn = cli::role_arn_from(&profile_role)
            .map_err(|e| usage(format!("profile {name}: role_arn: {e}")))?;
        role_arn = role_arn.or(Some(arn));
        if let Some(file) = profile("web_identity_token_file") {
            Source::WebIdentity {
                token_file: PathBuf::from(file),
            }
        } else if let Some(src) = profile("source_profile") {
            // A source profile that assumes a role itself makes ours a chained session.
            chained |= profiles
                .as_ref()
                .and_then(|set| set.get_profile(&src))
                .is_some_and(|p| p.get("role_arn").is_some());
            Source::DefaultChain { profile: Some(src) }
        } else {
            match profile("credential_source").as_deref() {
                Some("Environment") => Source::Environment,
                Some("Ec2InstanceMetadata") => Source::Ec2InstanceMetadata,
                Some("EcsContainer") => Source::EcsContainer,
                Some(other) => {
                    return Err(usage(format!(
                        "profile {name}: credential_source '{other}' is not Environment, \
                         Ec2InstanceMetadata or EcsContainer"
                    )))
                }
                None => {
                    return Err(usage(format!(
                    "profile {name} has role_arn but neither source_profile nor credential_source"
                )))
                }
            }
        }
    } else if let Some(file) = &cli.web_identity_token_file {
        Source::WebIdentity {
            token_file: file.clone(),
        }
    } else if let (None, None, Some(arn), Some(file)) = (
        &role_arn,
        &profile_name,
        env_var("AWS_ROLE_ARN"),
        env_var("AWS_WEB_IDENTITY_TOKEN_FILE"),
    ) {
        // The SDKs' own convention, as a CI runner or Kubernetes sets it up.
        role_arn = Some(cli::role_arn_from(&arn).map_err(|e| usage(format!("AWS_ROLE_ARN: {e}")))?);
        session_name = session_name
            .or_else(|| env_var("AWS_ROLE_SESSION_NAME").filter(|n| cli::is_valid_session_name(n)));
        Source::WebIdentity {
            token_file: PathBuf::from(file),
        }
    } else {
        Source::DefaultChain {
            profile: profile_name.clone(),
        }
    };
    let role_arn = role_arn.ok_or_else(|| {
        usage(
            "no role to assume: give --role-arn (or CREDWRAP_ROLE_ARN), or --profile naming a \
             profile with role_arn"
                .to_string(),
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

    let session_name = match session_name.or(profile("role_session_name")) {
        Some(n) if cli::is_valid_session_name(&n) => n,
        Some(n) => {
            return Err(usage(format!(
                "role_session_name '{n}' must be 2-64 characters of [A-Za-z0-9_+=,.@-]"
            )))
        }
        None => default_session_name(),
    };

    let mut duration = match (cli.duration, profile("duration_seconds")) {
        (Some(d), _) => d,
        (None, Some(secs)) => cli::parse_duration(&secs)
            .map_err(|e| usage(format!("profile duration_seconds: {e}")))?,
        (None, None) => DEFAULT_DURATION,
    };
    if chained && duration > CHAINED_MAX {
        tracing::warn!(
            "role chaining limits a session to 1h: using --duration 1h instead of {}s",
            duration.as_secs()
        );
        duration = CHAINED_MAX;
    }
    if cli.endpoint == EndpointKind::Imds && duration < cli::MIN_IMDS_DURATION {
        return Err(usage(
            "--endpoint imds needs sessions of at least 1h (the profile or --duration asks less)"
                .to_string(),
        ));
    }

    let options = SessionOptions {
        external_id: cli.external_id.clone().or(profile("external_id")),
        tags: cli.tags.clone(),
        transitive_tag_keys: cli.transitive_tag_keys.clone(),
        source_identity: cli.source_identity.clone(),
        policy_arns: cli.policy_arns.clone(),
        policy: cli.policy.clone(),
    };
    if let Some(id) = &options.external_id {
        if !(2..=1224).contains(&id.len()) {
            return Err(usage("external_id must be 2-1224 characters".to_string()));
        }
    }
    let web_identity = matches!(source, Source::WebIdentity { .. });
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

    let mfa_serial = cli.mfa_serial.clone().or(profile("mfa_serial"));
    let mfa = match mfa_serial {
        Some(_) if web_identity => {
            return Err(usage("MFA and web identity cannot be combined".to_string()))
        }
        Some(serial) => Some(Mfa {
            code: crate::secret::Secret::new(mfa_code(cli, &serial)?),
            serial,
            duration: cli.mfa_duration,
        }),
        None => None,
    };

    Ok(Settings {
        source,
        mfa,
        via: cli.via.clone(),
        role_arn,
        session_name,
        duration,
        options,
        region: cli.region.clone(),
    })
}

async fn load_profiles(name: &str) -> Result<ProfileSet, UsageError> {
    let set = aws_config::profile::load(
        &Fs::real(),
        &Env::real(),
        &ProfileFiles::default(),
        Some(name.to_string().into()),
    )
    .await
    .map_err(|e| usage(format!("could not read the AWS config files: {e}")))?;
    if set.get_profile(name).is_none() {
        return Err(usage(format!(
            "profile '{name}' not found in the AWS config or credentials file"
        )));
    }
    Ok(set)
}

/// The MFA code: from --mfa-code/CREDWRAP_MFA_CODE, or asked once on the terminal.
fn mfa_code(cli: &Cli, serial: &str) -> Result<String, UsageError> {
    if let Some(code) = &cli.mfa_code {
        return Ok(code.clone());
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
        .filter(|t| t.is_terminal());
    let Some(mut tty) = tty else {
        return Err(usage(
            "an MFA code is needed and there is no terminal to ask on: pass --mfa-code or \
             CREDWRAP_MFA_CODE"
                .to_string(),
        ));
    };
    let _ = write!(tty, "credwrap: MFA code for {serial}: ");
    let _ = tty.flush();
    let mut line = String::new();
    std::io::BufReader::new(&mut tty)
        .read_line(&mut line)
        .map_err(|e| usage(format!("could not read the MFA code: {e}")))?;
    let code = line.trim();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code.to_string())
    } else {
        Err(usage(
            "the MFA code must be the 6 digits the device shows".to_string(),
        ))
    }
}

/// `credwrap-<who>-<unix time>`: tells a CloudTrail reader the session came from credwrap, and
/// from which CI run when there is one.
fn default_session_name() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let who = var("GITHUB_RUN_ID")
        .map(|id| format!("gh{id}"))
        .or_else(|| var("CI_JOB_ID").map(|id| format!("gl{id}")))
        .or_else(|| var("BUILDKITE_BUILD_NUMBER").map(|id| format!("bk{id}")))
        .or_else(|| var("USER"))
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| format!("pid{}", std::process::id()));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let who: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c))
        .take(40)
        .collect();
    let name = format!("credwrap-{who}-{secs}");
    if cli::is_valid_session_name(&name) {
        name
    } else {
        format!("credwrap-{secs}")
    }
}
