//! The command line: clap definitions and the value parsers that enforce STS's limits.
//!
//! Every rule STS would enforce is checked here, so that bad input exits 2 before any network
//! call or spawn, with a message that names the option and the rule.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// Sessions shorter than this leave no room for the SDKs' refresh windows (botocore refetches 15
/// minutes before expiry and fails 10 minutes before).
pub const MIN_DURATION: Duration = Duration::from_secs(30 * 60);
/// The longest session IAM allows a role (its MaxSessionDuration can go up to 12 hours).
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Parser)]
#[command(
    name = "credwrap",
    version,
    about = "Run a command as an AWS role whose credentials never expire under it",
    long_about = "Assumes an IAM role, then runs COMMAND with the role's credentials served on a \
                  loopback endpoint that every AWS SDK reads by itself. The credentials are \
                  re-assumed before they expire, signals are forwarded, and credwrap exits with \
                  COMMAND's status.",
    after_help = "Exit status: COMMAND's own; 128+N if it was killed by signal N; 2 for a usage \
                  error; 125 if credwrap failed before COMMAND ran; 126 if COMMAND is not \
                  executable; 127 if it was not found."
)]
pub struct Cli {
    /// ARN of the role to assume, e.g. arn:aws:iam::123456789012:role/deploy [default: the
    /// profile's role_arn, or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE]
    #[arg(long, env = "CREDWRAP_ROLE_ARN", value_name = "ARN", value_parser = parse_role_arn)]
    pub role_arn: Option<RoleArn>,

    /// AWS profile: with role_arn in it, the role and its settings, as the AWS CLI reads them;
    /// otherwise the source of credentials for --role-arn [env: CREDWRAP_PROFILE, AWS_PROFILE]
    #[arg(long, env = "CREDWRAP_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Session name recorded in CloudTrail [default: credwrap-<CI run id or user>-<time>]
    #[arg(long, env = "CREDWRAP_ROLE_SESSION_NAME", value_name = "NAME", value_parser = parse_session_name)]
    pub role_session_name: Option<String>,

    /// Session duration: seconds, or with a unit (90m, 1h, 1h30m); 30m to 12h [default: the
    /// profile's duration_seconds, else 1h; at most 1h when chaining roles]
    #[arg(long, env = "CREDWRAP_DURATION", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// External ID the role's trust policy requires
    #[arg(long, env = "CREDWRAP_EXTERNAL_ID", value_name = "ID", value_parser = parse_external_id)]
    pub external_id: Option<String>,

    /// Region for STS and for the command (default: from the environment or profile)
    #[arg(long, env = "CREDWRAP_REGION", value_name = "REGION", value_parser = parse_region)]
    pub region: Option<String>,

    /// MFA device (serial number or ARN): credwrap asks for a code once, gets an MFA session
    /// with GetSessionToken and assumes the role from it for the session's whole life
    #[arg(long, env = "CREDWRAP_MFA_SERIAL", value_name = "SERIAL", value_parser = parse_mfa_serial)]
    pub mfa_serial: Option<String>,

    /// The 6-digit MFA code, for scripts (otherwise asked on the terminal)
    #[arg(long, env = "CREDWRAP_MFA_CODE", value_name = "CODE", value_parser = parse_mfa_code, hide_env_values = true)]
    pub mfa_code: Option<String>,

    /// How long the MFA session lasts: 15m to 36h
    #[arg(long, env = "CREDWRAP_MFA_DURATION", value_name = "DURATION", default_value = "12h", value_parser = parse_mfa_duration)]
    pub mfa_duration: Duration,

    /// Assume the role with AssumeRoleWithWebIdentity and the OIDC token in this file, re-read at
    /// every refresh (GitHub Actions, GitLab CI, Kubernetes)
    #[arg(long, env = "CREDWRAP_WEB_IDENTITY_TOKEN_FILE", value_name = "PATH")]
    pub web_identity_token_file: Option<std::path::PathBuf>,

    /// Assume this role first and the next from it (repeatable, in order) before --role-arn;
    /// chained sessions last at most 1h
    #[arg(long, env = "CREDWRAP_VIA", value_name = "ARN", value_parser = parse_role_arn, value_delimiter = ',')]
    pub via: Vec<RoleArn>,

    /// Session tag KEY=VALUE (repeatable, at most 50)
    #[arg(long = "tag", env = "CREDWRAP_TAGS", value_name = "KEY=VALUE", value_parser = parse_tag, value_delimiter = ',')]
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
    #[arg(long, env = "CREDWRAP_SOURCE_IDENTITY", value_name = "ID", value_parser = parse_source_identity)]
    pub source_identity: Option<String>,

    /// ARN of a managed policy that limits the session (repeatable, at most 10)
    #[arg(long = "policy-arn", env = "CREDWRAP_POLICY_ARNS", value_name = "ARN", value_parser = parse_policy_arn, value_delimiter = ',')]
    pub policy_arns: Vec<String>,

    /// Inline session policy: JSON, or @FILE to read it from a file
    #[arg(long, env = "CREDWRAP_POLICY", value_name = "JSON|@FILE", value_parser = parse_policy)]
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

    /// Send SIGKILL to the command this long after the first SIGTERM/SIGINT, if it is still running
    #[arg(long, env = "CREDWRAP_KILL_AFTER", value_name = "DURATION", value_parser = parse_kill_after)]
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
        required_unless_present_any = ["completions", "man"],
        trailing_var_arg = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A session tag, validated against STS's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointKind {
    Ecs,
    Imds,
}

/// IMDS clients (botocore, the Rust SDK) stretch a credential that is about to expire, so in
/// that mode none is served with less than 25 minutes left: shorter sessions leave no room.
pub const MIN_IMDS_DURATION: Duration = Duration::from_secs(3600);

impl Cli {
    /// Rules that involve more than one option; clap's own error, so it looks and exits the same.
    pub fn check(&self) -> Result<(), clap::Error> {
        use clap::error::ErrorKind;
        if self.endpoint == EndpointKind::Imds
            && self.duration.is_some_and(|d| d < MIN_IMDS_DURATION)
        {
            return Err(usage_error(
                ErrorKind::ArgumentConflict,
                "--duration must be at least 1h with --endpoint imds: IMDS clients keep using a \
                 credential past its expiry, so credwrap never serves one with less than 25 minutes left",
            ));
        }
        if self.tags.len() > 50 {
            return Err(usage_error(
                ErrorKind::TooManyValues,
                "--tag: at most 50 session tags",
            ));
        }
        let mut keys: Vec<String> = self.tags.iter().map(|t| t.key.to_lowercase()).collect();
        keys.sort();
        if let Some(dup) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(usage_error(
                ErrorKind::ValueValidation,
                &format!(
                    "--tag: key '{}' given twice (keys are case-insensitive)",
                    dup[0]
                ),
            ));
        }
        if self.transitive_tag_keys.len() > 50 {
            return Err(usage_error(
                ErrorKind::TooManyValues,
                "--transitive-tag-key: at most 50 keys",
            ));
        }
        for k in &self.transitive_tag_keys {
            if !keys.contains(&k.to_lowercase()) {
                return Err(usage_error(
                    ErrorKind::ValueValidation,
                    &format!("--transitive-tag-key '{k}' is not the key of a --tag"),
                ));
            }
        }
        if self.policy_arns.len() > 10 {
            return Err(usage_error(
                ErrorKind::TooManyValues,
                "--policy-arn: at most 10 policy ARNs",
            ));
        }
        let policy_chars = self.policy.as_ref().map_or(0, |p| p.len())
            + self.policy_arns.iter().map(String::len).sum::<usize>();
        if policy_chars > 2048 {
            return Err(usage_error(
                ErrorKind::ValueValidation,
                &format!("--policy and --policy-arn: {policy_chars} characters together; STS allows 2048"),
            ));
        }
        if self.mfa_code.is_some() && self.mfa_serial.is_none() && self.profile.is_none() {
            return Err(usage_error(
                ErrorKind::MissingRequiredArgument,
                "--mfa-code needs --mfa-serial (or a profile with mfa_serial)",
            ));
        }
        Ok(())
    }
}

/// An error formatted and exited like clap's own.
pub fn usage_error(kind: clap::error::ErrorKind, message: &str) -> clap::Error {
    use clap::CommandFactory;
    Cli::command().error(kind, message)
}

/// A role ARN that has the shape STS accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleArn {
    arn: String,
    account: String,
    name_start: usize,
}

impl RoleArn {
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The role's name without its path: what IMDS lists under security-credentials/.
    pub fn name(&self) -> &str {
        &self.arn[self.name_start..]
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl fmt::Debug for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoleArn({})", self.arn)
    }
}

const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

const ROLE_ARN_RULE: &str =
    "expected arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME with a 12-digit account";

fn parse_role_arn(s: &str) -> Result<RoleArn, String> {
    let bad = |why: &str| format!("{why}; {ROLE_ARN_RULE}");
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return Err(bad("not an ARN"));
    }
    if !PARTITIONS.contains(&parts[1]) {
        return Err(bad(&format!("unknown partition '{}'", parts[1])));
    }
    if parts[2] != "iam" {
        return Err(bad(&format!("service is '{}', not iam", parts[2])));
    }
    if !parts[3].is_empty() {
        return Err(bad("IAM ARNs have no region"));
    }
    let account = parts[4];
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(&format!("account '{account}' is not 12 digits")));
    }
    let resource = parts[5];
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err(bad("the resource is not a role/"));
    };
    // IAM: path segments and names are [\w+=,.@-]; a name is 1-64 characters.
    let name = path_and_name.rsplit('/').next().unwrap_or_default();
    let valid_chars = |seg: &str| {
        seg.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    };
    if name.is_empty() || name.len() > 64 || !valid_chars(name) {
        return Err(bad(
            "the role name must be 1-64 characters of [A-Za-z0-9_+=,.@-]",
        ));
    }
    let path = &path_and_name[..path_and_name.len() - name.len()];
    if path.len() > 512 || path.split('/').any(|seg| !valid_chars(seg)) {
        return Err(bad(
            "the role path has characters outside [A-Za-z0-9_+=,.@-/]",
        ));
    }
    Ok(RoleArn {
        arn: s.to_string(),
        account: account.to_string(),
        name_start: s.len() - name.len(),
    })
}

/// Validates a role ARN that comes from somewhere other than the command line (a profile).
pub fn role_arn_from(s: &str) -> Result<RoleArn, String> {
    parse_role_arn(s)
}

/// STS's rule for role session names: `[\w+=,.@-]{2,64}`.
pub fn is_valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

fn parse_session_name(s: &str) -> Result<String, String> {
    if is_valid_session_name(s) {
        Ok(s.to_string())
    } else {
        Err("must be 2-64 characters of [A-Za-z0-9_+=,.@-]".to_string())
    }
}

fn parse_external_id(s: &str) -> Result<String, String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
    if (2..=1224).contains(&s.len()) && ok_chars {
        Ok(s.to_string())
    } else {
        Err("must be 2-1224 characters of [A-Za-z0-9_+=,.@:/-]".to_string())
    }
}

fn parse_region(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected a region name such as us-east-1 (lowercase letters, digits, '-')".to_string())
    }
}

fn parse_kill_after(s: &str) -> Result<Duration, String> {
    match parse_duration_secs(s) {
        Some(secs) if (1..=86_400).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err("expected a duration from 1s to 24h, e.g. 10s or 2m".into()),
    }
}

fn parse_mfa_serial(s: &str) -> Result<String, String> {
    let ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=/:,.@-".contains(c));
    if (9..=256).contains(&s.len()) && ok {
        Ok(s.to_string())
    } else {
        Err("must be 9-256 characters of [A-Za-z0-9_+=/:,.@-] (a serial number or an MFA device ARN)".into())
    }
}

fn parse_mfa_code(s: &str) -> Result<String, String> {
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err("must be the 6 digits the MFA device shows".into())
    }
}

fn parse_mfa_duration(s: &str) -> Result<Duration, String> {
    let secs = parse_duration_secs(s)
        .ok_or_else(|| format!("'{s}' is not a duration; use seconds or units (12h, 90m)"))?;
    if (900..=129_600).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(format!(
            "{secs}s is outside 15m-36h, what GetSessionToken allows"
        ))
    }
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

fn parse_tag(s: &str) -> Result<Tag, String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    if key.is_empty() || key.chars().count() > 128 || !key.chars().all(is_tag_char) {
        return Err("the key must be 1-128 letters, digits, spaces or _.:/=+-@".into());
    }
    if key.to_lowercase().starts_with("aws:") {
        return Err("keys starting with aws: are reserved".into());
    }
    if value.chars().count() > 256 || !value.chars().all(is_tag_char) {
        return Err("the value must be 0-256 letters, digits, spaces or _.:/=+-@".into());
    }
    Ok(Tag {
        key: key.to_string(),
        value: value.to_string(),
    })
}

fn parse_source_identity(s: &str) -> Result<String, String> {
    if s.to_lowercase().starts_with("aws:") {
        return Err("must not start with aws:".into());
    }
    if is_valid_session_name(s) {
        Ok(s.to_string())
    } else {
        Err("must be 2-64 characters of [A-Za-z0-9_+=,.@-]".into())
    }
}

fn parse_policy_arn(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && PARTITIONS.contains(&parts[1])
        && parts[2] == "iam"
        && parts[3].is_empty()
        && (parts[4] == "aws"
            || (parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit())))
        && parts[5]
            .strip_prefix("policy/")
            .is_some_and(|n| !n.is_empty() && !n.ends_with('/'));
    if ok && (20..=2048).contains(&s.len()) {
        Ok(s.to_string())
    } else {
        Err("expected arn:PARTITION:iam::(ACCOUNT|aws):policy/[PATH/]NAME".into())
    }
}

/// Inline JSON, or `@FILE`; must be a JSON object.
fn parse_policy(s: &str) -> Result<String, String> {
    let text = match s.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => s.to_string(),
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return Err("the policy must be a JSON object".into()),
        Err(e) => return Err(format!("the policy is not valid JSON: {e}")),
    }
    // STS counts the policy's characters; compacting removes what the file's layout added.
    let compact = serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| v.to_string())
        .unwrap_or(text);
    if compact.len() > 2048 {
        return Err(format!("{} characters; STS allows 2048", compact.len()));
    }
    Ok(compact)
}

/// Parses `3600`, `3600s`, `90m`, `1h`, `1h30m`, then checks the 30 min - 12 h bounds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs = parse_duration_secs(s).ok_or_else(|| {
        format!("'{s}' is not a duration; use seconds (3600) or units (90m, 1h, 1h30m)")
    })?;
    let d = Duration::from_secs(secs);
    if d < MIN_DURATION || d > MAX_DURATION {
        return Err(format!(
            "{secs}s is outside 30m-12h (1800-43200 s); below 30 minutes no SDK refresh window can be honoured"
        ));
    }
    Ok(d)
}

fn parse_duration_secs(s: &str) -> Option<u64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut seen_unit = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        seen_unit = true;
    }
    (seen_unit && digits.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("3600"), Some(3600));
        assert_eq!(parse_duration_secs("90m"), Some(5400));
        assert_eq!(parse_duration_secs("1h30m"), Some(5400));
        assert_eq!(parse_duration_secs("2h"), Some(7200));
        assert_eq!(parse_duration_secs("45s"), Some(45));
        assert_eq!(parse_duration_secs("1x"), None);
        assert_eq!(parse_duration_secs("h"), None);
        assert_eq!(parse_duration_secs("1h30"), None);
        assert_eq!(parse_duration_secs(""), None);
        assert!(parse_duration("29m").is_err());
        assert!(parse_duration("12h1s").is_err());
        assert!(parse_duration("30m").is_ok());
        assert!(parse_duration("12h").is_ok());
    }

    #[test]
    fn role_arns() {
        let arn = parse_role_arn("arn:aws:iam::123456789012:role/ci/deploy").unwrap();
        assert_eq!(arn.name(), "deploy");
        assert_eq!(arn.account(), "123456789012");
        assert!(parse_role_arn("arn:aws-cn:iam::123456789012:role/x").is_ok());
        assert!(parse_role_arn("arn:aws:iam::12345678901:role/x").is_err());
        assert!(parse_role_arn("arn:aws:iam::123456789012:user/x").is_err());
        assert!(parse_role_arn("arn:aws:sts::123456789012:role/x").is_err());
        assert!(parse_role_arn("arn:foo:iam::123456789012:role/x").is_err());
        assert!(parse_role_arn("arn:aws:iam::123456789012:role/").is_err());
        assert!(parse_role_arn("arn:aws:iam:us-east-1:123456789012:role/x").is_err());
        assert!(parse_role_arn("arn:aws:iam::123456789012:role/a b").is_err());
    }

    #[test]
    fn session_names_and_external_ids() {
        assert!(parse_session_name("ok").is_ok());
        assert!(parse_session_name("a").is_err());
        assert!(parse_session_name(&"a".repeat(65)).is_err());
        assert!(parse_session_name("has space").is_err());
        assert!(parse_external_id("ab:/c").is_ok());
        assert!(parse_external_id("a").is_err());
        assert!(parse_external_id("a b").is_err());
    }
}
