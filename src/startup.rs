//! Everything that happens before the command starts, in order: credwrap's private directory,
//! the first AssumeRole (so that a refusal is reported before anything runs), the broker, the
//! endpoint's listeners, and the command's environment. Dropping the result undoes it all;
//! [`Started::stop`] does it in order. With `--serve` there is no command: [`announce`] says on
//! stdout what is served instead.

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
    /// The command's environment; empty with `--serve`.
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
/// the endpoint, and, for a command (`child` is its protocol), the command's environment.
pub async fn prepare(
    assume: AssumePlan,
    child: Option<ChildProtocol>,
    gateways: Vec<Gateway>,
) -> Result<Started, Failure> {
    let temp_failed =
        |e: anyhow::Error| Failure::setup(format!("{e:#}"), "check that TMPDIR is writable");
    let dir = PrivateDir::create().map_err(temp_failed)?;
    let role_arn = assume.target.role_arn.to_string();
    let config = assume.aws_files.config.clone();
    let (endpoint, broker, region) = assume_and_listen(assume, child, gateways, &dir).await?;
    if child.is_none() {
        // No command: nothing to give an environment to.
        return Ok(Started {
            dir,
            endpoint,
            broker,
            child_env: Vec::new(),
        });
    }
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
    child: Option<ChildProtocol>,
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

/// `--serve`: says on stdout where the containers' env file is.
pub fn announce(endpoint: &Endpoint) {
    use std::io::Write;
    if let Some(path) = endpoint.container_env_file() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}={}",
            crate::endpoint::ENV_CONTAINER_ENV_FILE,
            path.display()
        );
        let _ = out.flush();
    }
}
