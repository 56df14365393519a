//! Named roles on the loopback listener: each at a random path of its own, read with the
//! endpoint's secret by `credwrap --credential-process` (which a client's SDK runs for the
//! profile of that name), in the container-credentials format. And container roles on a
//! gateway: each behind a path and a token of its own, handed only to its containers.
//!
//! With the container protocol the secret is the loopback listener's own token, so a client
//! needs nothing it does not already have; with IMDS, which has no secret of its own, it is a
//! token of its own, handed on as `CREDWRAP_ROLES_TOKEN`. A path that names no role gets the
//! same 404 as any other, so a request cannot learn which roles there are.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};

use super::gateway::UriForm;
use super::http::{self, Current, RenderCache, Reply};
use super::{ecs, StartError};
use crate::broker::CredentialReader;
use crate::sys::secret::Secret;

/// The variable that holds the named roles' secret where no container token does (IMDS).
pub const ENV_ROLES_TOKEN: &str = "CREDWRAP_ROLES_TOKEN";

/// One named role's door: its path, its secret, and its broker's credential as this listener
/// renders it.
struct Door {
    name: String,
    path: String,
    /// Required in `Authorization`; none where the path is the whole secret (a relative URI,
    /// which not every SDK sends a token with).
    token: Option<Secret>,
    reader: CredentialReader,
    rendered: RenderCache,
}

/// The named roles one listener serves: on the loopback listener every role behind the one
/// endpoint token; on a gateway each container role behind secrets of its own.
pub struct NamedRoles {
    doors: Vec<Door>,
    /// The loopback listener's token, when it is the named roles' own (IMDS has none).
    own_token: Option<Secret>,
}

impl NamedRoles {
    /// For the loopback listener: doors at new random paths behind `token`, the container
    /// protocol's, or with none (IMDS) behind a new token of their own.
    pub fn new(
        roles: Vec<(String, CredentialReader)>,
        token: Option<Secret>,
    ) -> Result<NamedRoles, StartError> {
        let own_token = match token {
            Some(_) => None,
            None => Some(Secret::new(
                http::random_hex(32).map_err(StartError::random)?,
            )),
        };
        let token = token.or_else(|| own_token.clone());
        let doors = doors(roles, 16, || Ok(token.clone()))?;
        Ok(NamedRoles { doors, own_token })
    }

    /// For a gateway: each container role at a 256-bit path of its own and, with
    /// `with_token` (a full URI), a token of its own, so a container's secret opens its role
    /// and no other.
    pub fn for_gateway(
        roles: Vec<(String, CredentialReader)>,
        with_token: bool,
    ) -> Result<NamedRoles, StartError> {
        let token = || -> Result<Option<Secret>, StartError> {
            with_token
                .then(|| http::random_hex(32).map(Secret::new))
                .transpose()
                .map_err(StartError::random)
        };
        Ok(NamedRoles {
            doors: doors(roles, 32, token)?,
            own_token: None,
        })
    }

    /// Each role's name and the URI its credential is read from, on the listener at `addr`.
    pub fn uris(&self, addr: SocketAddr) -> Vec<(String, String)> {
        self.doors
            .iter()
            .map(|d| (d.name.clone(), format!("http://{addr}{}", d.path)))
            .collect()
    }

    /// Each container role's name and its lines of `docker run --env-file`.
    pub fn gateway_env_lines(&self, addr: SocketAddr, form: UriForm) -> Vec<(String, Vec<String>)> {
        self.doors
            .iter()
            .map(|d| {
                let lines = ecs::env_lines(addr, form, &d.path, d.token.as_ref());
                (d.name.clone(), lines)
            })
            .collect()
    }

    /// What clients need besides the container protocol's variables: the IMDS mode's token.
    pub fn client_env(&self) -> Vec<(&'static str, Secret)> {
        match &self.own_token {
            Some(token) if !self.doors.is_empty() => vec![(ENV_ROLES_TOKEN, token.clone())],
            _ => Vec::new(),
        }
    }

    /// The loopback listener's token, when it is the named roles' own (IMDS has none).
    pub fn own_token(&self) -> Option<&Secret> {
        self.own_token.as_ref()
    }

    /// Each role as `/healthz` sees it, held to the container protocol's floor as its
    /// requests are.
    pub fn served(&self) -> Vec<super::health::Served<'_>> {
        self.doors
            .iter()
            .map(|d| super::health::Served {
                name: Some(&d.name),
                reader: &d.reader,
                min_remaining: super::ecs::MIN_REMAINING,
            })
            .collect()
    }

    /// The answer when the request's path is a named role's, or `None` when it is no door.
    pub fn respond(&self, revoked: bool, req: &Request<Incoming>) -> Option<Reply> {
        let path = req.uri().path().as_bytes();
        // Every door is compared, in constant time: which one matched does not show.
        let mut found = None;
        for door in &self.doors {
            if http::bytes_eq(path, door.path.as_bytes()) {
                found = Some(door);
            }
        }
        let door = found?;
        if req.method() != Method::GET {
            return Some(http::method_not_allowed("GET"));
        }
        if let Some(token) = &door.token {
            if !http::secret_eq(req.headers().get(AUTHORIZATION), token.expose()) {
                return Some(http::error_reply(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "the Authorization header must be this role's token",
                ));
            }
        }
        tracing::trace!(role = %door.name, "named role request");
        let current = Current {
            reader: &door.reader,
            revoked,
            // credential_process clients get the container protocol's floor, whatever the
            // listener speaks: botocore refreshes both kinds in the same 15/10-minute windows.
            min_remaining: super::ecs::MIN_REMAINING,
            rendered: &door.rendered,
        };
        Some(current.credential_reply(super::ecs::document))
    }
}

/// A door for each role, at a random path of `path_bytes` bytes, with the token `token` makes.
fn doors(
    roles: Vec<(String, CredentialReader)>,
    path_bytes: usize,
    mut token: impl FnMut() -> Result<Option<Secret>, StartError>,
) -> Result<Vec<Door>, StartError> {
    roles
        .into_iter()
        .map(|(name, reader)| {
            Ok(Door {
                name,
                path: format!(
                    "/{}",
                    http::random_hex(path_bytes).map_err(StartError::random)?
                ),
                token: token()?,
                reader,
                rendered: RenderCache::default(),
            })
        })
        .collect()
}
