//! A named role that is a profile's own credentials (SSO, `credential_process`), served as they
//! are: no AssumeRole, the profile's provider asked again at every refresh. SSO renews its
//! access token from the cache the way the SDKs do, so a fresh `aws sso login` is used by the
//! next refresh without restarting credwrap.

use std::time::SystemTime;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use super::credential::RoleCredential;
use super::error::{error_chain, AssumeError, SetupError};
use crate::settings::roles::ProfileSource;
use crate::sys::secret::Secret;

/// A profile's provider, and what its credentials are for messages.
pub struct ProfileCredentials {
    provider: SharedCredentialsProvider,
    profile: String,
    sso: Option<Box<crate::settings::SsoLogin>>,
    /// The SSO token's expiry as read at the last fetch.
    horizon: Option<crate::broker::activity::Horizon>,
}

impl ProfileCredentials {
    /// Builds the profile's provider; nothing is fetched yet.
    pub async fn connect(
        source: &ProfileSource,
        shared: &super::Shared,
    ) -> Result<ProfileCredentials, SetupError> {
        let http = shared.http_client(source.ca_bundle.as_ref())?;
        let provider = super::source::profile_provider(source, http).await?;
        Ok(ProfileCredentials {
            provider,
            profile: source.profile.clone(),
            sso: source.sso.clone(),
            horizon: None,
        })
    }

    /// An SSO profile's cached token's expiry, as read at the last fetch; nothing else bounds
    /// a profile's own credentials that credwrap can see.
    pub fn horizon(&self) -> Option<crate::broker::activity::Horizon> {
        self.horizon.clone()
    }

    pub fn about(&self) -> crate::broker::activity::About {
        crate::broker::activity::About {
            role: String::new(),
            source: format!("profile {}'s own credentials", self.profile),
        }
    }

    /// Says at start when refreshing will stop, if the SSO token bounds it.
    pub fn say_horizon_at_start(&self, session: std::time::Duration) {
        if let Some(h) = self.horizon() {
            super::horizon::say_at_start(&h, session, None);
        }
    }

    /// The profile's credentials now; they must expire (and so renew), or they are refused.
    pub async fn fetch(&mut self) -> Result<RoleCredential, AssumeError> {
        let doing = format!("get the credentials of profile {}", self.profile);
        let provided = self.provider.provide_credentials().await;
        // Read once per fetch, whatever its outcome: a new `aws sso login` moves it.
        self.horizon = self.sso.as_deref().and_then(super::horizon::sso_token);
        let c = provided.map_err(|e| {
            AssumeError::local(format!("{e}: {}", error_chain(&e)), true).doing(doing.clone())
        })?;
        let Some(expiration) = c.expiry() else {
            return Err(AssumeError::local(
                "they do not expire, so they are long-term keys, not a session that renews; \
                 credwrap hands the command only credentials it can refresh",
                false,
            )
            .doing(doing));
        };
        Ok(RoleCredential {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: Secret::new(c.secret_access_key()),
            session_token: Secret::new(c.session_token().unwrap_or_default()),
            expiration,
            received: SystemTime::now(),
            account_id: c
                .account_id()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
            assumed_role_arn: String::new(),
        })
    }
}
