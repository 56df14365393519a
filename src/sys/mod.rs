//! OS-level plumbing that belongs to no stage: every stage may use it, it uses no stage.

// credwrap's own process limits (non-dumpable, core 0, open files) and the child's.
pub mod lockdown;
// Log lines on stderr, text or JSON; never a secret.
pub mod logging;
// The 0700 directory for the token file, the env file and the stand-in AWS files.
pub mod private_dir;
// Random bytes from getrandom(2), for the endpoint's secrets and retry jitter.
pub mod random;
// Own children (the token command) whose status a subreaper's reaping hands over.
pub mod reaping;
// A string that never prints: secrets.
pub mod secret;
