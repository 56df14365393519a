//! tests/children/corp_net.py, a corporate network in miniature: a CA made for the test, a TLS
//! front for the fake STS with a certificate for `sts.corp.test` that CA signed, and a proxy that
//! alone reaches the `corp.test` names.

use std::path::PathBuf;
use std::process::Command;

use super::{python, script, Running, Sandbox};

pub struct CorpNet {
    net: Running,
    /// `http://127.0.0.1:PORT`, the proxy.
    pub proxy: String,
    /// The CA that signed the TLS front's certificate (PEM).
    pub ca: PathBuf,
    /// The TLS front's port on 127.0.0.1 (`sts.corp.test` must be pointed there).
    pub tls_port: u16,
    _dir: tempfile::TempDir,
}

impl CorpNet {
    pub fn start(sb: &Sandbox) -> CorpNet {
        let dir = tempfile::tempdir().unwrap();
        let sts_port = sb.sts.url().rsplit(':').next().unwrap().to_string();
        let net = super::start(
            Command::new(python())
                .arg(script("corp_net.py"))
                .arg(dir.path())
                .arg(sts_port),
        );
        let ready = net.line("the proxy's address");
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("corp_net said {ready:?}"))
                .to_string()
        };
        CorpNet {
            proxy: format!("http://127.0.0.1:{}", field("proxy")),
            ca: PathBuf::from(field("ca")),
            tls_port: field("tls").parse().unwrap(),
            net,
            _dir: dir,
        }
    }

    /// Everything the proxy logged, once the network is torn down.
    pub fn requests(self) -> String {
        self.net.finish().stdout
    }
}
