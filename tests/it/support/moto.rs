//! moto's STS, a third-party STS that nobody here wrote, started by scripts/moto_sts.py (as
//! scripts/demo and scripts/bench start it) on an ephemeral loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto_sts.py");
        // Its stdin stays a pipe we hold: moto exits when this test process goes away.
        let mut child = Command::new(super::python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto (scripts/test installs it)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line.trim().to_string());
        });
        let url = rx.recv_timeout(super::TIMEOUT).expect("moto did not start");
        assert!(url.starts_with("http://127.0.0.1:"), "moto said {url:?}");
        Moto { child, url }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
