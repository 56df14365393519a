//! The role side: credwrap's own source credentials (the SDK's default chain, a profile, web
//! identity, an MFA session) and the STS calls that turn them into the role's credentials,
//! through any chain of intermediate roles.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::region::Region;

use crate::cli::RoleArn;
use crate::secret::Secret;
use crate::settings::{Settings, Source};

/// STS is global; when nothing names a region, the SDKs and the AWS CLI fall back to us-east-1 too.
const FALLBACK_REGION: &str = "us-east-1";

/// A set of role credentials, as STS issued them.
#[derive(Debug, Clone)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: SystemTime,
    /// When we received it: the start of its lifetime as far as refresh planning goes.
    pub received: SystemTime,
    pub account_id: String,
    pub assumed_role_arn: String,
}

/// Why credwrap could not get going, phrased for the person at the terminal.
#[derive(Debug)]
pub struct SetupError {
    pub message: String,
    pub hint: &'static str,
}

/// A failed AssumeRole call, classified for the retry policy and for the user.
#[derive(Debug, Clone)]
pub struct AssumeError {
    /// The STS error code (`AccessDenied`, `Throttling`, ...), when STS answered at all.
    pub code: Option<String>,
    pub message: String,
    pub retryable: bool,
}

impl AssumeError {
    /// One line telling the user what to do about this error.
    pub fn hint(&self) -> &'static str {
        match self.code.as_deref() {
            Some("AccessDenied") => {
                "check that the role's trust policy allows the source identity \
                 (`aws sts get-caller-identity` shows it) to call sts:AssumeRole"
            }
            Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException") => {
                "the source credentials are not valid: check AWS_ACCESS_KEY_ID/AWS_PROFILE"
            }
            Some("ExpiredToken" | "ExpiredTokenException") => {
                "the source credentials have expired: renew them (e.g. `aws sso login`) and retry"
            }
            Some("RegionDisabledException") => {
                "STS is not activated in this region: activate it in IAM or pick another with --region"
            }
            Some("ValidationError" | "MalformedPolicyDocument" | "PackedPolicyTooLarge") => {
                "STS rejected a parameter: check --role-arn, --duration (the role's \
                 MaxSessionDuration) and --external-id"
            }
            Some(_) => "see the STS error above",
            None => "could not reach STS: check the network, any proxy, --region and AWS_ENDPOINT_URL_STS",
        }
    }

    fn from_sdk<E>(err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_string);
        let (message, status) = match &err {
            SdkError::ServiceError(se) => (
                err.message().unwrap_or("no message").to_string(),
                Some(se.raw().status().as_u16()),
            ),
            SdkError::TimeoutError(_) => ("STS did not answer in time".to_string(), None),
            _ => (error_chain(&err), None),
        };
        let retryable = match (&err, code.as_deref()) {
            (
                _,
                Some(
                    "Throttling"
                    | "ThrottlingException"
                    | "RequestTimeout"
                    | "IDPCommunicationError",
                ),
            )
            | (_, Some("ServiceUnavailable" | "InternalFailure" | "InternalError")) => true,
            (SdkError::ServiceError(_), _) => status.is_some_and(|s| s >= 500),
            (SdkError::ConstructionFailure(_), _) => false,
            // Dispatch failures (refused, reset, DNS), timeouts and garbled responses pass.
            _ => true,
        };
        AssumeError {
            code,
            message,
            retryable,
        }
    }
}

impl std::fmt::Display for AssumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The MFA session from GetSessionToken, reused for every refresh.
struct MfaSession {
    credentials: aws_credential_types::Credentials,
    expires: SystemTime,
}

/// STS clients bound to one plan of what to assume.
pub struct Role {
    /// With the SDK's own retries: the first AssumeRole, where the user is waiting.
    conf: aws_sdk_sts::Config,
    /// Without them: the broker's backoff alone paces refreshes, so each attempt is one call,
    /// logged once, and timing stays predictable.
    refresh_conf: aws_sdk_sts::Config,
    settings: Settings,
    child_region: Option<String>,
    mfa_session: Mutex<Option<MfaSession>>,
    warned_mfa_end: std::sync::atomic::AtomicBool,
}

impl Role {
    /// Loads the SDK configuration the way every AWS tool does and checks that it yields source
    /// credentials, so that a missing login is reported as such rather than as an STS failure.
    pub async fn connect(settings: Settings) -> Result<Role, SetupError> {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(20))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .timeout_config(timeouts);
        if let Some(r) = &settings.region {
            loader = loader.region(Region::new(r.clone()));
        }
        loader = match &settings.source {
            Source::DefaultChain { profile: Some(p) } => loader.profile_name(p),
            Source::DefaultChain { profile: None } => loader,
            Source::Environment => loader.credentials_provider(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            ),
            Source::Ec2InstanceMetadata => loader.credentials_provider(
                aws_config::imds::credentials::ImdsCredentialsProvider::builder().build(),
            ),
            Source::EcsContainer => loader
                .credentials_provider(aws_config::ecs::EcsCredentialsProvider::builder().build()),
            // AssumeRoleWithWebIdentity is unsigned: the token is the credential.
            Source::WebIdentity { .. } => loader.no_credentials(),
        };
        let sdk_config = loader.load().await;

        if !matches!(settings.source, Source::WebIdentity { .. }) {
            let Some(provider) = sdk_config.credentials_provider() else {
                return Err(no_source_credentials(
                    "no credential provider is configured".into(),
                ));
            };
            if let Err(e) = provider.provide_credentials().await {
                // The chain reports only its last provider's failure (usually IMDS), which says
                // little; the whole story is in the SDK's warnings and at -vv.
                tracing::debug!("source credential chain: {}", error_chain(&e));
                return Err(no_source_credentials(match &settings.source {
                    Source::DefaultChain { profile: Some(p) } => format!("profile {p} gave none: {e}"),
                    _ => "tried the environment, profiles, web identity, SSO, container and instance metadata".into(),
                }));
            }
        }

        let child_region = sdk_config.region().map(|r| r.to_string());
        let mut sts_config = aws_sdk_sts::config::Builder::from(&sdk_config);
        if child_region.is_none() {
            tracing::debug!("no region configured; using {FALLBACK_REGION} for STS");
            sts_config = sts_config.region(Region::from_static(FALLBACK_REGION));
        }
        let conf = sts_config.build();
        let refresh_conf = conf
            .to_builder()
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        Ok(Role {
            conf,
            refresh_conf,
            settings,
            child_region,
            mfa_session: Mutex::new(None),
            warned_mfa_end: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The region the child should use: the one credwrap found, if any.
    pub fn region(&self) -> Option<&str> {
        self.child_region.as_deref()
    }

    pub fn role_arn(&self) -> &RoleArn {
        &self.settings.role_arn
    }

    /// The first AssumeRole (and MFA session), retried by the SDK on transient errors.
    pub async fn assume(&self) -> Result<Credential, AssumeError> {
        self.assume_with(&self.conf).await
    }

    /// One attempt, no SDK retries: the caller decides when to try again.
    pub async fn reassume(&self) -> Result<Credential, AssumeError> {
        let credential = self.assume_with(&self.refresh_conf).await?;
        self.warn_before_mfa_session_ends(&credential);
        Ok(credential)
    }

    async fn assume_with(&self, conf: &aws_sdk_sts::Config) -> Result<Credential, AssumeError> {
        let s = &self.settings;
        let mut hops: Vec<&RoleArn> = s.via.iter().collect();
        hops.push(&s.role_arn);

        // Whatever signs the first AssumeRole: the source, or the MFA session made from it.
        let mut signer = self.mfa_credentials(conf).await?;
        let mut first = 0;
        if let Source::WebIdentity { token_file } = &s.source {
            let last = hops.len() == 1;
            let c = self.web_identity(conf, token_file, hops[0], last).await?;
            if last {
                return Ok(c);
            }
            signer = Some(sdk_credentials(&c));
            first = 1;
        }
        let mut result = None;
        for (i, role) in hops.iter().enumerate().skip(first) {
            let last = i == hops.len() - 1;
            let client = client_with(conf, signer.take());
            let c = self.assume_role(&client, role, last).await?;
            signer = Some(sdk_credentials(&c));
            result = Some(c);
        }
        result.ok_or_else(|| AssumeError {
            code: None,
            message: "no role to assume".into(),
            retryable: false,
        })
    }

    /// AssumeRole for one hop; session options go with the last one, the role the child gets.
    async fn assume_role(
        &self,
        client: &aws_sdk_sts::Client,
        role: &RoleArn,
        last: bool,
    ) -> Result<Credential, AssumeError> {
        let s = &self.settings;
        let mut req = client
            .assume_role()
            .role_arn(role.as_str())
            .role_session_name(&s.session_name);
        if last {
            let o = &s.options;
            req = req
                .duration_seconds(secs_i32(s.duration))
                .set_external_id(o.external_id.clone())
                .set_source_identity(o.source_identity.clone())
                .set_policy(o.policy.clone());
            for tag in &o.tags {
                let tag = aws_sdk_sts::types::Tag::builder()
                    .key(&tag.key)
                    .value(&tag.value)
                    .build()
                    .map_err(|e| invalid_input(&e))?;
                req = req.tags(tag);
            }
            for key in &o.transitive_tag_keys {
                req = req.transitive_tag_keys(key);
            }
            req = req.set_policy_arns(policy_descriptors(&o.policy_arns));
        } else {
            req = req.duration_seconds(secs_i32(crate::settings::CHAINED_MAX));
        }
        let out = req.send().await.map_err(AssumeError::from_sdk)?;
        credential_from(
            out.credentials(),
            out.assumed_role_user().map(|u| u.arn()),
            role,
        )
    }

    async fn web_identity(
        &self,
        conf: &aws_sdk_sts::Config,
        token_file: &std::path::Path,
        role: &RoleArn,
        last: bool,
    ) -> Result<Credential, AssumeError> {
        let s = &self.settings;
        // CI systems and Kubernetes rotate the token: read it fresh every time.
        let token = std::fs::read_to_string(token_file).map_err(|e| AssumeError {
            code: None,
            message: format!(
                "cannot read the web identity token {}: {e}",
                token_file.display()
            ),
            retryable: true,
        })?;
        let duration = if last {
            s.duration
        } else {
            crate::settings::CHAINED_MAX
        };
        let client = aws_sdk_sts::Client::from_conf(conf.clone());
        let mut req = client
            .assume_role_with_web_identity()
            .role_arn(role.as_str())
            .role_session_name(&s.session_name)
            .web_identity_token(token.trim())
            .duration_seconds(secs_i32(duration));
        if last {
            req = req
                .set_policy(s.options.policy.clone())
                .set_policy_arns(policy_descriptors(&s.options.policy_arns));
        }
        let out = req.send().await.map_err(AssumeError::from_sdk)?;
        credential_from(
            out.credentials(),
            out.assumed_role_user().map(|u| u.arn()),
            role,
        )
    }

    /// The MFA session's credentials, getting the session first if there is none yet.
    async fn mfa_credentials(
        &self,
        conf: &aws_sdk_sts::Config,
    ) -> Result<Option<aws_credential_types::Credentials>, AssumeError> {
        let Some(mfa) = &self.settings.mfa else {
            return Ok(None);
        };
        if let Some(session) = self
            .mfa_session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
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
            .map_err(AssumeError::from_sdk)?;
        let c = credential_from(out.credentials(), None, &self.settings.role_arn)?;
        tracing::info!(expires = %crate::broker::fmt_time(c.expiration), "MFA session started");
        let credentials = sdk_credentials(&c);
        *self.mfa_session.lock().unwrap_or_else(|e| e.into_inner()) = Some(MfaSession {
            credentials: credentials.clone(),
            expires: c.expiration,
        });
        Ok(Some(credentials))
    }

    /// credwrap never asks for a second MFA code mid-job: say when refreshing will stop.
    fn warn_before_mfa_session_ends(&self, fresh: &Credential) {
        let guard = self.mfa_session.lock().unwrap_or_else(|e| e.into_inner());
        let Some(session) = guard.as_ref() else {
            return;
        };
        // The next refresh will come before `fresh` expires; if the session ends first, it fails.
        if session.expires < fresh.expiration
            && !self
                .warned_mfa_end
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!(
                "the MFA session ends at {}: credwrap cannot refresh the role after that (it does \
                 not ask for a new code), so the command's credentials run out at about {}; \
                 restart with a longer --mfa-duration for longer jobs",
                crate::broker::fmt_time(session.expires),
                crate::broker::fmt_time(fresh.expiration),
            );
        }
    }
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
    credentials: Option<aws_credential_types::Credentials>,
) -> aws_sdk_sts::Client {
    match credentials {
        Some(c) => {
            aws_sdk_sts::Client::from_conf(conf.to_builder().credentials_provider(c).build())
        }
        None => aws_sdk_sts::Client::from_conf(conf.clone()),
    }
}

fn sdk_credentials(c: &Credential) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        c.access_key_id.clone(),
        c.secret_access_key.expose(),
        Some(c.session_token.expose().to_string()),
        Some(c.expiration),
        "credwrap-chain",
    )
}

fn invalid_input(e: &dyn std::error::Error) -> AssumeError {
    AssumeError {
        code: None,
        message: format!("invalid request: {e}"),
        retryable: false,
    }
}

fn credential_from(
    creds: Option<&aws_sdk_sts::types::Credentials>,
    assumed_arn: Option<&str>,
    role: &RoleArn,
) -> Result<Credential, AssumeError> {
    let received = SystemTime::now();
    let malformed = |what: &str| AssumeError {
        code: None,
        message: format!("STS answered without {what}"),
        retryable: true,
    };
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
    Ok(Credential {
        access_key_id: creds.access_key_id().to_string(),
        secret_access_key: Secret::new(creds.secret_access_key()),
        session_token: Secret::new(creds.session_token()),
        expiration,
        received,
        account_id,
        assumed_role_arn,
    })
}

/// An error and its sources on one line, each level's message once.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let msg = e.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn no_source_credentials(detail: String) -> SetupError {
    SetupError {
        message: format!("no source credentials to assume the role with: {detail}"),
        hint: "give credwrap credentials the usual way: AWS_PROFILE, AWS_ACCESS_KEY_ID and \
               AWS_SECRET_ACCESS_KEY, `aws sso login`, web identity, or an instance role",
    }
}
