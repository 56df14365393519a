//! The container-credentials response body, in the shape every SDK's container provider reads.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use crate::broker::fmt_time;
use crate::role::Credential;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    code: &'static str,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    account_id: &'a str,
}

pub fn body(c: &Credential) -> Bytes {
    let body = Body {
        code: "Success",
        kind: "AWS-HMAC",
        access_key_id: &c.access_key_id,
        secret_access_key: c.secret_access_key.expose(),
        token: c.session_token.expose(),
        expiration: fmt_time(floor_to_second(c.expiration)),
        account_id: &c.account_id,
    };
    // Serialising plain strings cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// `YYYY-MM-DDTHH:MM:SSZ` is what the strictest parsers take; rounding down never promises a
/// credential for longer than STS does.
fn floor_to_second(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn expiration_is_whole_seconds_utc() {
        let c = Credential {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            expiration: UNIX_EPOCH + Duration::from_millis(1_800_000_000_999),
            received: UNIX_EPOCH,
            account_id: "123456789012".into(),
            assumed_role_arn: String::new(),
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&c)).unwrap();
        assert_eq!(v["Expiration"], "2027-01-15T08:00:00Z");
        assert_eq!(v["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(v["Token"], "t");
        assert_eq!(v["AccountId"], "123456789012");
    }
}
