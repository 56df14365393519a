//! The role side: the STS calls that turn credwrap's source credentials into the role's, through
//! an MFA session and any chain of intermediate roles. [`source`] finds the source credentials;
//! [`error`] says what went wrong. The broker owns a [`Role`] and calls it to refresh.

// The role credential as STS issued it, and its time formats.
pub mod credential;
mod error;
// When refreshing stops working: what bounds it.
mod horizon;
// A profile's own credentials (SSO, credential_process), served as they are.
pub mod profile;
mod source;
mod token;
mod trust;

pub use error::{AssumeError, SetupError};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials as SdkCredentials;
use aws_sdk_sts::types::Credentials as StsCredentials;

use crate::broker::activity::Horizon;
use crate::role::credential::{fmt_time, RoleCredential};
use crate::settings::limits::RoleArn;
use crate::settings::{AssumePlan, CaBundle, Hop, Source};
use crate::sys::secret::Secret;

/// The MFA session from GetSessionToken, reused for every refresh.
#[derive(Clone)]
struct MfaSession {
    credentials: SdkCredentials,
    expires: SystemTime,
}

/// What the roles of one run share. The MFA sessions, by device: every role that needs one
/// shares it, since the code it was made with cannot be used again. The trust roots and the
/// HTTP client, by CA bundle: one connection pool, and one copy of the roots in memory.
#[derive(Clone, Default)]
pub struct Shared {
    mfa: Arc<tokio::sync::Mutex<HashMap<String, MfaSession>>>,
    connections: Arc<std::sync::Mutex<HashMap<Option<PathBuf>, Connection>>>,
}

/// The trust roots for one CA bundle (or the system's), and the HTTP client that trusts them.
#[derive(Clone)]
struct Connection {
    roots: Arc<trust::Roots>,
    http: aws_sdk_sts::config::SharedHttpClient,
}

impl Shared {
    /// The roots and client for `bundle`, made on the first request for it.
    fn connection(&self, bundle: Option<&CaBundle>) -> Result<Connection, SetupError> {
        let key = bundle.map(|b| b.path.clone());
        let mut made = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = made.get(&key) {
            return Ok(connection.clone());
        }
        let roots = Arc::new(trust::Roots::load(bundle));
        let http = source::http_client(&roots)?;
        let connection = Connection { roots, http };
        made.insert(key, connection.clone());
        Ok(connection)
    }

    /// The HTTP client for `bundle`, for a profile's own provider.
    pub fn http_client(
        &self,
        bundle: Option<&CaBundle>,
    ) -> Result<aws_sdk_sts::config::SharedHttpClient, SetupError> {
        Ok(self.connection(bundle)?.http)
    }
}

/// STS clients bound to one plan of what to assume.
pub struct Role {
    /// With the SDK's own retries: the first AssumeRole, where the user is waiting.
    conf: aws_sdk_sts::Config,
    /// Without them: the broker's backoff alone paces refreshes, so each attempt is one call,
    /// logged once, and timing stays predictable.
    refresh_conf: aws_sdk_sts::Config,
    settings: AssumePlan,
    client_region: Option<String>,
    shared: Shared,
    /// When this role was connected: what `--max-lifetime` counts from.
    started: SystemTime,
    /// The MFA session's end, once there is one.
    mfa_end: Option<SystemTime>,
    /// Where AssumeRoleWithWebIdentity's token comes from, when that is the source.
    tokens: Option<token::Tokens>,
    /// The renewal horizon as read at the last attempt: an SSO token cache is read once per
    /// attempt, not once per question.
    horizon: Option<Horizon>,
}

impl Role {
    /// Finds the source credentials and prepares the STS clients; no STS call yet. Roles made
    /// with the same `shared` share an MFA session per device and an HTTP client per CA bundle.
    pub async fn connect(settings: AssumePlan, shared: Shared) -> Result<Role, SetupError> {
        let Connection { roots, http } = shared.connection(settings.ca_bundle.as_ref())?;
        let connection = source::configure(&settings, http).await?;
        let tokens = match &settings.source {
            Source::WebIdentity { token } => Some(token::Tokens::new(token.clone(), &roots)?),
            _ => None,
        };
        let refresh_conf = connection
            .sts
            .to_builder()
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        Ok(Role {
            conf: connection.sts,
            refresh_conf,
            settings,
            client_region: connection.region,
            shared,
            started: SystemTime::now(),
            mfa_end: None,
            tokens,
            horizon: None,
        })
    }

    /// The role this plan ends in: the one served.
    pub fn target_arn(&self) -> &RoleArn {
        &self.settings.target.role_arn
    }

    /// The region the child should use: the one credwrap found, if any.
    pub fn client_region(&self) -> Option<&str> {
        self.client_region.as_deref()
    }

    /// The first AssumeRole (and MFA session), retried by the SDK on transient errors.
    pub async fn assume(&mut self) -> Result<RoleCredential, AssumeError> {
        let conf = self.conf.clone();
        self.assume_with(&conf).await
    }

    /// One attempt, no SDK retries: the caller decides when to try again.
    pub async fn reassume(&mut self) -> Result<RoleCredential, AssumeError> {
        let conf = self.refresh_conf.clone();
        self.assume_with(&conf).await
    }

    /// The earliest end of what this role is refreshed from, as of the last attempt.
    pub fn horizon(&self) -> Option<Horizon> {
        self.horizon.clone()
    }

    /// The earliest end of what this role is refreshed from: `--max-lifetime`, a token
    /// variable's `exp`, the MFA session, the SSO token as cached now.
    fn read_horizon(&self) -> Option<Horizon> {
        let s = &self.settings;
        let mut bounds = Vec::new();
        bounds.extend(horizon::max_lifetime(self.started, s.max_lifetime));
        if let Source::WebIdentity { token } = &s.source {
            bounds.extend(horizon::token_variable(token));
        }
        bounds.extend(self.mfa_end.map(horizon::mfa_session));
        bounds.extend(s.sso.as_ref().and_then(horizon::sso_token));
        bounds.extend(s.source_session.as_ref().and_then(horizon::source_session));
        Horizon::earliest(bounds)
    }

    /// The role and its source, in words (no secret: names and paths only).
    pub fn about(&self) -> crate::broker::activity::About {
        let s = &self.settings;
        let source = match &s.source {
            Source::DefaultChain => "the default credential chain".to_string(),
            Source::Profile(p) => format!("profile {p}"),
            Source::ProfileKeys(_) => "a profile's static keys".to_string(),
            Source::Environment => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string(),
            Source::Ec2InstanceMetadata => "the instance role (IMDS)".to_string(),
            Source::EcsContainer => "the container's credentials".to_string(),
            Source::WebIdentity { .. } => match &self.tokens {
                Some(tokens) => format!("web identity from {}", tokens.describe()),
                None => "web identity".to_string(),
            },
        };
        let via: Vec<&str> = s.hops.iter().map(|h| h.role_arn.as_str()).collect();
        let source = match (via.is_empty(), &s.mfa) {
            (true, None) => source,
            (true, Some(_)) => format!("{source} with an MFA session"),
            (false, mfa) => format!(
                "{source}{}, via {}",
                if mfa.is_some() {
                    " with an MFA session"
                } else {
                    ""
                },
                via.join(", ")
            ),
        };
        crate::broker::activity::About {
            role: s.target.role_arn.to_string(),
            source,
        }
    }

    /// Says at start when refreshing will stop, if anything bounds it: loudly when the job may
    /// outlive it.
    pub fn say_horizon_at_start(&self) {
        if let Some(session) = &self.settings.source_session {
            horizon::warn_of_unseen_end(session);
        }
        if let Some(h) = self.horizon() {
            horizon::say_at_start(
                &h,
                self.settings.target.duration,
                self.settings.max_lifetime,
            );
        }
    }

    /// The whole chain, and a check that what STS gave is a credential worth serving.
    async fn assume_with(
        &mut self,
        conf: &aws_sdk_sts::Config,
    ) -> Result<RoleCredential, AssumeError> {
        let asked = SystemTime::now();
        let chained = self.assume_chain(conf).await;
        // After the attempt, whatever its outcome: it may have begun an MFA session, and a new
        // `aws sso login` moves the horizon even while refreshing fails.
        self.horizon = self.read_horizon();
        let credential = chained?;
        checked_expiry(credential, asked, self.settings.target.duration)
            .map_err(|e| e.doing(format!("assume {}", self.settings.target.role_arn)))
    }

    async fn assume_chain(
        &mut self,
        conf: &aws_sdk_sts::Config,
    ) -> Result<RoleCredential, AssumeError> {
        // Whatever signs the first AssumeRole: the source, or the MFA session made from it.
        let mut signer = self.mfa_credentials(conf).await?;
        let s = &self.settings;
        let hops: Vec<&Hop> = s.hops.iter().chain(std::iter::once(&s.target)).collect();
        let mut rest = &hops[..];
        if let Some(tokens) = &self.tokens {
            let c = web_identity(conf, tokens, hops[0]).await?;
            signer = Some(c.to_sdk("credwrap-chain"));
            rest = &hops[1..];
            if rest.is_empty() {
                return Ok(c);
            }
        }
        let mut result = None;
        for hop in rest {
            let client = client_with(conf, signer.take());
            let c = assume_role(&client, hop).await?;
            signer = Some(c.to_sdk("credwrap-chain"));
            result = Some(c);
        }
        result.ok_or_else(|| AssumeError::local("no role to assume", false).doing("assume a role"))
    }

    /// The MFA session's credentials, getting the session first if there is none yet.
    async fn mfa_credentials(
        &mut self,
        conf: &aws_sdk_sts::Config,
    ) -> Result<Option<SdkCredentials>, AssumeError> {
        let Some(mfa) = &self.settings.mfa else {
            return Ok(None);
        };
        // Held across GetSessionToken: a second role waits for the session the first makes.
        let mut sessions = self.shared.mfa.lock().await;
        if let Some(session) = sessions.get(&mfa.serial) {
            self.mfa_end = Some(session.expires);
            return Ok(Some(session.credentials.clone()));
        }
        let client = aws_sdk_sts::Client::from_conf(conf.clone());
        let out = client
            .get_session_token()
            .serial_number(&mfa.serial)
            .token_code(mfa.code.expose())
            .duration_seconds(secs_i32(mfa.duration))
            .send()
            .await
            .map_err(|e| AssumeError::from_sdk(e).doing("get an MFA session (GetSessionToken)"))?;
        let c = credential_from(out.credentials(), None, &self.settings.target.role_arn)
            .map_err(|e| e.doing("get an MFA session (GetSessionToken)"))?;
        tracing::info!(expires = %fmt_time(c.expiration), "MFA session started");
        self.mfa_end = Some(c.expiration);
        let credentials = c.to_sdk("credwrap-mfa");
        sessions.insert(
            mfa.serial.clone(),
            MfaSession {
                credentials: credentials.clone(),
                expires: c.expiration,
            },
        );
        Ok(Some(credentials))
    }
}

/// STS is trusted for the keys, not blindly for the clock. A credential that has expired before
/// it arrived is refused (retried). One that claims to last longer than asked for (a broken
/// proxy, a clock far off: "year 2999") is planned as if it expired when asked, counted from
/// when we asked, which is never later than the truth: otherwise it would never be refreshed.
fn checked_expiry(
    mut c: RoleCredential,
    asked: SystemTime,
    duration: Duration,
) -> Result<RoleCredential, AssumeError> {
    if c.expiration <= c.received {
        return Err(AssumeError::suspicious(format!(
            "STS answered with a credential that had already expired (at {}) when it \
                 arrived at {}; is the system clock right, or is a proxy replaying answers?",
            fmt_time(c.expiration),
            fmt_time(c.received)
        )));
    }
    let latest = asked + duration;
    // STS rounds to the second; anything well past what was asked is not STS's doing.
    if c.expiration > latest + Duration::from_secs(60) {
        tracing::warn!(
            "STS says the credential expires at {}, later than the {}s asked for; planning \
             for {} instead, so that it is still refreshed in time",
            fmt_time(c.expiration),
            duration.as_secs(),
            fmt_time(latest)
        );
        c.expiration = latest;
    }
    Ok(c)
}

/// AssumeRole for one hop, with that hop's session options.
async fn assume_role(
    client: &aws_sdk_sts::Client,
    hop: &Hop,
) -> Result<RoleCredential, AssumeError> {
    let role = &hop.role_arn;
    let doing = || format!("assume {role}");
    let o = &hop.options;
    let mut req = client
        .assume_role()
        .role_arn(role.as_str())
        .role_session_name(&hop.session_name)
        .duration_seconds(secs_i32(hop.duration))
        .set_external_id(o.external_id.clone())
        .set_source_identity(o.source_identity.clone())
        .set_policy(o.policy.clone())
        .set_policy_arns(policy_descriptors(&o.policy_arns));
    for tag in &o.tags {
        let tag = aws_sdk_sts::types::Tag::builder()
            .key(&tag.key)
            .value(&tag.value)
            .build()
            .map_err(|e| {
                AssumeError::local(format!("invalid request: {e}"), false).doing(doing())
            })?;
        req = req.tags(tag);
    }
    for key in &o.transitive_tag_keys {
        req = req.transitive_tag_keys(key);
    }
    let out = req
        .send()
        .await
        .map_err(|e| AssumeError::from_sdk(e).doing(doing()))?;
    issued(out.credentials(), out.assumed_role_user(), role, doing)
}

/// AssumeRoleWithWebIdentity for the first hop, with a fresh token; its policies are the only
/// options it takes.
async fn web_identity(
    conf: &aws_sdk_sts::Config,
    tokens: &token::Tokens,
    hop: &Hop,
) -> Result<RoleCredential, AssumeError> {
    let role = &hop.role_arn;
    let doing = || format!("assume {role} with web identity");
    let token = tokens.fetch().await.map_err(|e| e.doing(doing()))?;
    let out = aws_sdk_sts::Client::from_conf(conf.clone())
        .assume_role_with_web_identity()
        .role_arn(role.as_str())
        .role_session_name(&hop.session_name)
        .web_identity_token(token.expose())
        .duration_seconds(secs_i32(hop.duration))
        .set_policy(hop.options.policy.clone())
        .set_policy_arns(policy_descriptors(&hop.options.policy_arns))
        .send()
        .await
        .map_err(|e| AssumeError::from_sdk(e).doing(doing()))?;
    issued(out.credentials(), out.assumed_role_user(), role, doing)
}

/// The credential of an AssumeRole* answer, or what it lacked, saying which call it was.
fn issued(
    creds: Option<&StsCredentials>,
    user: Option<&aws_sdk_sts::types::AssumedRoleUser>,
    role: &RoleArn,
    doing: impl Fn() -> String,
) -> Result<RoleCredential, AssumeError> {
    credential_from(creds, user.map(|u| u.arn()), role).map_err(|e| e.doing(doing()))
}

fn policy_descriptors(arns: &[String]) -> Option<Vec<aws_sdk_sts::types::PolicyDescriptorType>> {
    (!arns.is_empty()).then(|| {
        arns.iter()
            .map(|arn| {
                aws_sdk_sts::types::PolicyDescriptorType::builder()
                    .arn(arn)
                    .build()
            })
            .collect()
    })
}

fn secs_i32(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

fn client_with(
    conf: &aws_sdk_sts::Config,
    credentials: Option<SdkCredentials>,
) -> aws_sdk_sts::Client {
    match credentials {
        Some(c) => {
            aws_sdk_sts::Client::from_conf(conf.to_builder().credentials_provider(c).build())
        }
        None => aws_sdk_sts::Client::from_conf(conf.clone()),
    }
}

/// Our credential from STS's response element; the account comes from the assumed-role ARN.
fn credential_from(
    creds: Option<&StsCredentials>,
    assumed_arn: Option<&str>,
    role: &RoleArn,
) -> Result<RoleCredential, AssumeError> {
    let received = SystemTime::now();
    let malformed = |what: &str| AssumeError::local(format!("STS answered without {what}"), true);
    let creds = creds.ok_or_else(|| malformed("credentials"))?;
    let expiration =
        SystemTime::try_from(*creds.expiration()).map_err(|_| malformed("a valid Expiration"))?;
    let assumed_role_arn = assumed_arn.unwrap_or_default().to_string();
    // arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION
    let account_id = assumed_role_arn
        .split(':')
        .nth(4)
        .filter(|a| a.len() == 12)
        .unwrap_or(role.account())
        .to_string();
    Ok(RoleCredential {
        access_key_id: creds.access_key_id().to_string(),
        secret_access_key: Secret::new(creds.secret_access_key()),
        session_token: Secret::new(creds.session_token()),
        expiration,
        received,
        account_id,
        assumed_role_arn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(received: SystemTime, expiration: SystemTime) -> RoleCredential {
        RoleCredential {
            access_key_id: "ASIA".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            received,
            expiration,
            account_id: "123456789012".into(),
            assumed_role_arn: String::new(),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_credential_expired_on_arrival_is_refused_and_retried_with_both_times() {
        let asked = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let received = asked + Duration::from_secs(1);
        let expired = asked - Duration::from_secs(60);
        let e = checked_expiry(credential(received, expired), asked, HOUR).unwrap_err();
        assert!(e.retryable && e.is_serious(), "{e:?}");
        assert!(e.to_string().contains("had already expired"), "{e}");
        assert!(e.to_string().contains(&fmt_time(expired)), "{e}");
        assert!(e.to_string().contains(&fmt_time(received)), "{e}");
    }

    #[test]
    fn an_expiration_far_past_what_was_asked_is_planned_from_when_it_was_asked() {
        let asked = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let received = asked + Duration::from_secs(2);
        let year_2999 = SystemTime::UNIX_EPOCH + Duration::from_secs(32_503_680_000);
        let c = checked_expiry(credential(received, year_2999), asked, HOUR).unwrap();
        assert_eq!(c.expiration, asked + HOUR);
        // What STS rounds to the second is left alone.
        let honest = asked + HOUR + Duration::from_secs(30);
        let c = checked_expiry(credential(received, honest), asked, HOUR).unwrap();
        assert_eq!(c.expiration, honest);
    }
}
