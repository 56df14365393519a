//! The role side: credwrap's own source credentials (the SDK's default provider chain) and the
//! AssumeRole call that turns them into role credentials.

use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::region::Region;

use crate::cli::RoleArn;
use crate::secret::Secret;

/// STS is global; when nothing names a region, the SDKs and the AWS CLI fall back to us-east-1 too.
const FALLBACK_REGION: &str = "us-east-1";

/// What to ask STS for.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    pub role_arn: RoleArn,
    pub session_name: String,
    pub duration: Duration,
    pub external_id: Option<String>,
}

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

    fn from_sdk(err: SdkError<AssumeRoleError>) -> Self {
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

/// An STS client bound to one role.
pub struct Role {
    /// With the SDK's own retries: the first AssumeRole, where the user is waiting.
    client: aws_sdk_sts::Client,
    /// Without them: the broker's backoff alone paces refreshes, so each attempt is one call,
    /// logged once, and timing stays predictable.
    refresh_client: aws_sdk_sts::Client,
    spec: RoleSpec,
    child_region: Option<String>,
}

impl Role {
    /// Loads the SDK configuration the way every AWS tool does and checks that it yields source
    /// credentials, so that a missing login is reported as such rather than as an STS failure.
    pub async fn connect(spec: RoleSpec, region: Option<String>) -> Result<Role, SetupError> {
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
        if let Some(r) = &region {
            loader = loader.region(Region::new(r.clone()));
        }
        let sdk_config = loader.load().await;

        let Some(provider) = sdk_config.credentials_provider() else {
            return Err(no_source_credentials(
                "no credential provider is configured".into(),
            ));
        };
        if let Err(e) = provider.provide_credentials().await {
            // The chain reports only its last provider's failure (usually IMDS), which says
            // little; the whole story is in the SDK's warnings and at -vv.
            tracing::debug!("source credential chain: {}", error_chain(&e));
            return Err(no_source_credentials(
                "tried the environment, profiles, web identity, SSO, container and instance metadata".into(),
            ));
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
            client: aws_sdk_sts::Client::from_conf(conf),
            refresh_client: aws_sdk_sts::Client::from_conf(refresh_conf),
            spec,
            child_region,
        })
    }

    /// The region the child should use: the one credwrap found, if any.
    pub fn region(&self) -> Option<&str> {
        self.child_region.as_deref()
    }

    pub fn spec(&self) -> &RoleSpec {
        &self.spec
    }

    /// The first AssumeRole, retried by the SDK on transient errors.
    pub async fn assume(&self) -> Result<Credential, AssumeError> {
        self.assume_with(&self.client).await
    }

    /// One AssumeRole call, no retries: the caller decides when to try again.
    pub async fn reassume(&self) -> Result<Credential, AssumeError> {
        self.assume_with(&self.refresh_client).await
    }

    async fn assume_with(&self, client: &aws_sdk_sts::Client) -> Result<Credential, AssumeError> {
        let spec = &self.spec;
        let duration = i32::try_from(spec.duration.as_secs()).unwrap_or(i32::MAX);
        let out = client
            .assume_role()
            .role_arn(spec.role_arn.as_str())
            .role_session_name(&spec.session_name)
            .duration_seconds(duration)
            .set_external_id(spec.external_id.clone())
            .send()
            .await
            .map_err(AssumeError::from_sdk)?;
        let received = SystemTime::now();
        let malformed = |what: &str| AssumeError {
            code: None,
            message: format!("STS answered AssumeRole without {what}"),
            retryable: true,
        };
        let creds = out.credentials().ok_or_else(|| malformed("credentials"))?;
        let expiration = SystemTime::try_from(*creds.expiration())
            .map_err(|_| malformed("a valid Expiration"))?;
        let assumed_role_arn = out
            .assumed_role_user()
            .map(|u| u.arn().to_string())
            .unwrap_or_default();
        // arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION
        let account_id = assumed_role_arn
            .split(':')
            .nth(4)
            .filter(|a| a.len() == 12)
            .unwrap_or(spec.role_arn.account())
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
