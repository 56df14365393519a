//! Asking the person at the terminal for an MFA code, once, before anything runs.

use std::io::{BufRead, IsTerminal, Write};

/// Reads a line from the controlling terminal (not stdin, which belongs to the command), or says
/// what to do when there is none.
pub fn terminal(serial: &str) -> Result<String, String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
        .filter(|t| t.is_terminal());
    let Some(mut tty) = tty else {
        return Err(
            "an MFA code is needed and there is no terminal to ask on: pass --mfa-code or \
             CREDWRAP_MFA_CODE"
                .to_string(),
        );
    };
    let _ = write!(tty, "credwrap: MFA code for {serial}: ");
    let _ = tty.flush();
    let mut line = String::new();
    std::io::BufReader::new(&mut tty)
        .read_line(&mut line)
        .map_err(|e| format!("could not read the MFA code: {e}"))?;
    Ok(line.trim().to_string())
}
