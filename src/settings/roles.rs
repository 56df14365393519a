//! Extra roles, served under profile names of their own (`--role`, `CREDWRAP_ROLES`,
//! `--roles-file`).
//!
//! A named role is resolved exactly as the default role would be with one option changed, so
//! that every rule of the AWS CLI's precedence, every limit and every message applies to it
//! unchanged: `NAME=ARN` is what `--role-arn ARN` would give with the other options on the
//! command line; `NAME` alone is what `--profile NAME` would give (that profile's role, source,
//! `external_id`, `duration_seconds`, `role_session_name`, `mfa_serial`; the global flags still
//! win over it, as they do over `--profile`). Neither takes `--via`, which is the default
//! role's chain.

use std::collections::BTreeSet;

use super::limits::{self, NamedRole};
use super::{assume_plan, usage, AskCode, AssumePlan, Cli, Env, Profiles, UsageError};

/// One extra role: the profile name its clients select it by, how it is assumed, and who gets
/// it.
#[derive(Debug, Clone)]
pub struct NamedRolePlan {
    pub name: String,
    pub source: NamedSource,
    /// The command (and later processes) may select it as a profile (`--role`).
    pub for_clients: bool,
    /// The containers of this name get it (`--container-role`).
    pub for_containers: bool,
}

/// Where a named role's credentials come from.
#[derive(Debug, Clone)]
pub enum NamedSource {
    /// AssumeRole (or a chain, or web identity), refreshed as the default role is.
    Assume(Box<AssumePlan>),
    /// An SSO or `credential_process` profile's own credentials, fetched again at every refresh.
    Profile(ProfileSource),
}

/// A profile whose own credentials are served (no `role_arn`): what aws-config needs to read
/// them, from the files as read at start.
#[derive(Debug, Clone)]
pub struct ProfileSource {
    pub profile: String,
    pub region: Option<String>,
    pub ca_bundle: Option<super::CaBundle>,
    pub aws_files: super::AwsFiles,
    /// Where its SSO token is cached, when it is an SSO profile.
    pub sso: Option<Box<super::SsoLogin>>,
}

/// Stands for the role while an as-is profile is resolved as the source of `--role-arn` would
/// be; only the source, region, CA bundle and files are kept from that resolution.
const AS_IS_PLACEHOLDER: &str = "arn:aws:iam::000000000000:role/credwrap-profile-as-is";

/// Every named role, checked: names valid and given once, profiles present with a role in
/// them, ARNs valid. Nothing here calls the network.
pub fn plan(
    cli: &Cli,
    env: &Env,
    profiles: &Profiles,
    ask_code: AskCode<'_>,
) -> Result<Vec<NamedRolePlan>, UsageError> {
    gather(cli)?
        .into_iter()
        .map(|(role, for_clients, for_containers)| {
            let (derived, as_is) = derived_cli(cli, &role, profiles)?;
            let plan = assume_plan(&derived, env, profiles, ask_code)
                .map_err(|e| usage(format!("--role {}: {}", role.name, message_of(&e))))?;
            let source = match as_is {
                false => NamedSource::Assume(Box::new(plan)),
                true => NamedSource::Profile(ProfileSource {
                    profile: role.name.clone(),
                    region: plan.region,
                    ca_bundle: plan.ca_bundle,
                    aws_files: plan.aws_files,
                    sso: plan.sso.map(Box::new),
                }),
            };
            Ok(NamedRolePlan {
                name: role.name,
                source,
                for_clients,
                for_containers,
            })
        })
        .collect()
}

/// The roles of `--role`, `--roles-file` and `--container-role`, each name once: a name in
/// both kinds is one role (one broker) for the command and the containers, if both say the same.
fn gather(cli: &Cli) -> Result<Vec<(NamedRole, bool, bool)>, UsageError> {
    let mut roles = cli.roles.clone();
    if let Some(path) = &cli.roles_file {
        roles.extend(read_roles_file(path)?);
    }
    once_each(&roles, "the role name {} is given twice (--role, CREDWRAP_ROLES, --roles-file): each profile name selects one role")?;
    once_each(
        &cli.container_roles,
        "--container-role {} is given twice: each container name gets one role",
    )?;
    let mut plans: Vec<(NamedRole, bool, bool)> =
        roles.into_iter().map(|r| (r, true, false)).collect();
    for role in &cli.container_roles {
        let same_name = |r: &NamedRole| r.name.eq_ignore_ascii_case(&role.name);
        match plans.iter_mut().find(|(r, _, _)| same_name(r)) {
            Some((same, _, containers)) if same == role => *containers = true,
            Some(_) => {
                return Err(usage(format!(
                    "{} names one role for --role and another for --container-role: a name is \
                     one role",
                    role.name
                )))
            }
            None => plans.push((role.clone(), false, true)),
        }
    }
    Ok(plans)
}

/// `message` (with `{}` for the name) when a name comes twice, in any case.
fn once_each(roles: &[NamedRole], message: &str) -> Result<(), UsageError> {
    let mut seen = BTreeSet::new();
    match roles
        .iter()
        .find(|r| !seen.insert(r.name.to_ascii_lowercase()))
    {
        Some(twice) => Err(usage(message.replacen("{}", &twice.name, 1))),
        None => Ok(()),
    }
}

/// The command line the default role would have been resolved from, for this role, and whether
/// it is a profile whose own credentials are served (SSO, `credential_process`).
fn derived_cli(
    cli: &Cli,
    role: &NamedRole,
    profiles: &Profiles,
) -> Result<(Cli, bool), UsageError> {
    let mut derived = cli.clone();
    derived.via.clear();
    derived.roles.clear();
    derived.roles_file = None;
    derived.container_roles.clear();
    match &role.arn {
        Some(arn) => derived.role_arn = Some(arn.clone()),
        None => {
            let name = &role.name;
            let profile = profiles.get(name).ok_or_else(|| {
                usage(format!(
                    "--role {name}: there is no profile {name} in the AWS config or credentials \
                     file; give --role {name}=ARN, or add [profile {name}] with role_arn"
                ))
            })?;
            // Without role_arn, the profile's own credentials are served, if they can renew:
            // long-term keys are no role, and never go to the command.
            let as_is = profile.get("role_arn").is_none();
            if as_is && !renews_by_itself(profiles, name) {
                return Err(usage(format!(
                    "--role {name}: the profile {name} has no role_arn, and its own credentials \
                     are not SSO or credential_process ones that renew; give --role {name}=ARN, \
                     or add role_arn to the profile"
                )));
            }
            // The profile names its own source: whatever names another one for the default
            // role does not apply to it.
            derived.profile = Some(name.clone());
            derived.role_arn = None;
            if as_is {
                // Resolved as the source of a role, which it is not: only the source is kept.
                derived.role_arn = AS_IS_PLACEHOLDER.parse().ok();
                derived.mfa_serial = None;
                derived.mfa_code = None;
                return Ok((derived, true));
            }
            derived.web_identity_token_file = None;
            derived.web_identity_token_env = None;
            derived.web_identity_token_command = None;
            derived.web_identity_github = false;
        }
    }
    Ok((derived, false))
}

/// Whether profile `name` yields credentials that renew: SSO, or a `credential_process`.
fn renews_by_itself(profiles: &Profiles, name: &str) -> bool {
    profiles.get(name).is_some_and(|p| {
        ["sso_session", "sso_start_url", "credential_process"]
            .iter()
            .any(|k| p.get(k).is_some())
    })
}

/// The roles a `--roles-file` lists, read once: one `NAME[=ARN]` a line, `#` comments.
fn read_roles_file(path: &std::path::Path) -> Result<Vec<NamedRole>, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "--roles-file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let mut roles = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let role = limits::named_role(line).map_err(|e| {
            usage(format!(
                "--roles-file {} line {}: {e}",
                path.display(),
                n + 1
            ))
        })?;
        roles.push(role);
    }
    Ok(roles)
}

/// A usage error's own sentence, without clap's "error: " and usage lines.
fn message_of(e: &UsageError) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}
