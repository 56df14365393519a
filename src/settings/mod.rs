//! Turns the command line, the environment and the AWS profiles into one validated plan of what
//! to assume and from what (ripgrep's "low args → high args" step).
//!
//! Every step is a plain function of its inputs (the parsed [`Cli`], an [`Env`], the parsed
//! [`Profiles`]), so precedence is unit-tested without touching the process. Nothing here calls
//! the network: a bad value, a missing profile or a missing MFA code is a usage error (exit 2).
//! Every rule that involves more than one option lives here, once.

// The command line: clap definitions, values checked by `limits`.
pub mod cli;
// What STS and IAM accept: role ARNs, names, durations, tags, policies.
pub mod limits;
mod precedence;
mod profiles;
// Extra roles under profile names of their own.
pub mod prompt;
pub mod roles;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use aws_types::os_shim_internal::Env;
pub use profiles::{AwsFiles, Profile, Profiles};

use crate::settings::cli::{usage_error, Cli, EndpointKind};
use crate::sys::secret::Secret;
use limits::{RoleArn, Tag};
use precedence::{Choice, RoleToAssume};

/// Where credwrap's own source credentials come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// aws-config's default chain, when no profile is selected at all.
    DefaultChain,
    /// A profile's own credentials (keys, SSO, `credential_process`, a role it assumes), then
    /// the container and instance roles: what the AWS CLI tries once the environment is out.
    Profile(String),
    /// The static keys of a role profile that is its own `source_profile`.
    ProfileKeys(StaticKeys),
    /// `AWS_ACCESS_KEY_ID` and friends (also a profile's `credential_source = Environment`).
    Environment,
    Ec2InstanceMetadata,
    EcsContainer,
    /// AssumeRoleWithWebIdentity with a token from `token`, fetched again at every refresh.
    WebIdentity {
        token: TokenSource,
    },
}

/// Where an OIDC token comes from; fetched again before every AssumeRoleWithWebIdentity.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A file Kubernetes or the CI rewrites.
    File(PathBuf),
    /// A variable, read at start (GitLab `id_tokens:`): it cannot renew.
    Variable { name: String, token: Secret },
    /// A command that prints a token, its words split as a shell would.
    Command {
        line: String,
        argv: Vec<String>,
        timeout: Duration,
    },
    /// GitHub's (or Forgejo's, Gitea's) Actions token service: `ACTIONS_ID_TOKEN_REQUEST_URL`
    /// with `ACTIONS_ID_TOKEN_REQUEST_TOKEN` as the bearer.
    GitHub {
        url: String,
        bearer: Secret,
        audience: String,
        /// How long one request may take, answer included.
        timeout: Duration,
        /// At start, how long to keep asking after an error that may pass (5xx, 429, no answer).
        start_retry: Duration,
    },
}

/// Long-term keys read from a profile.
#[derive(Debug, Clone)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// Session options sent with one AssumeRole.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub external_id: Option<String>,
    pub tags: Vec<Tag>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    pub policy_arns: Vec<String>,
    pub policy: Option<String>,
}

impl SessionOptions {
    /// What AssumeRoleWithWebIdentity cannot carry (the token does), by flag name.
    fn unsupported_with_web_identity(&self) -> Option<&'static str> {
        [
            (
                self.external_id.is_some(),
                "--external-id (or a profile's external_id)",
            ),
            (!self.tags.is_empty(), "--tag"),
            (!self.transitive_tag_keys.is_empty(), "--transitive-tag-key"),
            (self.source_identity.is_some(), "--source-identity"),
        ]
        .into_iter()
        .find_map(|(set, flag)| set.then_some(flag))
    }
}

/// One role to assume, with what goes with its AssumeRole.
#[derive(Debug, Clone)]
pub struct Hop {
    pub role_arn: RoleArn,
    pub session_name: String,
    pub duration: Duration,
    pub options: SessionOptions,
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

/// The run, resolved: what [`resolve`] returns, after which nothing reads the command line.
#[derive(Debug)]
pub struct Plan {
    /// The default role (what a process that selects no profile gets): what to assume, from
    /// what. None in a job of named roles only.
    pub assume: Option<AssumePlan>,
    /// The AWS files as read at start, for the clients' stand-ins.
    pub aws_files: AwsFiles,
    /// What to serve, and to whom.
    pub endpoint: EndpointPlan,
    /// Extra roles, each served under its own profile name.
    pub roles: Vec<roles::NamedRolePlan>,
    /// Run a command, or serve the processes started later: one or the other, never both.
    pub mode: Mode,
}

/// What credwrap does with the role once it serves it.
#[derive(Debug)]
pub enum Mode {
    /// Run the command as credwrap's child, and end as it ends.
    Run(ChildPlan),
    /// `--serve`: run nothing; hand the later processes what they need.
    Serve(ServePlan),
}

impl Mode {
    /// Where the private directory goes: `$RUNNER_TEMP` for `--serve --export github`, which
    /// the runner wipes; elsewhere the system's temporary directory.
    pub fn private_parent(&self) -> Option<PathBuf> {
        match self {
            Mode::Serve(serve) => serve.private_parent.clone(),
            Mode::Run(_) => None,
        }
    }
}

/// Whole-job mode: no command; the endpoint serves processes started later.
#[derive(Debug, Clone)]
pub struct ServePlan {
    pub export: crate::settings::cli::ExportFormat,
    /// Where `--export github` appends (`$GITHUB_ENV`).
    pub github_env: Option<PathBuf>,
    /// Where `--export github` sets the step's outputs (`$GITHUB_OUTPUT`), when the runner
    /// gives the step one.
    pub github_output: Option<PathBuf>,
    /// Where the private directory goes (`$RUNNER_TEMP` under GitHub, which wipes it).
    pub private_parent: Option<PathBuf>,
    /// Return once serving, and go on in the background.
    pub detach: bool,
    pub log_file: Option<PathBuf>,
    /// Stop when this process exits.
    pub watch: Option<Watched>,
    pub max_lifetime: Option<Duration>,
}

/// What the endpoint serves.
#[derive(Debug, Clone)]
pub struct EndpointPlan {
    /// The protocol of the loopback listener, which serves the command, or with `--serve` the
    /// later processes.
    pub loopback: LoopbackProtocol,
    /// `--container-host` addresses, for containers the command starts (checked against this
    /// host's interfaces before anything is assumed).
    pub gateways: Vec<std::net::IpAddr>,
    /// The default role also as the clients' AWS config's default profile (through
    /// `credential_process`), for SDKs whose earlier providers a variable they cannot lose
    /// would break.
    pub default_profile: bool,
    /// `--metrics`: at /metrics on the loopback listener, behind its secret.
    pub metrics: bool,
    /// `--metrics-address`: on a listener of its own there, without a secret.
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// How the command's SDK gets its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopbackProtocol {
    /// The container-credentials endpoint, with the token delivered so.
    Ecs(TokenDelivery),
    /// An IMDSv2-compatible endpoint.
    Imds,
}

/// How the command gets the container endpoint's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDelivery {
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Variable,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, a 0600 file in the private directory.
    File,
    /// Both: where a later step's environment names a token file of its own that a step
    /// cannot unset (EKS Pod Identity's, under GitHub), ours must replace it for the SDKs that
    /// read the file first, and the variable still serves those that read only it.
    Both,
}

/// The command and its supervision.
#[derive(Debug, Clone)]
pub struct ChildPlan {
    pub command: Vec<std::ffi::OsString>,
    /// SIGKILL the command this long after the first TERM/INT.
    pub kill_after: Option<Duration>,
    /// Adopt orphaned descendants and reap them (also done as PID 1).
    pub subreaper: bool,
    /// Variables that hold what credwrap's own source is made of (GitHub's token service's
    /// bearer, a token in a variable): with them the command could mint tokens and assume
    /// whatever the job may, so it does not get them.
    pub hidden: Vec<String>,
}

impl ChildPlan {
    /// `env`, taken, without what the command must not see.
    pub fn environment(&self, env: &mut Vec<(OsString, OsString)>) -> Vec<(OsString, OsString)> {
        std::mem::take(env)
            .into_iter()
            .filter(|(k, _)| !self.hidden.iter().any(|h| OsStr::new(h) == k.as_os_str()))
            .collect()
    }
}

/// The variables `source` is read from, which the command must not see.
fn source_variables(source: &Source) -> Vec<String> {
    match source {
        Source::WebIdentity {
            token: TokenSource::GitHub { .. },
        } => vec![
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
            "ACTIONS_ID_TOKEN_REQUEST_URL".into(),
        ],
        Source::WebIdentity {
            token: TokenSource::Variable { name, .. },
        } => vec![name.clone()],
        _ => Vec::new(),
    }
}

/// Everything the role module needs, validated.
#[derive(Debug, Clone)]
pub struct AssumePlan {
    pub source: Source,
    pub mfa: Option<Mfa>,
    /// Roles assumed in turn before the target: a profile's role, then `--via`.
    pub hops: Vec<Hop>,
    /// The role the command gets.
    pub target: Hop,
    pub region: Option<String>,
    /// The selected profile, for the settings the SDK reads from it (region and the rest).
    pub profile: Option<String>,
    /// CA certificates (PEM) to trust for STS instead of the system's: `AWS_CA_BUNDLE`, else the
    /// profile's `ca_bundle`, as the AWS CLI reads them (TLS-intercepting corporate proxies).
    pub ca_bundle: Option<CaBundle>,
    /// The AWS config and credentials files as read at start, for aws-config.
    pub aws_files: AwsFiles,
    /// Where an instance role would be fetched from (a profile's `credential_source`, the
    /// fallback after a profile's own credentials).
    pub imds_endpoint: String,
    /// How long the run may last at most, when said (`--max-lifetime`): to warn when a token
    /// that cannot renew ends first.
    pub max_lifetime: Option<Duration>,
    /// When the source is an SSO profile: where its access token is cached.
    pub sso: Option<SsoLogin>,
    /// When the source credentials are a session credwrap cannot renew (keys handed to it).
    pub source_session: Option<SourceSession>,
}

/// Source credentials that are a session's keys, handed to credwrap: it cannot renew them, so
/// refreshing the role stops when that session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSession {
    /// Where the session's keys come from, for messages.
    pub what: String,
    /// When the session ends, where that is said (`AWS_CREDENTIAL_EXPIRATION`, as botocore
    /// reads it).
    pub expires: Option<SystemTime>,
}

/// The source's keys, when they are a session's: from the environment (the default chain
/// takes them first) or a profile's static keys with `aws_session_token`.
fn source_session(source: &Source, env: &Env, profiles: &Profiles) -> Option<SourceSession> {
    let in_env = var(env, "AWS_ACCESS_KEY_ID").is_some() && var(env, "AWS_SESSION_TOKEN").is_some();
    let static_session = |p: &Profile| {
        p.get("aws_session_token").is_some()
            && [
                "role_arn",
                "sso_session",
                "sso_start_url",
                "credential_process",
            ]
            .iter()
            .all(|k| p.get(k).is_none())
    };
    let what = match source {
        Source::Environment | Source::DefaultChain if in_env => {
            return Some(SourceSession {
                what: "AWS_SESSION_TOKEN".into(),
                expires: var(env, "AWS_CREDENTIAL_EXPIRATION").and_then(|t| {
                    aws_smithy_types::DateTime::from_str(
                        &t,
                        aws_smithy_types::date_time::Format::DateTime,
                    )
                    .ok()
                    .and_then(|d| SystemTime::try_from(d).ok())
                }),
            })
        }
        Source::ProfileKeys(keys) if keys.session_token.is_some() => {
            "a profile's aws_session_token".to_string()
        }
        Source::Profile(name) if profiles.get(name).is_some_and(static_session) => {
            format!("profile {name}'s aws_session_token")
        }
        _ => return None,
    };
    Some(SourceSession {
        what,
        expires: None,
    })
}

/// An SSO profile's access token in the SDKs' cache, whose expiry bounds refreshing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoLogin {
    pub profile: String,
    /// The profile's `sso_session`, when it has one (the key then), else its `sso_start_url`.
    pub session: Option<String>,
    pub cache_key: String,
    /// `~/.aws/sso/cache`.
    pub cache_dir: PathBuf,
}

impl SsoLogin {
    /// The profile's SSO settings, if it has any, with HOME from `env`.
    pub fn of(profile: &Profile, env: &Env) -> Option<SsoLogin> {
        let session = profile.get("sso_session").map(str::to_string);
        let cache_key = session
            .clone()
            .or_else(|| profile.get("sso_start_url").map(str::to_string))?;
        let home = var(env, "HOME")?;
        Some(SsoLogin {
            profile: profile.name().to_string(),
            session,
            cache_key,
            cache_dir: PathBuf::from(home).join(".aws/sso/cache"),
        })
    }

    /// The command that logs in again.
    pub fn login_command(&self) -> String {
        match self.profile.as_str() {
            "default" => "aws sso login".to_string(),
            p => format!("aws sso login --profile {p}"),
        }
    }
}

/// A CA bundle file and its contents, read once while resolving.
#[derive(Clone)]
pub struct CaBundle {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaBundle({})", self.path.display())
    }
}

/// A usage error found while resolving: printed like clap's and exits 2.
pub type UsageError = clap::Error;

fn usage(message: impl AsRef<str>) -> UsageError {
    usage_error(message.as_ref())
}

/// Everything the command line, the environment and the AWS files say, checked: bad input is
/// a usage error here, before any network call.
pub fn from_command_line(cli: &Cli) -> Result<Plan, crate::exit::Failure> {
    use crate::exit::Failure;
    let env = Env::real();
    // Each file is read here, once, before any signal handler exists: a FIFO that blocks the
    // read leaves a signal its default action, and nothing has been created yet.
    let files = AwsFiles::read(&env);
    // A runtime of the calling thread alone, gone when the plan is made: no thread is left for
    // the fork of --detach.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| {
            Failure::setup(format!("could not start a runtime: {e}"), "check ulimit -u")
        })?;
    let profiles = runtime
        .block_on(Profiles::parse(files, &env))
        .map_err(|e| usage_error(&e))?;
    drop(runtime);
    Ok(resolve(cli, &env, &profiles, &mut prompt::terminal)?)
}

/// Asks for an MFA code for a serial; [`prompt::terminal`] in the program, a closure in tests.
pub type AskCode<'a> = &'a mut dyn FnMut(&str) -> Result<String, String>;

/// The plan for this run, from the command line, the environment and the profiles.
pub fn resolve(
    cli: &Cli,
    env: &Env,
    profiles: &Profiles,
    ask_code: AskCode<'_>,
) -> Result<Plan, UsageError> {
    let mut endpoint = endpoint_plan(cli)?;
    let mode = if cli.serve {
        let serve = serve_plan(cli, env)?;
        if serve.export == crate::settings::cli::ExportFormat::Github {
            outrank_the_runners_own(&mut endpoint, env);
        }
        Mode::Serve(serve)
    } else {
        Mode::Run(ChildPlan {
            command: cli.command.clone(),
            kill_after: cli.kill_after,
            subreaper: cli.subreaper,
            hidden: Vec::new(),
        })
    };
    // One MFA code per device, however many roles need it: a code cannot be used twice.
    let mut codes: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut ask_once = |serial: &str| -> Result<String, String> {
        if let Some(code) = codes.get(serial) {
            return Ok(code.clone());
        }
        let code = ask_code(serial)?;
        codes.insert(serial.to_string(), code.clone());
        Ok(code)
    };
    let roles = roles::plan(cli, env, profiles, &mut ask_once)?;
    let assume = match assume_plan(cli, env, profiles, &mut ask_once) {
        Ok(plan) => Some(plan),
        // Named roles alone are a job too: a process that selects no profile gets nothing.
        Err(e) if !roles.is_empty() && e.to_string().contains(precedence::NO_ROLE) => {
            named_roles_only(cli, &endpoint)?;
            None
        }
        Err(e) => return Err(e),
    };
    let mut mode = mode;
    if let Mode::Run(child) = &mut mode {
        let sources = assume
            .iter()
            .map(|a| &a.source)
            .chain(roles.iter().filter_map(|r| match &r.source {
                roles::NamedSource::Assume(plan) => Some(&plan.source),
                roles::NamedSource::Profile(_) => None,
            }));
        child.hidden = sources.flat_map(source_variables).collect();
    }
    Ok(Plan {
        assume,
        aws_files: profiles.files().clone(),
        roles,
        endpoint,
        mode,
    })
}

/// What a job of named roles only cannot have: the default role's own options.
fn named_roles_only(cli: &Cli, endpoint: &EndpointPlan) -> Result<(), UsageError> {
    if endpoint.loopback == LoopbackProtocol::Imds {
        return Err(usage(
            "--endpoint imds serves the default role, and there is none: give --role-arn (or \
             --profile), or leave --endpoint at ecs for named roles only",
        ));
    }
    if !cli.via.is_empty() {
        return Err(usage(
            "--via chains to the default role, and there is none: give --role-arn, or chain \
             in the named role's profile",
        ));
    }
    Ok(())
}

/// What to assume and from what: the AWS CLI's precedence, then every session setting.
pub(super) fn assume_plan(
    cli: &Cli,
    env: &Env,
    profiles: &Profiles,
    ask_code: AskCode<'_>,
) -> Result<AssumePlan, UsageError> {
    let selection = precedence::select_profile(cli, env, profiles)?;
    let plan = precedence::choose(cli, env, profiles, selection)?;
    let chained = plan.leading.is_some() || !cli.via.is_empty() || plan.source_is_role;
    let target_name = choose_session_name(cli.role_session_name.clone(), &plan.target, env)?;
    let target = Hop {
        duration: duration(cli, &plan.target, chained)?,
        options: session_options(cli, &plan.target)?,
        session_name: target_name.clone(),
        role_arn: plan.target.arn.clone(),
    };
    let mut hops = Vec::new();
    if let Some(leading) = &plan.leading {
        hops.push(leading_hop(leading, plan.source_is_role, env)?);
    }
    hops.extend(cli.via.iter().map(|arn| Hop {
        role_arn: arn.clone(),
        session_name: target_name.clone(),
        duration: limits::CHAINED_MAX,
        options: SessionOptions::default(),
    }));
    let web_identity = matches!(plan.source, Source::WebIdentity { .. });
    let first = hops.first().unwrap_or(&target);
    if let (true, Some(flag)) = (web_identity, first.options.unsupported_with_web_identity()) {
        return Err(usage(format!(
            "{flag} cannot be sent with AssumeRoleWithWebIdentity (the token carries them); \
             assume a further role with --via to use it"
        )));
    }
    let mfa = mfa(cli, &plan, ask_code)?;
    let ca_bundle = ca_bundle(env, plan.selection.profile)?;
    let source_session = source_session(&plan.source, env, profiles);
    let sso = match &plan.source {
        Source::Profile(name) => profiles.get(name).and_then(|p| SsoLogin::of(p, env)),
        _ => None,
    };
    Ok(AssumePlan {
        source: plan.source,
        mfa,
        hops,
        target,
        region: cli.region.clone(),
        profile: plan.selection.profile.map(|p| p.name().to_string()),
        ca_bundle,
        aws_files: profiles.files().clone(),
        imds_endpoint: imds_endpoint(env, plan.selection.profile),
        max_lifetime: cli.max_lifetime,
        sso,
        source_session,
    })
}

/// Where IMDS is, as aws-config finds it: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, the selected
/// profile's `ec2_metadata_service_endpoint`, else the address of the configured mode.
fn imds_endpoint(env: &Env, profile: Option<&Profile>) -> String {
    let from_profile = |k: &str| profile.and_then(|p| p.get(k)).map(str::to_string);
    if let Some(endpoint) = var(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .or_else(|| from_profile("ec2_metadata_service_endpoint"))
    {
        return endpoint;
    }
    let mode = var(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
        .or_else(|| from_profile("ec2_metadata_service_endpoint_mode"));
    if mode.is_some_and(|m| m.eq_ignore_ascii_case("ipv6")) {
        "http://[fd00:ec2::254]".to_string()
    } else {
        "http://169.254.169.254".to_string()
    }
}

/// `AWS_CA_BUNDLE`, else the selected profile's `ca_bundle`; it must hold a PEM certificate.
fn ca_bundle(env: &Env, profile: Option<&Profile>) -> Result<Option<CaBundle>, UsageError> {
    let named = var(env, "AWS_CA_BUNDLE")
        .map(|p| (p, "AWS_CA_BUNDLE"))
        .or_else(|| {
            profile
                .and_then(|p| p.get("ca_bundle"))
                .map(|p| (p.to_string(), "ca_bundle"))
        });
    let Some((path, from)) = named else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let pem = std::fs::read(&path)
        .map_err(|e| usage(format!("{from}: cannot read {}: {e}", path.display())))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(usage(format!(
            "{from}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(Some(CaBundle { path, pem }))
}

/// A non-empty environment variable.
fn var(env: &Env, key: &str) -> Option<String> {
    env.get(key).ok().filter(|v| !v.is_empty())
}

/// What to serve, with the options that only make sense for one kind of endpoint checked.
fn endpoint_plan(cli: &Cli) -> Result<EndpointPlan, UsageError> {
    if cli.endpoint == EndpointKind::Imds && cli.token_file {
        return Err(usage(
            "--token-file is for the container endpoint; --endpoint imds has no token to put \
             in a file (IMDS session tokens come from PUT /latest/api/token)",
        ));
    }
    let loopback = match (cli.endpoint, cli.token_file) {
        (EndpointKind::Imds, _) => LoopbackProtocol::Imds,
        (EndpointKind::Ecs, false) => LoopbackProtocol::Ecs(TokenDelivery::Variable),
        (EndpointKind::Ecs, true) => LoopbackProtocol::Ecs(TokenDelivery::File),
    };
    Ok(EndpointPlan {
        loopback,
        gateways: cli.container_hosts.clone(),
        default_profile: false,
        metrics: cli.metrics,
        metrics_address: cli.metrics_address,
    })
}

/// Under GitHub, a later step keeps whatever the runner's own environment holds, since a step
/// can only set variables: where that is a self-hosted runner pod's EKS credentials, the
/// endpoint must still come first for every SDK.
fn outrank_the_runners_own(endpoint: &mut EndpointPlan, env: &Env) {
    if endpoint.loopback == LoopbackProtocol::Ecs(TokenDelivery::Variable)
        && var(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").is_some()
    {
        tracing::info!(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is set (EKS Pod Identity) and a later step \
             cannot unset it: the endpoint's token goes to the later steps in a file of its own \
             under that name, and in AWS_CONTAINER_AUTHORIZATION_TOKEN"
        );
        endpoint.loopback = LoopbackProtocol::Ecs(TokenDelivery::Both);
    }
    if var(env, "AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
        tracing::info!(
            "AWS_WEB_IDENTITY_TOKEN_FILE is set (EKS IRSA) and a later step cannot unset it: \
             it is blanked for the later steps, and the default role is also the default \
             profile's credential_process, since the Rust SDK reads a blank file name as a file"
        );
        endpoint.default_profile = true;
    }
}

/// `--serve`: where the exports go and what stops it, checked now.
fn serve_plan(cli: &Cli, env: &Env) -> Result<ServePlan, UsageError> {
    let github_env = match cli.export {
        crate::settings::cli::ExportFormat::Github => {
            Some(PathBuf::from(var(env, "GITHUB_ENV").ok_or_else(|| {
                usage("--export github: GITHUB_ENV is not set: this is for a GitHub Actions step")
            })?))
        }
        crate::settings::cli::ExportFormat::Shell => None,
    };
    let watch = cli.watch.map(Watched::open).transpose()?;
    Ok(ServePlan {
        export: cli.export,
        github_output: github_env
            .as_ref()
            .and_then(|_| var(env, "GITHUB_OUTPUT"))
            .map(PathBuf::from),
        github_env,
        private_parent: var(env, "RUNNER_TEMP")
            .filter(|_| cli.export == crate::settings::cli::ExportFormat::Github)
            .map(PathBuf::from),
        detach: cli.detach,
        log_file: cli.log_file.clone(),
        watch,
        max_lifetime: cli.max_lifetime,
    })
}

/// The process `--watch` names, held from the moment the option is checked: by a pidfd, so
/// that a process that dies during start-up and whose PID goes to another is still seen as
/// gone (Linux 5.3; on older kernels, by its PID).
#[derive(Debug, Clone)]
pub struct Watched {
    pub pid: i32,
    pub fd: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

impl Watched {
    fn open(pid: i32) -> Result<Watched, UsageError> {
        // SAFETY: pidfd_open(2) with a pid and no flags; the result is a new descriptor we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let gone = || usage(format!("--watch {pid}: there is no such process"));
        if fd >= 0 {
            use std::os::fd::FromRawFd;
            // SAFETY: the descriptor was just returned to us.
            let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
            return Ok(Watched {
                pid,
                fd: Some(std::sync::Arc::new(owned)),
            });
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Err(gone()),
            _ if process_exists(pid) => Ok(Watched { pid, fd: None }),
            _ => Err(gone()),
        }
    }
}

/// Whether process `pid` exists (one of another user's counts: `kill` then fails with EPERM):
/// what `--watch` is checked with here and watched with while serving.
pub fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    let signalled = unsafe { libc::kill(pid, 0) } == 0;
    signalled || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A flag, then `AWS_ROLE_SESSION_NAME` (web identity), then the role profile's, then ours.
fn choose_session_name(
    flag: Option<String>,
    role: &RoleToAssume<'_>,
    env: &Env,
) -> Result<String, UsageError> {
    let from_profile = role
        .profile
        .and_then(|p| p.get("role_session_name"))
        .map(str::to_string);
    match flag
        .or_else(|| role.env_session_name.clone())
        .or(from_profile)
    {
        Some(n) if limits::is_valid_session_name(&n) => Ok(n),
        Some(n) => Err(usage(format!(
            "role_session_name '{n}' must be 2-64 characters of [A-Za-z0-9_+=,.@-]"
        ))),
        None => Ok(default_session_name(env, SystemTime::now())),
    }
}

/// The target's session length: the flag, else its profile's, else an hour; capped at an hour
/// when chained, at least an hour for IMDS.
fn duration(cli: &Cli, target: &RoleToAssume<'_>, chained: bool) -> Result<Duration, UsageError> {
    let from_profile = target.profile.and_then(|p| p.get("duration_seconds"));
    let mut duration = match (cli.duration, from_profile) {
        (Some(d), _) => d,
        (None, Some(secs)) => limits::session_duration(secs)
            .map_err(|e| usage(format!("profile duration_seconds: {e}")))?,
        (None, None) => limits::DEFAULT_DURATION,
    };
    if chained && duration > limits::CHAINED_MAX {
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

/// A role assumed before `--via` and the target: a profile's role with the profile's settings,
/// or the role of the SDKs' web-identity variables.
fn leading_hop(role: &RoleToAssume<'_>, from_role: bool, env: &Env) -> Result<Hop, UsageError> {
    let profile = role.profile;
    let mut duration = match profile.and_then(|p| p.get("duration_seconds")) {
        Some(secs) => limits::sts_duration(secs)
            .map_err(|e| usage(format!("profile duration_seconds: {e}")))?,
        None => limits::DEFAULT_DURATION,
    };
    if from_role {
        duration = duration.min(limits::CHAINED_MAX);
    }
    let external_id = profile.and_then(|p| p.get("external_id"));
    if let Some(id) = external_id {
        limits::external_id(id).map_err(|e| usage(format!("external_id: {e}")))?;
    }
    Ok(Hop {
        role_arn: role.arn.clone(),
        session_name: choose_session_name(None, role, env)?,
        duration,
        options: SessionOptions {
            external_id: external_id.map(str::to_string),
            ..SessionOptions::default()
        },
    })
}

fn session_options(cli: &Cli, target: &RoleToAssume<'_>) -> Result<SessionOptions, UsageError> {
    let options = SessionOptions {
        external_id: cli.external_id.clone().or_else(|| {
            target
                .profile
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

/// `--mfa-serial`, else the `mfa_serial` of the role profile assumed first.
fn mfa(cli: &Cli, plan: &Choice<'_>, ask_code: AskCode<'_>) -> Result<Option<Mfa>, UsageError> {
    let first_role = plan.leading.as_ref().unwrap_or(&plan.target);
    let serial = cli.mfa_serial.clone().or_else(|| {
        first_role
            .profile
            .and_then(|p| p.get("mfa_serial"))
            .map(str::to_string)
    });
    let Some(serial) = serial else {
        if cli.mfa_code.is_some() {
            return Err(usage(
                "--mfa-code needs --mfa-serial (or a role profile with mfa_serial)",
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
