//! Executing the command: the `PATH` search of `execvp`, done by us so that nothing is ever
//! handed to `/bin/sh` (glibc's `execvp` runs a file the kernel refused with ENOEXEC as a shell
//! script: a corrupt binary would then "run" and exit 2), and failures that say what happened.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::SpawnError;
use crate::exit;

/// The command's argv, environment and the paths to try, made before `fork` so that the child
/// side only calls `execve` (async-signal-safe: no allocation between fork and exec).
pub struct Exec {
    candidates: Vec<CString>,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into the CStrings this struct owns, which are never modified or
// moved (their heap buffers stay put); the struct is only read, in the forked child.
unsafe impl Send for Exec {}
unsafe impl Sync for Exec {}

impl Exec {
    pub fn new(command: &[OsString], env: &[(OsString, OsString)]) -> Result<Exec, SpawnError> {
        let Some(program) = command.first() else {
            return Err(SpawnError {
                code: exit::USAGE,
                message: "no command given".into(),
            });
        };
        let cstring = |bytes: Vec<u8>| {
            CString::new(bytes).map_err(|_| SpawnError {
                code: exit::USAGE,
                message: "the command or its environment contains a NUL byte".into(),
            })
        };
        let argv = command
            .iter()
            .map(|a| cstring(a.as_bytes().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(kv)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str());
        let candidates = candidates(program, path)
            .into_iter()
            .map(|p| cstring(p.into_os_string().into_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let pointers = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(Exec {
            argv_ptrs: pointers(&argv),
            envp_ptrs: pointers(&envp),
            candidates,
            _argv: argv,
            _envp: envp,
        })
    }

    /// In the forked child: `execve` each candidate as `execvp` does (go on past ENOENT and
    /// EACCES, report EACCES if any was seen), and return the error if none could be run.
    pub fn execve(&self) -> io::Error {
        let mut denied = false;
        for path in &self.candidates {
            // SAFETY: NUL-terminated strings and NULL-terminated pointer arrays we own.
            unsafe {
                libc::execve(
                    path.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                );
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EACCES) => denied = true,
                Some(
                    libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT,
                ) => {}
                _ => return err,
            }
        }
        io::Error::from_raw_os_error(if denied { libc::EACCES } else { libc::ENOENT })
    }
}

/// Where `execvp` would look: the name itself if it has a slash, else each `PATH` entry (an
/// empty entry is the current directory; no `PATH` is glibc's default). An empty name is
/// nowhere, as in bash (`'': command not found`): joined to a directory it would name the
/// directory itself.
fn candidates(program: &OsStr, path: Option<&OsStr>) -> Vec<PathBuf> {
    if program.is_empty() {
        return Vec::new();
    }
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    let path = path.unwrap_or(OsStr::new("/bin:/usr/bin"));
    path.as_bytes()
        .split(|b| *b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            Path::new(OsStr::from_bytes(dir)).join(program)
        })
        .collect()
}

/// Before anything is assumed: a command that is nowhere to be found fails now, with bash's
/// 127, rather than after an STS call (and an MFA prompt) for nothing. Whether it can really
/// be executed is only known at `execve`, which reports the rest.
pub fn find_on(program: &OsStr, path: Option<&OsStr>) -> Result<(), SpawnError> {
    if candidates(program, path).iter().any(|p| p.exists()) {
        return Ok(());
    }
    Err(failure(
        program,
        path,
        &io::Error::from_raw_os_error(libc::ENOENT),
    ))
}

/// What the user is told when the command could not be run, with bash's exit codes.
pub fn failure(program: &OsStr, path: Option<&OsStr>, e: &io::Error) -> SpawnError {
    let name = program.to_string_lossy();
    // The first candidate that exists: what the kernel was asked to run.
    let found = candidates(program, path).into_iter().find(|p| p.is_file());
    let (code, message) = match (e.raw_os_error(), &found) {
        (Some(libc::ENOENT), Some(file)) => (
            exit::NOT_FOUND,
            format!("cannot run '{name}': {}", missing_interpreter(file)),
        ),
        (Some(libc::ENOENT), None) => (
            exit::NOT_FOUND,
            format!("cannot run '{name}': command not found; check the name and PATH"),
        ),
        (Some(libc::EACCES), _) => (
            exit::NOT_EXECUTABLE,
            format!(
                "cannot run '{name}': permission denied; check that it is an executable file \
                 (chmod +x) and not a directory"
            ),
        ),
        (Some(libc::ENOEXEC), Some(file)) => (
            exit::NOT_EXECUTABLE,
            format!("cannot run '{name}': {}", not_executable_format(file)),
        ),
        _ => (
            exit::NOT_EXECUTABLE,
            format!("cannot run '{name}': {e}; check that it is a program this system can run"),
        ),
    };
    SpawnError { code, message }
}

/// The start of a file, enough for a `#!` line or a binary's magic number.
fn head(file: &Path) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(file) {
        let _ = f.take(256).read_to_end(&mut buf);
    }
    buf
}

/// The file exists, so ENOENT came from its `#!` interpreter.
fn missing_interpreter(file: &Path) -> String {
    let head = head(file);
    let Some(line) = head.strip_prefix(b"#!") else {
        return "a file it needs (its interpreter or loader) was not found".into();
    };
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let interpreter = String::from_utf8_lossy(line).trim_start().to_string();
    if interpreter.ends_with('\r') {
        return format!(
            "its #! line ends in a carriage return (Windows line endings), so the interpreter \
             '{}\\r' does not exist; convert the file with dos2unix",
            interpreter.trim_end_matches('\r')
        );
    }
    let program = interpreter.split_whitespace().next().unwrap_or_default();
    format!("its interpreter '{program}' (from its #! line) was not found; install it or fix the #! line")
}

/// The kernel refused the file's format (ENOEXEC).
fn not_executable_format(file: &Path) -> String {
    let head = head(file);
    if head.starts_with(b"\x7fELF") {
        "it is an ELF binary this system cannot run (another architecture, or corrupt)".into()
    } else if head.contains(&0) || std::str::from_utf8(&head).is_err() {
        "it is not an executable format this system knows (corrupt, or not a program)".into()
    } else {
        "it is not an executable format: a script needs a #! line (e.g. #!/bin/sh); credwrap \
         does not guess an interpreter"
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search_is_execvps() {
        let path = OsStr::new("/a::/b");
        assert_eq!(
            candidates(OsStr::new("tool"), Some(path)),
            [
                PathBuf::from("/a/tool"),
                PathBuf::from("./tool"),
                PathBuf::from("/b/tool")
            ]
        );
        assert_eq!(
            candidates(OsStr::new("./x"), Some(path)),
            [PathBuf::from("./x")]
        );
        assert_eq!(
            candidates(OsStr::new("sh"), None),
            [PathBuf::from("/bin/sh"), PathBuf::from("/usr/bin/sh")]
        );
        assert!(candidates(OsStr::new(""), Some(path)).is_empty());
    }
}
