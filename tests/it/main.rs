//! Every integration test, in one binary: `support` is compiled once, and the tests run side
//! by side (`scripts/test` runs them with cargo-nextest, one process each, several at once).
//!
//! A test that needs something the whole machine has one of takes its lock from
//! [`support::exclusive`]: 169.254.170.2 and port 80 on it, the Docker daemon. The admission
//! tests measure latency on a quiet machine, so nextest runs them alone
//! (`.config/nextest.toml`).

mod support;

mod admission;
mod architecture;
mod ci;
mod cli;
mod cli_parity;
mod clients;
mod containers;
mod docker;
mod docs;
mod endpoint;
mod exec;
mod hardening;
mod health;
mod proxy;
mod refresh;
mod release;
mod roles;
mod session;
mod signals;
mod startup;
mod tokens;
