//! The command line: clap definitions. Each value is checked by a parser from [`limits`], so
//! bad input exits 2 before any network call or spawn, with a message that names the option;
//! rules across options are the settings step's.

use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::settings::limits::{self, NamedRole, RoleArn, Tag};

/// `credwrap --version`: the version, the commit, the target and the linkage (from build.rs).
const VERSION_LINE: &str = env!("CREDWRAP_VERSION_LINE");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "credwrap",
    version = VERSION_LINE,
    about = "Run a command as an AWS role whose credentials never expire under it",
    long_about = "Assumes an IAM role, then runs COMMAND with the role's credentials served on a \
                  loopback endpoint that every AWS SDK reads by itself. The credentials are \
                  re-assumed before they expire, signals are forwarded, and credwrap exits with \
                  COMMAND's status.",
    group(clap::ArgGroup::new("web_identity").multiple(false)),
    after_help = "Exit status: COMMAND's own; 128+N if it was killed by signal N; 2 for a usage \
                  error; 125 if credwrap failed before COMMAND ran; 126 if COMMAND is not \
                  executable; 127 if it was not found; 124 if COMMAND's status was lost."
)]
pub struct Cli {
    /// ARN of the role to assume, e.g. arn:aws:iam::123456789012:role/deploy [default: the
    /// profile's role_arn, or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE]
    #[arg(long, env = "CREDWRAP_ROLE_ARN", value_name = "ARN", value_parser = RoleArn::from_str)]
    pub role_arn: Option<RoleArn>,

    /// AWS profile: with role_arn in it, the role and its settings, as the AWS CLI reads them;
    /// otherwise the source of credentials for --role-arn [env: CREDWRAP_PROFILE, AWS_PROFILE]
    #[arg(long, env = "CREDWRAP_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Session name recorded in CloudTrail [default: credwrap-<CI run id or user>-<time>]
    #[arg(long, env = "CREDWRAP_ROLE_SESSION_NAME", value_name = "NAME", value_parser = limits::session_name)]
    pub role_session_name: Option<String>,

    /// Session duration: seconds, or with a unit (90m, 1h, 1h30m); 30m to 12h [default: the
    /// profile's duration_seconds, else 1h; at most 1h when chaining roles]
    #[arg(long, env = "CREDWRAP_DURATION", value_name = "DURATION", value_parser = limits::session_duration)]
    pub duration: Option<Duration>,

    /// External ID the role's trust policy requires
    #[arg(long, env = "CREDWRAP_EXTERNAL_ID", value_name = "ID", value_parser = limits::external_id)]
    pub external_id: Option<String>,

    /// Region for STS and for the command (default: from the environment or profile)
    #[arg(long, env = "CREDWRAP_REGION", value_name = "REGION", value_parser = limits::region)]
    pub region: Option<String>,

    /// MFA device (serial number or ARN): credwrap asks for a code once, gets an MFA session
    /// with GetSessionToken and assumes the role from it for the session's whole life
    #[arg(long, env = "CREDWRAP_MFA_SERIAL", value_name = "SERIAL", value_parser = limits::mfa_serial)]
    pub mfa_serial: Option<String>,

    /// The 6-digit MFA code, for scripts (otherwise asked on the terminal)
    #[arg(long, env = "CREDWRAP_MFA_CODE", value_name = "CODE", value_parser = limits::mfa_code, hide_env_values = true)]
    pub mfa_code: Option<String>,

    /// How long the MFA session lasts: 15m to 36h
    #[arg(long, env = "CREDWRAP_MFA_DURATION", value_name = "DURATION", default_value = "12h", value_parser = limits::mfa_duration)]
    pub mfa_duration: Duration,

    /// Assume the role with AssumeRoleWithWebIdentity and the OIDC token in this file, re-read at
    /// every refresh (Kubernetes, a CI that rewrites it)
    #[arg(
        long,
        env = "CREDWRAP_WEB_IDENTITY_TOKEN_FILE",
        value_name = "PATH",
        group = "web_identity"
    )]
    pub web_identity_token_file: Option<std::path::PathBuf>,

    /// The OIDC token is in this variable (GitLab `id_tokens:`, Bitbucket, CircleCI's
    /// CIRCLE_OIDC_TOKEN_V2): read once, it cannot renew, so the job must fit its lifetime
    /// (credwrap says when it expires)
    #[arg(
        long,
        env = "CREDWRAP_WEB_IDENTITY_TOKEN_ENV",
        value_name = "NAME",
        group = "web_identity"
    )]
    pub web_identity_token_env: Option<String>,

    /// Run this command for a fresh OIDC token before every AssumeRoleWithWebIdentity; its
    /// stdout is the token (`buildkite-agent oidc request-token --audience sts.amazonaws.com`,
    /// `circleci run oidc get --claims '{"aud":"sts.amazonaws.com"}'`, vault). Split into words
    /// as a shell would, run without one
    #[arg(
        long,
        env = "CREDWRAP_WEB_IDENTITY_TOKEN_COMMAND",
        value_name = "COMMAND",
        group = "web_identity"
    )]
    pub web_identity_token_command: Option<String>,

    /// How long the token command (or GitHub's token service) may take
    #[arg(long, env = "CREDWRAP_WEB_IDENTITY_TOKEN_TIMEOUT", value_name = "DURATION", default_value = "15s", value_parser = limits::token_timeout)]
    pub web_identity_token_timeout: Duration,

    /// At start, how long to keep asking GitHub's token service after an error that may pass
    /// (HTTP 5xx or 429, no answer), with backoff; 0 to fail at the first. Other errors fail at
    /// once, and mid-job the refresh's own retries apply
    #[arg(long, env = "CREDWRAP_WEB_IDENTITY_TOKEN_RETRY", value_name = "DURATION", default_value = "60s", value_parser = limits::token_retry)]
    pub web_identity_token_retry: Duration,

    /// GitHub Actions (and Forgejo/Gitea Actions): ask the job's OIDC token service for a fresh
    /// token before every AssumeRoleWithWebIdentity; needs `permissions: id-token: write`.
    /// Used by itself when the job has that and nothing else says where credentials come from
    #[arg(long, env = "CREDWRAP_WEB_IDENTITY_GITHUB", group = "web_identity")]
    pub web_identity_github: bool,

    /// The audience of GitHub's OIDC tokens (the role's trust policy checks it)
    #[arg(
        long,
        env = "CREDWRAP_WEB_IDENTITY_AUDIENCE",
        value_name = "AUDIENCE",
        default_value = "sts.amazonaws.com"
    )]
    pub web_identity_audience: String,

    /// An extra role the command may use, under the profile name NAME (repeatable): NAME=ARN,
    /// assumed as --role-arn ARN would be with the other options given here, or NAME alone for
    /// the role of the profile NAME in your AWS config, with that profile's settings (an SSO or
    /// credential_process profile without role_arn: its own credentials). The command selects
    /// it as it selects any profile (AWS_PROFILE=NAME, aws --profile NAME,
    /// boto3.Session(profile_name=NAME), Terraform's profile); each is assumed at start and
    /// refreshed once for the whole process tree
    #[arg(long = "role", env = "CREDWRAP_ROLES", value_name = "NAME[=ARN]", value_parser = limits::named_role, value_delimiter = ',')]
    pub roles: Vec<NamedRole>,

    /// Extra roles from a file, one NAME[=ARN] per line as for --role; blank lines and lines
    /// starting with # are skipped. Read once, at start
    #[arg(long, env = "CREDWRAP_ROLES_FILE", value_name = "PATH")]
    pub roles_file: Option<std::path::PathBuf>,

    /// Assume this role first and the next from it (repeatable, in order) before --role-arn;
    /// chained sessions last at most 1h
    #[arg(long, env = "CREDWRAP_VIA", value_name = "ARN", value_parser = RoleArn::from_str, value_delimiter = ',')]
    pub via: Vec<RoleArn>,

    /// Session tag KEY=VALUE (repeatable, at most 50)
    #[arg(long = "tag", env = "CREDWRAP_TAGS", value_name = "KEY=VALUE", value_parser = limits::tag, value_delimiter = ',')]
    pub tags: Vec<Tag>,

    /// A session tag key that passes on to chained roles (repeatable; must be one of --tag)
    #[arg(
        long = "transitive-tag-key",
        env = "CREDWRAP_TRANSITIVE_TAG_KEYS",
        value_name = "KEY",
        value_delimiter = ','
    )]
    pub transitive_tag_keys: Vec<String>,

    /// Source identity recorded with every action the role takes
    #[arg(long, env = "CREDWRAP_SOURCE_IDENTITY", value_name = "ID", value_parser = limits::source_identity)]
    pub source_identity: Option<String>,

    /// ARN of a managed policy that limits the session (repeatable, at most 10)
    #[arg(long = "policy-arn", env = "CREDWRAP_POLICY_ARNS", value_name = "ARN", value_parser = limits::policy_arn, value_delimiter = ',')]
    pub policy_arns: Vec<String>,

    /// Inline session policy: JSON, or @FILE to read it from a file
    #[arg(long, env = "CREDWRAP_POLICY", value_name = "JSON|@FILE", value_parser = limits::policy)]
    pub policy: Option<String>,

    /// How the command gets its credentials: `ecs` (container-credentials endpoint, the default)
    /// or `imds` (IMDSv2-compatible, for tools that only speak instance metadata)
    #[arg(
        long,
        env = "CREDWRAP_ENDPOINT",
        value_name = "KIND",
        default_value = "ecs",
        value_enum
    )]
    pub endpoint: EndpointKind,

    /// Hand the command the endpoint token in a file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE,
    /// mode 0600 in a private directory, removed at exit) instead of in its environment
    #[arg(long, env = "CREDWRAP_TOKEN_FILE")]
    pub token_file: bool,

    /// Also serve the role to Docker containers on IP, the gateway of a Docker network they are
    /// on (repeatable): 169.254.170.2, which every SDK accepts (on port 80, which needs root or
    /// CAP_NET_BIND_SERVICE). 169.254.170.23 and fd00:ec2::23 work only with newer SDKs: boto3
    /// up to 1.28, JS v3 3.188 and the Go SDKs refuse them. The command gets
    /// CREDWRAP_CONTAINER_ENV_FILE, for `docker run --env-file`
    #[arg(
        long = "container-host",
        env = "CREDWRAP_CONTAINER_HOST",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub container_hosts: Vec<std::net::IpAddr>,

    /// Serve Prometheus metrics (refreshes, failures, requests by listener and status,
    /// connections closed to make room, seconds to expiry) at /metrics on the loopback
    /// listener, behind the endpoint's token (`Authorization: TOKEN` or `Bearer TOKEN`)
    #[arg(long, env = "CREDWRAP_METRICS")]
    pub metrics: bool,

    /// Serve the same metrics at http://ADDR:PORT/metrics, without a secret: bind it where only
    /// the scraper reaches (they hold no secret, but say which roles and listeners there are)
    #[arg(long, env = "CREDWRAP_METRICS_ADDRESS", value_name = "ADDR:PORT")]
    pub metrics_address: Option<std::net::SocketAddr>,

    /// A role for the containers of one name (repeatable), with --container-host: NAME=ARN or
    /// NAME (a profile), as for --role. Those containers get an env file of their own,
    /// $CREDWRAP_CONTAINER_ENV_DIR/NAME.env, whose secret opens that role and no other
    #[arg(
        long = "container-role",
        env = "CREDWRAP_CONTAINER_ROLES",
        value_name = "NAME[=ARN]",
        value_parser = limits::named_role,
        value_delimiter = ',',
        requires = "container_hosts"
    )]
    pub container_roles: Vec<NamedRole>,

    /// Run no command: serve the role to processes started later (the steps of a CI job, a
    /// terminal) and to containers (--container-host), until a signal, --watch or
    /// --max-lifetime stops it; prints what those processes need (see --export)
    #[arg(long, env = "CREDWRAP_SERVE", conflicts_with_all = ["kill_after", "subreaper"])]
    pub serve: bool,

    /// With --serve, how to hand out the variables: `shell` (export and unset lines on stdout,
    /// for `eval`) or `github` (appended to $GITHUB_ENV for the job's later steps)
    #[arg(
        long,
        env = "CREDWRAP_EXPORT",
        value_name = "FORMAT",
        default_value = "shell",
        value_enum,
        requires = "serve"
    )]
    pub export: ExportFormat,

    /// With --serve, return as soon as it serves and keep serving in the background (stdout
    /// and stderr are let go, so a CI step or `eval "$(...)"` does not wait)
    #[arg(long, env = "CREDWRAP_DETACH", requires = "serve")]
    pub detach: bool,

    /// With --serve, stop when the process PID exits (the job's shell: `--watch $$`)
    #[arg(long, env = "CREDWRAP_WATCH", value_name = "PID", requires = "serve", value_parser = clap::value_parser!(i32).range(1..))]
    pub watch: Option<i32>,

    /// With --serve, stop after this long at the latest (1m to 30d, e.g. 6h)
    #[arg(long, env = "CREDWRAP_MAX_LIFETIME", value_name = "DURATION", requires = "serve", value_parser = limits::max_lifetime)]
    pub max_lifetime: Option<Duration>,

    /// With --detach, where the log goes once detached [default: credwrap.log in the private
    /// directory, exported as CREDWRAP_LOG_PATH, removed at stop]
    #[arg(
        long,
        env = "CREDWRAP_LOG_FILE",
        value_name = "PATH",
        requires = "detach"
    )]
    pub log_file: Option<std::path::PathBuf>,

    /// Send SIGKILL to the command this long after the first SIGTERM/SIGINT, if it is still running
    #[arg(long, env = "CREDWRAP_KILL_AFTER", value_name = "DURATION", value_parser = limits::kill_after)]
    pub kill_after: Option<Duration>,

    /// Adopt and reap orphaned grandchildren (PR_SET_CHILD_SUBREAPER); automatic as PID 1
    #[arg(long, env = "CREDWRAP_SUBREAPER")]
    pub subreaper: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); secrets are never logged
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, env = "CREDWRAP_QUIET")]
    pub quiet: bool,

    /// Log line format on stderr
    #[arg(
        long,
        env = "CREDWRAP_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text",
        value_enum
    )]
    pub log_format: LogFormat,

    /// Print shell completions for SHELL and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit
    #[arg(long, exclusive = true)]
    pub man: bool,

    /// The command to run, with its arguments (put it after `--`)
    #[arg(
        required_unless_present_any = ["completions", "man", "serve"],
        conflicts_with = "serve",
        trailing_var_arg = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Shell,
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointKind {
    Ecs,
    Imds,
}

impl Cli {
    /// `--completions SHELL` and `--man`: what to print instead of running, if asked for.
    pub fn generated_docs(&self) -> std::io::Result<Option<Vec<u8>>> {
        use clap::CommandFactory;
        let mut out = Vec::new();
        if let Some(shell) = self.completions {
            clap_complete::generate(shell, &mut Cli::command(), "credwrap", &mut out);
            return Ok(Some(out));
        }
        if self.man {
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            return Ok(Some(out));
        }
        Ok(None)
    }
}

/// An error formatted and exited like clap's own (exit 2), for rules found after parsing.
pub fn usage_error(message: &str) -> clap::Error {
    use clap::CommandFactory;
    Cli::command().error(clap::error::ErrorKind::ValueValidation, message)
}
