//! What a process the endpoint serves is handed: its environment (the endpoint's variables, no
//! other credential) and the stand-in AWS files. That process is the command in command mode,
//! and every process started later under `--serve`; the child module only passes it on.

// Asking a running credwrap over its loopback listener.
mod ask;
pub mod aws_files;
pub mod env;
// `credwrap --credential-process URI`: a named role's credential, for a client's SDK.
pub mod process;
// `credwrap status`: how a running credwrap is doing.
pub mod status;
