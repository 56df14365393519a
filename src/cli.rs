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
    /// ARN of the role to assume, e.g. arn:aws:iam::123456789012:role/deploy
    #[arg(long, env = "CREDWRAP_ROLE_ARN", value_name = "ARN", value_parser = parse_role_arn)]
    pub role_arn: RoleArn,

    /// Session name recorded in CloudTrail [default: credwrap-<CI run id or user>-<time>]
    #[arg(long, env = "CREDWRAP_ROLE_SESSION_NAME", value_name = "NAME", value_parser = parse_session_name)]
    pub role_session_name: Option<String>,

    /// Session duration: seconds, or with a unit (90m, 1h, 1h30m); 30m to 12h
    #[arg(long, env = "CREDWRAP_DURATION", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub duration: Duration,

    /// External ID the role's trust policy requires
    #[arg(long, env = "CREDWRAP_EXTERNAL_ID", value_name = "ID", value_parser = parse_external_id)]
    pub external_id: Option<String>,

    /// Region for STS and for the command (default: from the environment or profile)
    #[arg(long, env = "CREDWRAP_REGION", value_name = "REGION", value_parser = parse_region)]
    pub region: Option<String>,

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

    /// More log output on stderr (-v info, -vv debug, -vvv trace); secrets are never logged
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long)]
    pub quiet: bool,

    /// The command to run, with its arguments (put it after `--`)
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
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
        use clap::CommandFactory;
        if self.endpoint == EndpointKind::Imds && self.duration < MIN_IMDS_DURATION {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--duration must be at least 1h with --endpoint imds: IMDS clients keep using a \
                 credential past its expiry, so credwrap never serves one with less than 25 minutes left",
            ));
        }
        Ok(())
    }
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
