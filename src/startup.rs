//! Everything that happens before the command starts, in order: credwrap's private directory,
//! the first AssumeRole (so that a refusal is reported before anything runs), the broker, the
//! endpoint's listeners, and the command's environment. Dropping the result undoes it all;
//! [`Started::stop`] does it in order. With `--serve` there is no command: the environment made
//! for one is what `serve::hand_off` hands out to the processes started later.

use std::ffi::OsString;
use std::sync::Arc;

use crate::broker::{Broker, CredentialReader, WallClock};
use crate::client::{aws_files, env};
use crate::endpoint::{Endpoint, EndpointSpec, Gateway};
use crate::exit::Failure;
use crate::role::credential;
use crate::role::credential::RoleCredential;
use crate::role::profile::ProfileCredentials;
use crate::role::{Role, Shared};
use crate::settings::roles::{NamedRolePlan, NamedSource};
use crate::settings::{AssumePlan, EndpointPlan};
use crate::sys::private_dir::PrivateDir;
use crate::sys::secret::Secret;

/// What the command runs with; dropping it removes the files (the runtime going away ends the
/// rest), [`Started::stop`] does it all in order.
pub struct Started {
    pub dir: PrivateDir,
    pub endpoint: Endpoint,
    /// The default role's broker; none in a job of named roles only.
    pub broker: Option<Broker>,
    /// The named roles' brokers, one per role.
    pub named_brokers: Vec<Broker>,
    /// The environment of the endpoint's clients: the command's, or with `--serve` what the
    /// later processes are handed.
    pub client_env: Vec<(OsString, OsString)>,
}

impl Started {
    /// Revokes the endpoints' secrets and closes them first, then stops refreshing and removes
    /// the private directory.
    pub fn stop(self) {
        self.endpoint.close();
        drop(self.broker);
        drop(self.named_brokers);
        self.dir.remove();
    }
}

/// Why start-up did not finish.
pub enum NotStarted {
    /// A stop signal came first: whatever was started was dropped, nothing is left behind.
    Stopped(i32),
    Failed(Failure),
}

impl NotStarted {
    /// What credwrap ends with: as if killed by the signal, or the failure.
    pub fn into_result(self) -> Result<std::process::ExitStatus, Failure> {
        match self {
            NotStarted::Stopped(sig) => {
                tracing::info!(
                    signal = sig,
                    "stopped while starting; nothing was left behind"
                );
                Ok(std::os::unix::process::ExitStatusExt::from_raw(sig))
            }
            NotStarted::Failed(failure) => Err(failure),
        }
    }
}

/// Runs `prepare` unless a stop signal (TERM, INT, HUP, QUIT) comes first, which drops whatever
/// was started: the private directory and the token file in it go with it.
pub async fn unless_stopped(
    prepare: impl std::future::Future<Output = Result<Started, Failure>>,
    mut stop: tokio::sync::mpsc::UnboundedReceiver<i32>,
) -> Result<Started, NotStarted> {
    tokio::select! {
        started = prepare => started.map_err(NotStarted::Failed),
        Some(sig) = stop.recv() => Err(NotStarted::Stopped(sig)),
    }
}

/// Everything before the command: the private directory, the first AssumeRole of every role,
/// their brokers, the endpoint (as `plan` says, on the checked `gateways`), and the environment
/// of the processes it serves. `assume` is the default role, if there is one.
pub async fn prepare(
    assume: Option<AssumePlan>,
    roles: Vec<NamedRolePlan>,
    config: Secret,
    plan: EndpointPlan,
    gateways: Vec<Gateway>,
    private_parent: Option<std::path::PathBuf>,
) -> Result<Started, Failure> {
    let temp_failed =
        |e: anyhow::Error| Failure::setup(format!("{e:#}"), "check that TMPDIR is writable");
    let dir = PrivateDir::create(private_parent.as_deref()).map_err(temp_failed)?;
    let shared = Shared::default();
    let default = match assume {
        Some(assume) => Some(first_assume(assume, &shared).await?),
        None => None,
    };
    let named = start_all_named(roles, &shared).await?;
    let default_arn = default
        .as_ref()
        .map(|(role, _, _)| role.target_arn().to_string());
    let region = match &default {
        Some((_, _, region)) => region.clone(),
        None => named.region.clone(),
    };
    let spec = EndpointSpec {
        loopback: plan.loopback,
        metrics: crate::endpoint::MetricsPlan {
            on_loopback: plan.metrics,
            address: plan.metrics_address,
        },
        gateways,
        role: default
            .as_ref()
            .map(|(role, _, _)| role.target_arn().clone()),
        region: region.clone(),
        named: named.for_clients,
        container_roles: named.for_containers,
    };
    let min_remaining = spec.min_remaining();
    let broker = default
        .map(|(role, first, _)| Broker::start(role, first, min_remaining, Arc::new(WallClock)));
    let endpoint = Endpoint::start(broker.as_ref().map(Broker::reader), spec, &dir).await?;
    let mut uris = endpoint.named_uris().to_vec();
    if let (true, Some(uri)) = (plan.default_profile, endpoint.default_uri()) {
        uris.push(("default".to_string(), uri));
    }
    let profiles = aws_files::credential_processes(&uris);
    let files =
        aws_files::write_stand_ins(&dir, config.expose(), &profiles).map_err(temp_failed)?;
    let marker = default_arn.unwrap_or_else(|| "none (named roles only)".to_string());
    let additions = env::Additions {
        endpoint: &endpoint.client_env(),
        files: &files,
        region: region.as_deref(),
        role_arn: &marker,
    };
    let client_env = env::build(std::env::vars_os(), &additions);
    Ok(Started {
        dir,
        endpoint,
        broker,
        named_brokers: named.brokers,
        client_env,
    })
}

/// The named roles, started: their brokers, their readers for the command and for containers,
/// and the first region one of them found.
struct NamedStarted {
    brokers: Vec<Broker>,
    for_clients: Vec<(String, CredentialReader)>,
    for_containers: Vec<(String, CredentialReader)>,
    region: Option<String>,
}

/// Every named role's first credential and broker; one that cannot be had fails the run, named.
async fn start_all_named(
    roles: Vec<NamedRolePlan>,
    shared: &Shared,
) -> Result<NamedStarted, Failure> {
    let mut started = NamedStarted {
        brokers: Vec::new(),
        for_clients: Vec::new(),
        for_containers: Vec::new(),
        region: None,
    };
    for plan in roles {
        let (broker, region) = start_named(&plan, shared)
            .await
            .map_err(|f| f.about(&format!("role {}", plan.name)))?;
        started.region = started.region.or(region);
        if plan.for_clients {
            started
                .for_clients
                .push((plan.name.clone(), broker.reader()));
        }
        if plan.for_containers {
            started.for_containers.push((plan.name, broker.reader()));
        }
        started.brokers.push(broker);
    }
    Ok(started)
}

/// A named role's first credential and its broker, whose log lines say the role's name; with
/// the region its source found.
async fn start_named(
    plan: &NamedRolePlan,
    shared: &Shared,
) -> Result<(Broker, Option<String>), Failure> {
    let span = tracing::info_span!("role", name = %plan.name);
    // Named roles are read as the container protocol is, through `credential_process`.
    let min_remaining = crate::endpoint::CONTAINER_MIN_REMAINING;
    match &plan.source {
        NamedSource::Assume(assume) => {
            let (role, first, region) = first_assume((**assume).clone(), shared).await?;
            let clock = Arc::new(WallClock);
            Ok((
                Broker::start_in(span, role, first, min_remaining, clock),
                region,
            ))
        }
        NamedSource::Profile(source) => {
            let mut profile = ProfileCredentials::connect(source, shared).await?;
            let first = profile.fetch().await?;
            tracing::info!(
                profile = %source.profile,
                expires = %credential::fmt_time(first.expiration),
                "got the profile's own credentials"
            );
            let session = first
                .expiration
                .duration_since(first.received)
                .unwrap_or_default();
            profile.say_horizon_at_start(session);
            let clock = Arc::new(WallClock);
            Ok((
                Broker::start_in(span, profile, first, min_remaining, clock),
                None,
            ))
        }
    }
}

/// Connects to STS for `assume` and assumes its role once, so that a refusal is reported before
/// anything starts; returns the role, its first credential and the region clients should use.
async fn first_assume(
    assume: AssumePlan,
    shared: &Shared,
) -> Result<(Role, RoleCredential, Option<String>), Failure> {
    let mut role = Role::connect(assume, shared.clone()).await?;
    let first = role.assume().await?;
    tracing::info!(
        role = %first.assumed_role_arn,
        expires = %credential::fmt_time(first.expiration),
        "assumed role"
    );
    role.say_horizon_at_start();
    let region = role.client_region().map(str::to_string);
    Ok((role, first, region))
}
