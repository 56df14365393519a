//! What STS and IAM accept, checked here so that bad input exits 2 before any network call.
//!
//! Each parser returns a message that states the rule; clap (or the settings step) names the
//! option. Rules that involve several values (tag counts, policy size) are in `settings`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Sessions shorter than this leave no room for the SDKs' refresh windows (botocore refetches 15
/// minutes before expiry and fails 10 minutes before).
pub const MIN_DURATION: Duration = Duration::from_secs(30 * 60);
/// The longest session IAM allows a role (its MaxSessionDuration can go up to 12 hours).
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 3600);
/// STS's default, and what credwrap asks for unless told otherwise.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);
/// Chained role sessions last at most an hour: STS's rule for role chaining.
pub const CHAINED_MAX: Duration = Duration::from_secs(3600);
/// IMDS clients (botocore, the Rust SDK) stretch a credential that is about to expire, so in
/// that mode none is served with less than 25 minutes left: shorter sessions leave no room.
pub const MIN_IMDS_DURATION: Duration = Duration::from_secs(3600);

pub const MAX_TAGS: usize = 50;
pub const MAX_TRANSITIVE_TAG_KEYS: usize = 50;
pub const MAX_POLICY_ARNS: usize = 10;
/// Inline policy and policy ARNs together, in characters.
pub const MAX_POLICY_CHARS: usize = 2048;

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

/// IAM's `[\w+=,.@-]`: role names, path segments, session names, source identities.
fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

const IAM_NAME_CLASS: &str = "[A-Za-z0-9_+=,.@-]";

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

    /// `aws`, `aws-cn`, ...: the ARN's second field.
    pub fn partition(&self) -> &str {
        self.arn.split(':').nth(1).unwrap_or("aws")
    }

    /// The role's path and name after `role/`: what an instance profile of the same name has.
    pub fn path_and_name(&self) -> &str {
        self.arn.split_once(":role/").map_or("", |(_, p)| p)
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

impl FromStr for RoleArn {
    type Err = String;

    fn from_str(s: &str) -> Result<RoleArn, String> {
        let bad = |why: &str| {
            format!(
                "{why}; expected arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME with a 12-digit account"
            )
        };
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
        if !is_account_id(account) {
            return Err(bad(&format!("account '{account}' is not 12 digits")));
        }
        let Some(path_and_name) = parts[5].strip_prefix("role/") else {
            return Err(bad("the resource is not a role/"));
        };
        let name = path_and_name.rsplit('/').next().unwrap_or_default();
        if name.is_empty() || name.len() > 64 || !name.chars().all(is_iam_name_char) {
            return Err(bad(&format!(
                "the role name must be 1-64 characters of {IAM_NAME_CLASS}"
            )));
        }
        let path = &path_and_name[..path_and_name.len() - name.len()];
        if path.len() > 512
            || path
                .split('/')
                .any(|seg| !seg.chars().all(is_iam_name_char))
        {
            return Err(bad(&format!(
                "the role path has characters outside {IAM_NAME_CLASS} and /"
            )));
        }
        Ok(RoleArn {
            arn: s.to_string(),
            account: account.to_string(),
            name_start: s.len() - name.len(),
        })
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A role the command may use besides the default one, under a profile name of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRole {
    /// The profile name a client selects it by (`AWS_PROFILE`, `--profile`, `profile_name`).
    pub name: String,
    /// The role; none for the role of the AWS config's profile of that name.
    pub arn: Option<RoleArn>,
}

/// `NAME=ARN`, or `NAME` alone for the profile of that name. NAME is what every SDK accepts in
/// a `[profile NAME]` header: 1-64 of `[A-Za-z0-9_.@+-]`, and not `default`, which is the
/// default role's.
pub fn named_role(s: &str) -> Result<NamedRole, String> {
    let s = s.trim();
    let (name, arn) = match s.split_once('=') {
        Some((name, arn)) => (name.trim(), Some(RoleArn::from_str(arn.trim())?)),
        None => (s, None),
    };
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@+-".contains(c));
    if !name_ok {
        return Err(format!(
            "{name:?} is not a profile name: NAME must be 1-64 characters of [A-Za-z0-9_.@+-] \
             (written NAME=ARN, or NAME for a profile of your AWS config)"
        ));
    }
    if name.eq_ignore_ascii_case("default") {
        return Err(
            "default is the default role's profile (what --role-arn or --profile gives); name \
             the extra role otherwise"
                .into(),
        );
    }
    Ok(NamedRole {
        name: name.to_string(),
        arn,
    })
}

/// STS's rule for role session names: `[\w+=,.@-]{2,64}`.
pub fn is_valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len()) && s.chars().all(is_iam_name_char)
}

pub fn session_name(s: &str) -> Result<String, String> {
    if is_valid_session_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!("must be 2-64 characters of {IAM_NAME_CLASS}"))
    }
}

/// Like a session name, and not starting with `aws:`.
pub fn source_identity(s: &str) -> Result<String, String> {
    if s.to_lowercase().starts_with("aws:") {
        return Err("must not start with aws:".into());
    }
    session_name(s)
}

pub fn external_id(s: &str) -> Result<String, String> {
    let ok_chars = s
        .chars()
        .all(|c| is_iam_name_char(c) || c == ':' || c == '/');
    if (2..=1224).contains(&s.len()) && ok_chars {
        Ok(s.to_string())
    } else {
        Err("must be 2-1224 characters of [A-Za-z0-9_+=,.@:/-]".to_string())
    }
}

pub fn region(s: &str) -> Result<String, String> {
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

pub fn mfa_serial(s: &str) -> Result<String, String> {
    let ok = s
        .chars()
        .all(|c| is_iam_name_char(c) || c == '/' || c == ':');
    if (9..=256).contains(&s.len()) && ok {
        Ok(s.to_string())
    } else {
        Err("must be 9-256 characters of [A-Za-z0-9_+=/:,.@-] (a serial number or an MFA device ARN)".into())
    }
}

pub fn mfa_code(s: &str) -> Result<String, String> {
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err("must be the 6 digits the MFA device shows".into())
    }
}

/// GetSessionToken's bounds: 15 minutes to 36 hours.
pub fn mfa_duration(s: &str) -> Result<Duration, String> {
    let secs = duration_secs(s)
        .ok_or_else(|| format!("'{s}' is not a duration; use seconds or units (12h, 90m)"))?;
    if (900..=129_600).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(format!(
            "{secs}s is outside 15m-36h, what GetSessionToken allows"
        ))
    }
}

pub fn kill_after(s: &str) -> Result<Duration, String> {
    duration_within(s, 1..=86_400, "1s to 24h, e.g. 10s or 2m")
}

/// How long a token command or token service may take: 1s to 10m.
pub fn token_timeout(s: &str) -> Result<Duration, String> {
    duration_within(s, 1..=600, "1s to 10m, e.g. 15s")
}

/// How long to keep asking a token service at start: 0 (not again) to 10m.
pub fn token_retry(s: &str) -> Result<Duration, String> {
    duration_within(s, 0..=600, "0 to 10m, e.g. 60s")
}

/// How long whole-job mode (`--serve`) may serve: 1m to 30 days (self-hosted runners keep jobs
/// for days).
pub fn max_lifetime(s: &str) -> Result<Duration, String> {
    duration_within(s, 60..=30 * 86_400, "1m to 30 days, e.g. 6h or 3d")
}

/// A duration of whole seconds in `range`; else "expected a duration from `bounds`".
fn duration_within(
    s: &str,
    range: std::ops::RangeInclusive<u64>,
    bounds: &str,
) -> Result<Duration, String> {
    match duration_secs(s) {
        Some(secs) if range.contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!("expected a duration from {bounds}")),
    }
}

/// A session tag, validated against STS's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

pub fn tag(s: &str) -> Result<Tag, String> {
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

pub fn policy_arn(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && PARTITIONS.contains(&parts[1])
        && parts[2] == "iam"
        && parts[3].is_empty()
        && (parts[4] == "aws" || is_account_id(parts[4]))
        && parts[5]
            .strip_prefix("policy/")
            .is_some_and(|n| !n.is_empty() && !n.ends_with('/'));
    if ok && (20..=2048).contains(&s.len()) {
        Ok(s.to_string())
    } else {
        Err("expected arn:PARTITION:iam::(ACCOUNT|aws):policy/[PATH/]NAME".into())
    }
}

/// Inline JSON, or `@FILE`; must be a JSON object. Returned compacted: STS counts characters,
/// and the file's layout is not part of the policy.
pub fn policy(s: &str) -> Result<String, String> {
    let text = match s.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => s.to_string(),
    };
    let compact = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v @ serde_json::Value::Object(_)) => v.to_string(),
        Ok(_) => return Err("the policy must be a JSON object".into()),
        Err(e) => return Err(format!("the policy is not valid JSON: {e}")),
    };
    if compact.len() > MAX_POLICY_CHARS {
        return Err(format!(
            "{} characters; STS allows {MAX_POLICY_CHARS}",
            compact.len()
        ));
    }
    Ok(compact)
}

/// A role session length: `3600`, `3600s`, `90m`, `1h`, `1h30m`, within 30 min - 12 h.
pub fn session_duration(s: &str) -> Result<Duration, String> {
    let secs = duration_secs(s).ok_or_else(|| {
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

/// What STS itself accepts for DurationSeconds (15 min - 12 h): for roles assumed on the way to
/// the target, whose sessions credwrap does not serve.
pub fn sts_duration(s: &str) -> Result<Duration, String> {
    match duration_secs(s) {
        Some(secs) if (900..=43_200).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!("'{s}' is not 900-43200 seconds")),
    }
}

fn duration_secs(s: &str) -> Option<u64> {
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
            'd' => 86_400,
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
        assert_eq!(duration_secs("3600"), Some(3600));
        assert_eq!(duration_secs("90m"), Some(5400));
        assert_eq!(duration_secs("1h30m"), Some(5400));
        assert_eq!(duration_secs("2h"), Some(7200));
        assert_eq!(duration_secs("45s"), Some(45));
        assert_eq!(duration_secs("1x"), None);
        assert_eq!(duration_secs("h"), None);
        assert_eq!(duration_secs("1h30"), None);
        assert_eq!(duration_secs(""), None);
        assert!(session_duration("29m").is_err());
        assert!(session_duration("12h1s").is_err());
        assert!(session_duration("30m").is_ok());
        assert!(session_duration("12h").is_ok());
    }

    #[test]
    fn role_arns() {
        let arn: RoleArn = "arn:aws:iam::123456789012:role/ci/deploy".parse().unwrap();
        assert_eq!(arn.name(), "deploy");
        assert_eq!(arn.account(), "123456789012");
        for ok in [
            "arn:aws-cn:iam::123456789012:role/x",
            "arn:aws:iam::123456789012:role/a/b/c+=,.@-_x",
        ] {
            assert!(ok.parse::<RoleArn>().is_ok(), "{ok}");
        }
        for bad in [
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:sts::123456789012:role/x",
            "arn:foo:iam::123456789012:role/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:role/a b",
            "arn:aws:iam::123456789012:role/a b/x",
        ] {
            assert!(bad.parse::<RoleArn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn session_names_and_external_ids() {
        assert!(session_name("ok").is_ok());
        assert!(session_name("a").is_err());
        assert!(session_name(&"a".repeat(65)).is_err());
        assert!(session_name("has space").is_err());
        assert!(source_identity("aws:me").is_err());
        assert!(external_id("ab:/c").is_ok());
        assert!(external_id("a").is_err());
        assert!(external_id("a b").is_err());
    }
}
