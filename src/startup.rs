//! Everything that happens before the command starts, in order: credwrap's private directory,
//! the first AssumeRole (so that a refusal is reported before anything runs), the broker, the
//! endpoint's listeners, and the command's environment. Dropping the result undoes it all;
//! [`Started::stop`] does it in order. With `--serve` there is no command: the environment made
//! for one is what `serve::hand_off` hands out to the processes started later.

use std::ffi::OsString;
use std::sync::Arc;

use crate::broker::{Broker, WallClock};
use crate::child::{aws_files, env};
use crate::credential;
use crate::endpoint::{Endpoint, Gateway, Listeners};
use crate::exit::Failure;
use crate::private_dir::PrivateDir;
use crate::role::Role;
use crate::settings::{AssumePlan, ChildProtocol};

/// What the command runs with; dropping it removes the files (the runtime going away ends the
/// rest), [`Started::stop`] does it all in order.
pub struct Started {
    pub dir: PrivateDir,
    pub endpoint: Endpoint,
    pub broker: Broker,
    /// The command's environment (with `--serve`, what the later processes are handed).
    pub child_env: Vec<(OsString, OsString)>,
}

impl Started {
    /// Revokes the endpoints' secrets and closes them first, then stops refreshing and removes
    /// the private directory.
    pub fn stop(self) {
        self.endpoint.close();
        drop(self.broker);
        self.dir.remove();
    }
}

/// Everything before the command: the private directory, the first AssumeRole, the broker,
/// the endpoint (`child` is the protocol of its loopback listener), and the command's
/// environment.
pub async fn prepare(
    assume: AssumePlan,
    child: ChildProtocol,
    gateways: Vec<Gateway>,
    private_parent: Option<std::path::PathBuf>,
) -> Result<Started, Failure> {
    let temp_failed =
        |e: anyhow::Error| Failure::setup(format!("{e:#}"), "check that TMPDIR is writable");
    let dir = PrivateDir::create(private_parent.as_deref()).map_err(temp_failed)?;
    let role_arn = assume.target.role_arn.to_string();
    let config = assume.aws_files.config.clone();
    let (endpoint, broker, region) = assume_and_listen(assume, child, gateways, &dir).await?;
    let files = aws_files::write_stand_ins(&dir, config.expose()).map_err(temp_failed)?;
    let additions = env::Additions {
        endpoint: &endpoint.child_env(),
        files: &files,
        region: region.as_deref(),
        role_arn: &role_arn,
    };
    let child_env = env::build(std::env::vars_os(), &additions);
    Ok(Started {
        dir,
        endpoint,
        broker,
        child_env,
    })
}

/// Assumes the role once (so a refusal is reported before anything starts), then starts the
/// broker and the listeners; returns them with the region the command should use.
async fn assume_and_listen(
    assume: AssumePlan,
    child: ChildProtocol,
    gateways: Vec<Gateway>,
    dir: &PrivateDir,
) -> Result<(Endpoint, Broker, Option<String>), Failure> {
    let role_arn = assume.target.role_arn.clone();
    let mut role = Role::connect(assume).await?;
    let first = role.assume().await?;
    tracing::info!(
        role = %first.assumed_role_arn,
        expires = %credential::fmt_time(first.expiration),
        "assumed role"
    );
    let region = role.child_region().map(str::to_string);
    let listeners = Listeners {
        child,
        gateways,
        role: role_arn,
        region: region.clone(),
    };
    let broker = Broker::start(role, first, listeners.min_remaining(), Arc::new(WallClock));
    let endpoint = Endpoint::start(broker.reader(), listeners, dir).await?;
    Ok((endpoint, broker, region))
}
