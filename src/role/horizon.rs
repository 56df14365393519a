//! The renewal horizon: when refreshing a role stops working because something it is refreshed
//! from ends and credwrap cannot renew it. Each bound is found where it is known:
//! `--max-lifetime` at start, a token variable's `exp` at start, the MFA session's end once it is
//! made, an SSO token's `expiresAt` from the SSO token cache, read again at every refresh (so a
//! new `aws sso login` moves it).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::broker::activity::Horizon;
use crate::role::credential::fmt_time;
use crate::settings::{SourceSession, SsoLogin, TokenSource};

/// The bound `--max-lifetime` sets, counted from `started`.
pub fn max_lifetime(started: SystemTime, max: Option<Duration>) -> Option<Horizon> {
    Some(Horizon {
        at: started + max?,
        what: "--max-lifetime ends serving".into(),
        fix: "give a longer --max-lifetime".into(),
    })
}

/// A token in a variable cannot renew: its `exp` bounds refreshing.
pub fn token_variable(source: &TokenSource) -> Option<Horizon> {
    let TokenSource::Variable { name, token } = source else {
        return None;
    };
    Some(Horizon {
        at: super::token::jwt_expiry(token.expose())?,
        what: format!("the OIDC token in {name} expires"),
        fix: "use a token that renews (--web-identity-github, --web-identity-token-command, a \
              token file the CI rewrites)"
            .into(),
    })
}

/// Source keys that are a session's, where its end is said.
pub fn source_session(session: &SourceSession) -> Option<Horizon> {
    Some(Horizon {
        at: session.expires?,
        what: format!("the source session ({}) expires", session.what),
        fix: SESSION_FIX.into(),
    })
}

const SESSION_FIX: &str = "give credwrap source credentials that renew (a profile, SSO, an \
                           instance role) rather than a session's keys";

/// Source keys that are a session's whose end is not said: refreshing will stop when it ends,
/// and credwrap cannot say when. Said once, at start.
pub fn warn_of_unseen_end(session: &SourceSession) {
    if session.expires.is_none() {
        tracing::warn!(
            "credwrap's source credentials are a session ({}) it cannot renew: refreshing the \
             role stops when that session ends, which credwrap cannot see (a role session lasts \
             at most 12h; one from role chaining, at most 1h). Set AWS_CREDENTIAL_EXPIRATION \
             to its expiry to have it said, or {SESSION_FIX}",
            session.what
        );
    }
}

/// The MFA session, once made: credwrap never asks for a second code.
pub fn mfa_session(ends: SystemTime) -> Horizon {
    Horizon {
        at: ends,
        what: "the MFA session ends".into(),
        fix: "restart credwrap with a new code and a longer --mfa-duration (up to 36h)".into(),
    }
}

/// The SSO access token in the cache, read now (once). None when there is no cached token, or
/// when it carries a refresh token: the SDK then renews it by itself until the IAM Identity
/// Center session ends, which the cache does not say.
pub fn sso_token(sso: &SsoLogin) -> Option<Horizon> {
    let text = std::fs::read_to_string(cache_file(sso)?).ok()?;
    let cached: serde_json::Value = serde_json::from_str(&text).ok()?;
    if cached["refreshToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return None;
    }
    let at = parse_expires_at(cached["expiresAt"].as_str()?)?;
    Some(Horizon {
        at,
        what: format!("the SSO token of profile {} expires", sso.profile),
        fix: format!(
            "run `{}`: the next refresh uses the new token, no restart needed",
            sso.login_command()
        ),
    })
}

/// `~/.aws/sso/cache/<sha1 of the session name, or of the start URL>.json`, as botocore and
/// aws-config name it.
fn cache_file(sso: &SsoLogin) -> Option<PathBuf> {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(sso.cache_key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(sso.cache_dir.join(format!("{hex}.json")))
}

/// `2026-12-06T23:00:00Z`, as the CLI writes it; older CLIs wrote `2026-12-06T23:00:00UTC`.
fn parse_expires_at(text: &str) -> Option<SystemTime> {
    let text = text
        .strip_suffix("UTC")
        .map_or(text.to_string(), |t| format!("{t}Z"));
    let t =
        aws_smithy_types::DateTime::from_str(&text, aws_smithy_types::date_time::Format::DateTime)
            .ok()?;
    SystemTime::try_from(t).ok()
}

/// What is said at start: loudly when refreshing may stop while the job still runs (the
/// job's length is known only from --max-lifetime; without it, when even the first refresh
/// would come after the horizon).
pub fn say_at_start(horizon: &Horizon, session: Duration, job: Option<Duration>) {
    let now = SystemTime::now();
    let message = format!(
        "refreshing can go on until {} ({}), when {}: the credentials run out by about {}; \
         a job that may last longer: {}",
        fmt_time(horizon.at),
        match horizon.at.duration_since(now) {
            Ok(left) => format!("in {}m", left.as_secs() / 60),
            Err(_) => "already".to_string(),
        },
        horizon.what,
        fmt_time(horizon.at + session),
        horizon.fix
    );
    // A refresh comes at about half the session at the latest.
    let outlived =
        horizon.at <= now + session / 2 || job.is_some_and(|j| now + j > horizon.at + session / 2);
    if outlived {
        tracing::warn!("{message}");
    } else {
        tracing::info!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_file_is_named_as_the_sdks_name_it() {
        // What botocore computes: hashlib.sha1(start_url.encode()).hexdigest().
        let sso = SsoLogin {
            profile: "dev".into(),
            cache_key: "https://d-abc123.awsapps.com/start".into(),
            cache_dir: PathBuf::from("/c"),
            session: None,
        };
        assert_eq!(
            cache_file(&sso).unwrap(),
            PathBuf::from("/c/40a89917e3175433e361b710a9d43528d7f1890a.json")
        );
    }

    #[test]
    fn both_expiry_forms_are_read() {
        let z = parse_expires_at("2026-12-06T23:00:00Z").unwrap();
        assert_eq!(parse_expires_at("2026-12-06T23:00:00UTC"), Some(z));
        assert_eq!(fmt_time(z), "2026-12-06T23:00:00Z");
        assert_eq!(parse_expires_at("tomorrow"), None);
    }
}
