//! Serving containers the command starts (`--container-host`).
//!
//! Inside a container 127.0.0.1 is the container, and the SDKs accept a plain-HTTP container
//! endpoint only on loopback or on ECS/EKS's link-local addresses. So credwrap also listens on
//! such an address that this host has: the gateway of a Docker network created with
//! `--gateway 169.254.170.2`. On 169.254.170.2, port 80, it hands containers
//! `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, which every SDK has accepted since 2016 (and which
//! wins over a FULL_URI); the 256-bit random path is then the secret, as on ECS. Where port 80
//! cannot be had (no root or CAP_NET_BIND_SERVICE, or another credwrap holds it), and on the
//! other addresses, it hands out `AWS_CONTAINER_CREDENTIALS_FULL_URI` and a token, which only
//! newer SDKs accept on such a host (docs/containers.md has the matrix).
//!
//! Only peers on the networks of the interfaces that hold the address are served: a container on
//! another Docker network that routes to the address through the host is turned away. Every
//! interface that holds the address counts (169.254.170.2 on a user network and, by the
//! recipe in docs/containers.md, on docker0 too): its containers reach the one listener through it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tokio::net::TcpListener;

/// The link-local addresses SDKs accept for a plain-HTTP container endpoint, besides loopback.
const ECS_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2));
const EKS_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23));
const EKS_HOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23));

/// How containers are told where the endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriForm {
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: 169.254.170.2, port 80, the path is the secret.
    Relative,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` with a port and `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Full,
}

/// A `--container-host` address checked against this host's interfaces.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub ip: IpAddr,
    /// The interfaces that hold the address.
    pub interfaces: Vec<String>,
    /// Their networks: where containers' requests may come from.
    networks: Networks,
}

impl Gateway {
    /// Checks that `ip` is an address the SDKs accept and this host has, never a wildcard.
    pub fn validate(ip: IpAddr) -> Result<Gateway, String> {
        const CREATE: &str = "create the Docker network once: docker network create --subnet \
                              169.254.170.0/24 --gateway 169.254.170.2 credwrap";
        if ip.is_unspecified() {
            return Err(format!(
                "--container-host {ip}: a wildcard would serve every network this host is on; \
                 give the address containers reach (169.254.170.2)"
            ));
        }
        if ip.is_loopback() {
            return Err(format!(
                "--container-host {ip}: inside a container that is the container itself; for \
                 --network host containers the command's own endpoint already serves 127.0.0.1"
            ));
        }
        if ![ECS_HOST, EKS_HOST, EKS_HOST_V6].contains(&ip) {
            return Err(format!(
                "--container-host {ip}: the SDKs refuse a plain-HTTP container endpoint there \
                 (only loopback, 169.254.170.2, 169.254.170.23 or fd00:ec2::23); {CREATE}"
            ));
        }
        let (interfaces, networks) = interfaces_of(ip)
            .map_err(|e| format!("--container-host {ip}: cannot list this host's addresses: {e}"))?
            .ok_or_else(|| {
                format!(
                    "--container-host {ip}: no interface of this host has that address; {CREATE}"
                )
            })?;
        Ok(Gateway {
            ip,
            interfaces,
            networks,
        })
    }

    /// Whether a connection from `peer` came from one of the interface's networks.
    pub fn admits(&self, peer: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|(net, mask)| same_network(*net, *mask, peer))
    }

    /// Binds the listener: port 80 on 169.254.170.2 for the relative form when possible,
    /// else an ephemeral port and the full form.
    pub async fn bind(&self) -> Result<(TcpListener, UriForm), String> {
        if self.ip == ECS_HOST {
            match super::admission::listen((self.ip, 80).into()) {
                Ok(listener) => return Ok((listener, UriForm::Relative)),
                Err(e) => tracing::warn!(
                    "cannot listen on {}:80 ({e}; it needs root, CAP_NET_BIND_SERVICE or \
                     net.ipv4.ip_unprivileged_port_start=80, and no other credwrap there): \
                     containers get AWS_CONTAINER_CREDENTIALS_FULL_URI instead, which the Go \
                     SDKs, the JavaScript SDK v2 and older v3 refuse on this address",
                    self.ip
                ),
            }
        }
        let listener = super::admission::listen((self.ip, 0).into())
            .map_err(|e| format!("could not listen on {}: {e}", self.ip))?;
        Ok((listener, UriForm::Full))
    }
}

/// (address, netmask) pairs: where an interface's peers may be.
type Networks = Vec<(IpAddr, IpAddr)>;

/// The interfaces that have `ip`, and every (address, netmask) of those interfaces; `None` when
/// no interface has it.
fn interfaces_of(ip: IpAddr) -> nix::Result<Option<(Vec<String>, Networks)>> {
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs()?.collect();
    let as_ip = |a: Option<&nix::sys::socket::SockaddrStorage>| {
        let a = a?;
        a.as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    };
    let mut interfaces: Vec<String> = addrs
        .iter()
        .filter(|a| as_ip(a.address.as_ref()) == Some(ip))
        .map(|a| a.interface_name.clone())
        .collect();
    interfaces.sort();
    interfaces.dedup();
    if interfaces.is_empty() {
        return Ok(None);
    }
    let networks = addrs
        .iter()
        .filter(|a| interfaces.contains(&a.interface_name))
        .filter_map(|a| Some((as_ip(a.address.as_ref())?, as_ip(a.netmask.as_ref())?)))
        .collect();
    Ok(Some((interfaces, networks)))
}

fn same_network(net: IpAddr, mask: IpAddr, peer: IpAddr) -> bool {
    match (net, mask, peer) {
        (IpAddr::V4(n), IpAddr::V4(m), IpAddr::V4(p)) => {
            let m = u32::from(m);
            u32::from(n) & m == u32::from(p) & m
        }
        (IpAddr::V6(n), IpAddr::V6(m), IpAddr::V6(p)) => {
            let m = u128::from(m);
            u128::from(n) & m == u128::from(p) & m
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_the_sdks_refuse_are_refused() {
        for bad in [
            "0.0.0.0",
            "::",
            "127.0.0.1",
            "::1",
            "172.17.0.1",
            "10.0.0.1",
            "169.254.169.254",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(Gateway::validate(ip).is_err(), "{bad}");
        }
    }

    #[test]
    fn peers_are_matched_against_the_interfaces_networks() {
        let host = Gateway {
            ip: ECS_HOST,
            interfaces: vec!["br".into()],
            networks: vec![
                (ECS_HOST, "255.255.255.0".parse().unwrap()),
                (
                    "172.17.0.1".parse().unwrap(),
                    "255.255.0.0".parse().unwrap(),
                ),
            ],
        };
        assert!(host.admits("169.254.170.10".parse().unwrap()));
        assert!(host.admits("172.17.3.4".parse().unwrap()));
        assert!(!host.admits("10.1.1.1".parse().unwrap()));
        assert!(!host.admits("169.254.171.1".parse().unwrap()));
        assert!(!host.admits("fd00::1".parse().unwrap()));
    }
}
