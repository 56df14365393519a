//! Named roles on the loopback listener: each at a random path of its own, read with the
//! endpoint's secret by `credwrap --credential-process` (which a client's SDK runs for the
//! profile of that name), in the container-credentials format.
//!
//! With the container protocol the secret is the loopback listener's own token, so a client
//! needs nothing it does not already have; with IMDS, which has no secret of its own, it is a
//! token of its own, handed on as `CREDWRAP_ROLES_TOKEN`. A path that names no role gets the
//! same 404 as any other, so a request cannot learn which roles there are.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};

use super::http::{self, Current, RenderCache, Reply};
use super::StartError;
use crate::broker::CredentialReader;
use crate::sys::secret::Secret;

/// The variable that holds the named roles' secret where no container token does (IMDS).
pub const ENV_ROLES_TOKEN: &str = "CREDWRAP_ROLES_TOKEN";

/// One named role's door: its path, and its broker's credential as this listener renders it.
struct Door {
    name: String,
    path: String,
    reader: CredentialReader,
    rendered: RenderCache,
}

/// Every named role the loopback listener serves, behind one secret.
pub struct NamedRoles {
    doors: Vec<Door>,
    token: Secret,
    /// Whether the token is the container protocol's (already in the clients' environment).
    shares_container_token: bool,
}

impl NamedRoles {
    /// Doors at new random paths; `token` is the container protocol's, or none for a new one.
    pub fn new(
        roles: Vec<(String, CredentialReader)>,
        token: Option<Secret>,
    ) -> Result<NamedRoles, StartError> {
        let shares_container_token = token.is_some();
        let token = match token {
            Some(token) => token,
            None => Secret::new(http::random_hex(32).map_err(StartError::random)?),
        };
        let doors = roles
            .into_iter()
            .map(|(name, reader)| {
                Ok(Door {
                    name,
                    path: format!("/{}", http::random_hex(16).map_err(StartError::random)?),
                    reader,
                    rendered: RenderCache::default(),
                })
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        Ok(NamedRoles {
            doors,
            token,
            shares_container_token,
        })
    }

    /// Each role's name and the URI its credential is read from, on the listener at `addr`.
    pub fn uris(&self, addr: SocketAddr) -> Vec<(String, String)> {
        self.doors
            .iter()
            .map(|d| (d.name.clone(), format!("http://{addr}{}", d.path)))
            .collect()
    }

    /// What clients need besides the container protocol's variables: the IMDS mode's token.
    pub fn client_env(&self) -> Vec<(&'static str, Secret)> {
        if self.shares_container_token || self.doors.is_empty() {
            Vec::new()
        } else {
            vec![(ENV_ROLES_TOKEN, self.token.clone())]
        }
    }

    /// The answer when the request's path is a named role's, or `None` when it is no door.
    pub fn respond(&self, current: &Current<'_>, req: &Request<Incoming>) -> Option<Reply> {
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
        if !http::secret_eq(req.headers().get(AUTHORIZATION), self.token.expose()) {
            return Some(http::error_reply(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the Authorization header must be the endpoint's token",
            ));
        }
        tracing::trace!(role = %door.name, "named role request");
        let current = Current {
            reader: &door.reader,
            revoked: current.revoked,
            // credential_process clients get the container protocol's floor, whatever the
            // listener speaks: botocore refreshes both kinds in the same 15/10-minute windows.
            min_remaining: super::ecs::MIN_REMAINING,
            rendered: &door.rendered,
        };
        Some(current.credential_reply(super::ecs::document))
    }
}
