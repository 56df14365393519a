//! credwrap's own source credentials, found the way the AWS tools find them, and the SDK
//! configuration (HTTP client, timeouts, region) every STS call is made with.

use std::time::Duration;

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials as SdkCredentials;
use aws_sdk_sts::config::SharedHttpClient;
use aws_smithy_http_client::pool::{Client as PoolClient, ConnectionPool};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::region::Region;
use aws_types::SdkConfig;

use super::error::{error_chain, SetupError};
use crate::settings::{AssumePlan, Source};

/// STS is global; when nothing names a region, the SDKs and the AWS CLI fall back to us-east-1 too.
const FALLBACK_REGION: &str = "us-east-1";

/// The STS client configuration, signed by the source credentials.
pub struct StsSetup {
    pub sts: aws_sdk_sts::Config,
    /// The region credwrap found for the child, if any (STS itself may use the fallback).
    pub region: Option<String>,
}

/// Loads the SDK configuration the way every AWS tool does and checks that it yields source
/// credentials, so that a missing login is reported as such rather than as an STS failure.
pub async fn configure(
    settings: &AssumePlan,
    http: SharedHttpClient,
) -> Result<StsSetup, SetupError> {
    let base = load_config(settings, http).await?;
    let provider = source_provider(settings, &base).await;
    if let Some(provider) = &provider {
        require_credentials(&settings.source, provider).await?;
    }
    let region = base.region().map(|r| r.to_string());
    let mut sts = aws_sdk_sts::config::Builder::from(&base);
    sts.set_credentials_provider(provider);
    if region.is_none() {
        tracing::debug!("no region configured; using {FALLBACK_REGION} for STS");
        sts = sts.region(Region::from_static(FALLBACK_REGION));
    }
    Ok(StsSetup {
        sts: sts.build(),
        region,
    })
}

/// Region, timeouts and the HTTP client, from the environment and the profile files as read at
/// start (aws-config opens neither file again). Credentials only for the default chain, which
/// aws-config builds itself; every other source is built by [`source_provider`].
async fn load_config(
    settings: &AssumePlan,
    http: SharedHttpClient,
) -> Result<SdkConfig, SetupError> {
    let default_chain = matches!(settings.source, Source::DefaultChain);
    let profile = settings.profile.as_deref();
    load_config_from(
        &settings.aws_files,
        settings.region.as_deref(),
        profile,
        default_chain,
        http,
    )
    .await
}

/// [`load_config`] from its parts: the files as read, the region and profile named, and
/// whether aws-config's own chain gives the credentials.
async fn load_config_from(
    files: &crate::settings::AwsFiles,
    region: Option<&str>,
    profile: Option<&str>,
    default_chain: bool,
    http_client: SharedHttpClient,
) -> Result<SdkConfig, SetupError> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(timeouts)
        .profile_files(files.for_sdk());
    if !default_chain {
        loader = loader.no_credentials();
    }
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    Ok(loader.load().await)
}

/// The credentials of a profile served as it is (SSO, `credential_process`), through the same
/// HTTP client, timeouts and files as STS.
pub async fn profile_provider(
    source: &crate::settings::roles::ProfileSource,
    http: SharedHttpClient,
) -> Result<SharedCredentialsProvider, SetupError> {
    let name = source.profile.as_str();
    let base = load_config_from(
        &source.aws_files,
        source.region.as_deref(),
        Some(name),
        false,
        http,
    )
    .await?;
    let provider = ProfileFileCredentialsProvider::builder()
        .configure(&provider_config(&base))
        .profile_files(source.aws_files.for_sdk())
        .profile_name(name)
        .build();
    Ok(SharedCredentialsProvider::new(provider))
}

/// rustls on ring, through `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as the AWS CLI goes, trusting
/// what [`super::trust`] chooses.
pub fn http_client(roots: &super::trust::Roots) -> Result<SharedHttpClient, SetupError> {
    let trust = roots.trust_store();
    let failed = |what: String| SetupError {
        message: format!("could not set up the HTTP client for STS: {what}"),
        hint: "check HTTPS_PROXY/HTTP_PROXY and AWS_CA_BUNDLE",
    };
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let pool = ConnectionPool::builder()
        .proxy_config(ProxyConfig::from_env())
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https()
        .map_err(|e| failed(e.to_string()))?;
    let client = PoolClient::new(&pool).map_err(|e| failed(e.to_string()))?;
    Ok(SharedHttpClient::new(client))
}

/// The provider of credwrap's own credentials; none for web identity, whose call is unsigned
/// (the token is the credential).
async fn source_provider(
    settings: &AssumePlan,
    base: &SdkConfig,
) -> Option<SharedCredentialsProvider> {
    let config = provider_config(base);
    let imds = || instance_provider(&config, &settings.imds_endpoint);
    let provider = match &settings.source {
        Source::WebIdentity { .. } => return None,
        // aws-config built it with the profile files as read: the loader's own chain.
        Source::DefaultChain => return base.credentials_provider(),
        // The profile's own credentials, then what botocore tries after the profile providers.
        Source::Profile(name) => SharedCredentialsProvider::new(
            CredentialsProviderChain::first_try(
                "Profile",
                ProfileFileCredentialsProvider::builder()
                    .configure(&config)
                    .profile_files(settings.aws_files.for_sdk())
                    .profile_name(name)
                    .build(),
            )
            .or_else("EcsContainer", container_provider(&config))
            .or_else("Ec2InstanceMetadata", imds()),
        ),
        Source::ProfileKeys(keys) => SharedCredentialsProvider::new(SdkCredentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.expose(),
            keys.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "credwrap-profile",
        )),
        Source::Ec2InstanceMetadata => SharedCredentialsProvider::new(imds()),
        Source::EcsContainer => SharedCredentialsProvider::new(container_provider(&config)),
        Source::Environment => SharedCredentialsProvider::new(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        ),
    };
    Some(provider)
}

/// Resolves the source credentials once, so that "no credentials" is reported as such.
async fn require_credentials(
    source: &Source,
    provider: &SharedCredentialsProvider,
) -> Result<(), SetupError> {
    let Err(e) = provider.provide_credentials().await else {
        return Ok(());
    };
    // The chain reports only its last provider's failure (usually IMDS), which says little; the
    // whole story is in the SDK's warnings and at -vv.
    tracing::debug!("source credential chain: {}", error_chain(&e));
    Err(no_source_credentials(match source {
        Source::Profile(p) => format!("profile {p} gave none: {e}"),
        Source::Environment => format!("the environment gave none: {e}"),
        _ => "tried the environment, profiles, web identity, SSO, container and instance metadata"
            .into(),
    }))
}

/// What aws-config's own providers need to make calls: our HTTP client, timeouts and region.
fn provider_config(base: &SdkConfig) -> ProviderConfig {
    let mut config = ProviderConfig::empty()
        .with_region(base.region().cloned())
        .with_behavior_version(Some(BehaviorVersion::latest()));
    if let Some(http) = base.http_client() {
        config = config.with_http_client(http);
    }
    if let Some(sleep) = base.sleep_impl() {
        config = config.with_sleep_impl(sleep);
    }
    if let Some(timeouts) = base.timeout_config() {
        config = config.with_timeout_config(timeouts.clone());
    }
    config
}

fn container_provider(config: &ProviderConfig) -> aws_config::ecs::EcsCredentialsProvider {
    aws_config::ecs::EcsCredentialsProvider::builder()
        .configure(config)
        .build()
}

/// An instance-role provider whose endpoint is given, so that its client never reads the
/// profile files itself.
fn instance_provider(
    config: &ProviderConfig,
    endpoint: &str,
) -> aws_config::imds::credentials::ImdsCredentialsProvider {
    let mut client = aws_config::imds::Client::builder().configure(config);
    match client.clone().endpoint(endpoint) {
        Ok(with_endpoint) => client = with_endpoint,
        Err(e) => tracing::warn!("ignoring the IMDS endpoint {endpoint}: {e}"),
    }
    aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .configure(config)
        .imds_client(client.build())
        .build()
}

fn no_source_credentials(detail: String) -> SetupError {
    SetupError {
        message: format!("no source credentials to assume the role with: {detail}"),
        hint: "give credwrap credentials the usual way: AWS_PROFILE, AWS_ACCESS_KEY_ID and \
               AWS_SECRET_ACCESS_KEY, `aws sso login`, web identity, or an instance role",
    }
}
