//! A credwrap whose child only reports the endpoint and waits, so the test itself can be the
//! SDK: it sends raw requests and sees exactly what an SDK would get.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::{Output, Running, Sandbox};

pub struct EndpointChild {
    run: Running,
    pub addr: String,
    pub path: String,
    pub token: String,
}

impl EndpointChild {
    pub fn start(sb: &Sandbox, extra_args: &[&str]) -> EndpointChild {
        let run = super::start(sb.credwrap().args(extra_args).args([
                "--",
                "sh",
                "-c",
                "echo \"${AWS_CONTAINER_CREDENTIALS_FULL_URI:-$AWS_EC2_METADATA_SERVICE_ENDPOINT} ${AWS_CONTAINER_AUTHORIZATION_TOKEN:-none}\"; read line; exit 0",
        ]));
        let (addr, path, token) = endpoint_line(&run.line("the endpoint variables"));
        EndpointChild {
            addr,
            path,
            token,
            run,
        }
    }

    /// GET the credential with the right token.
    pub fn get(&self) -> (u16, String) {
        request(&self.addr, "GET", &self.path, Some(&self.token))
    }

    /// Lets the child exit and collects credwrap's output.
    pub fn finish(self) -> Output {
        self.run.finish()
    }
}

/// `http://ADDR/PATH TOKEN`, as a child prints its endpoint variables: (addr, path, token).
pub fn endpoint_line(line: &str) -> (String, String, String) {
    let (uri, token) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
    let rest = uri
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{line:?}"));
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (addr.to_string(), path.to_string(), token.to_string())
}

/// One HTTP/1.1 request on a new connection; returns the status code and body.
pub fn request(addr: &str, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let r = send(addr, method, path, &headers);
    (r.status, r.body)
}

pub struct Reply {
    pub status: u16,
    /// Header lines with lower-cased names: `name: value`.
    pub headers: Vec<String>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }
}

/// One HTTP/1.1 request with the given headers on a new connection.
pub fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "PUT" || method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    send_raw(addr, req.as_bytes())
}

/// Writes `raw` as is and reads the reply until the server closes the connection.
pub fn send_raw(addr: &str, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(super::TIMEOUT)).unwrap();
    // The server may answer and close before it read everything (431): ignore write errors.
    let _ = s.write_all(raw);
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let resp = String::from_utf8_lossy(&bytes).to_string();
    if resp.is_empty() {
        return Reply {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
        };
    }
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    let headers = lines
        .map(|l| match l.split_once(": ") {
            Some((k, v)) => format!("{}: {v}", k.to_ascii_lowercase()),
            None => l.to_string(),
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}
