//! Everything that happens before the command starts, in order: credwrap's private directory,
//! the first AssumeRole (so that a refusal is reported before anything runs), the broker, the
//! endpoint, and the command's environment. Dropping the result undoes it all.

use std::ffi::OsString;

use crate::broker::Broker;
use crate::child::{aws_files, env as child_env};
use crate::cli::{Cli, EndpointKind};
use crate::credential;
use crate::endpoint::{Endpoint, Protocol};
use crate::exit::Failure;
use crate::private_dir::PrivateDir;
use crate::role::Role;
use crate::settings::Settings;

/// What the command runs with; dropping it revokes the endpoint and removes the files.
pub struct Started {
    pub dir: PrivateDir,
    pub endpoint: Endpoint,
    pub broker: Broker,
    pub child_env: Vec<(OsString, OsString)>,
}

/// Everything before the command: the private directory, the first AssumeRole, the broker,
/// the endpoint, and the command's environment.
pub async fn start(cli: &Cli, settings: Settings) -> Result<Started, Failure> {
    let temp_failed =
        |e: anyhow::Error| Failure::setup(format!("{e:#}"), "check that TMPDIR is writable");
    let dir = PrivateDir::create().map_err(temp_failed)?;
    let role_arn = settings.target.role_arn.to_string();
    let (endpoint, broker, region) = serve(cli, settings, &dir).await?;
    let files =
        aws_files::write_stand_ins(&dir, aws_files::user_config_path()).map_err(temp_failed)?;
    let additions = child_env::Additions {
        endpoint: &endpoint.child_env(),
        files: &files,
        region: region.as_deref(),
        role_arn: &role_arn,
    };
    let child_env = child_env::build(std::env::vars_os(), &additions);
    Ok(Started {
        dir,
        endpoint,
        broker,
        child_env,
    })
}

/// Assumes the role once (so a refusal is reported before anything starts), then starts the
/// broker and the endpoint the child will read from.
async fn serve(
    cli: &Cli,
    settings: Settings,
    dir: &PrivateDir,
) -> Result<(Endpoint, Broker, Option<String>), Failure> {
    let role_arn = settings.target.role_arn.clone();
    let mut role = Role::connect(settings).await?;
    let first = role.assume().await?;
    tracing::info!(
        role = %first.assumed_role_arn,
        expires = %credential::fmt_time(first.expiration),
        "assumed role"
    );
    let region = role.region().map(str::to_string);
    let protocol = match cli.endpoint {
        EndpointKind::Ecs => Protocol::Container {
            token_file: cli.token_file,
        },
        EndpointKind::Imds => Protocol::Imds {
            role: role_arn,
            region: region.clone(),
        },
    };
    let broker = Broker::start(role, first, protocol.guard());
    let endpoint = Endpoint::start(broker.reader(), protocol, dir)
        .await
        .map_err(|e| Failure::setup(format!("{e:#}"), "credwrap needs a TCP port on 127.0.0.1"))?;
    Ok((endpoint, broker, region))
}
