//! The role credential credwrap hands out, and the time helpers every module formats it with.
//!
//! Four things are called "credentials" in this program; only this one is ours:
//! - [`RoleCredential`]: a set of role keys as STS issued them, what the endpoint serves;
//! - `broker::CredentialReader`: the endpoint's read handle on the current one;
//! - `aws_credential_types::Credentials` (imported as `SdkCredentials`): what signs a request;
//! - `aws_sdk_sts::types::Credentials` (imported as `StsCredentials`): STS's response element.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys::secret::Secret;

/// A set of role credentials, as STS issued them.
#[derive(Debug, Clone)]
pub struct RoleCredential {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: SystemTime,
    /// When we received it: the start of its lifetime as far as refresh planning goes.
    pub received: SystemTime,
    pub account_id: String,
    pub assumed_role_arn: String,
}

impl RoleCredential {
    /// The credential as an SDK signs with it: the next hop of a chain, or a test's request.
    pub fn to_sdk(&self, provider_name: &'static str) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose(),
            Some(self.session_token.expose().to_string()),
            Some(self.expiration),
            provider_name,
        )
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (with fractions only when `t` has them): RFC 3339 in UTC.
pub fn fmt_time(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| "?".to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ` is what the strictest parsers take; rounding down never promises a
/// credential for longer than STS does.
pub fn floor_to_second(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// What SDKs read: whole seconds, UTC, `Z`.
pub fn fmt_expiration(t: SystemTime) -> String {
    fmt_time(floor_to_second(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_are_whole_seconds_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_800_000_000_999);
        assert_eq!(fmt_expiration(t), "2027-01-15T08:00:00Z");
        assert_eq!(
            floor_to_second(t),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
    }
}
