//! Whole-job mode (`--serve`): what the processes started later need, written where they will
//! find it. It is the difference between credwrap's own environment and the one it would give a
//! command: the endpoint's variables, the stand-in AWS files, the region, `NO_PROXY`, and the
//! variables that would lead an SDK to other credentials, removed.
//!
//! - `shell`: `export NAME='value'` and `unset NAME` lines, for `eval "$(credwrap ...)"`.
//! - `github`: lines appended to `$GITHUB_ENV` in GitHub's syntax (`NAME=value`, or
//!   `NAME<<DELIMITER` for a value with a line break). A runner cannot unset a variable, so the
//!   static keys are set empty, which every SDK takes as unset (tests/ci.rs checks boto3, the AWS
//!   CLI, JS v3 and Go v2); the token is masked in the job's log (`::add-mask::` on stdout).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

/// One variable to set, or to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    pub value: Option<String>,
}

/// Variables whose values are secrets: masked in a GitHub job's log.
const SECRET: &[&str] = &["AWS_CONTAINER_AUTHORIZATION_TOKEN"];

/// What a runner can only blank: every SDK reads an empty static key as no key.
const BLANKED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

/// What a runner can only blank, where it holds them: a runner pod's IRSA variables (EKS),
/// whose provider comes before the container one. Not blanked otherwise: the Rust SDK reads a
/// blank file name as a file (the stand-in config's default profile then serves it).
const BLANKED_IF_SET: &[&str] = &["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"];

/// From `current` (credwrap's environment) to `target` (what a command would get), plus
/// `extra` (CREDWRAP_PID and the like), in a stable order.
pub fn changes(
    current: impl IntoIterator<Item = (OsString, OsString)>,
    target: &[(OsString, OsString)],
    extra: &[(&str, String)],
) -> Vec<Change> {
    let current: HashMap<OsString, OsString> = current.into_iter().collect();
    let text = |s: &OsStr| s.to_str().map(str::to_string);
    let mut out: Vec<Change> = Vec::new();
    for (k, v) in target {
        if current.get(k) != Some(v) {
            match (text(k), text(v)) {
                (Some(name), Some(value)) => out.push(Change {
                    name,
                    value: Some(value),
                }),
                _ => tracing::warn!("not handing out {}: it is not text", k.to_string_lossy()),
            }
        }
    }
    let kept: std::collections::HashSet<&OsString> = target.iter().map(|(k, _)| k).collect();
    for k in current.keys().filter(|k| !kept.contains(k)) {
        if let Some(name) = text(k) {
            out.push(Change { name, value: None });
        }
    }
    for (name, value) in extra {
        out.push(Change {
            name: (*name).to_string(),
            value: Some(value.clone()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `export` and `unset` lines for a POSIX shell's `eval`.
pub fn shell(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        match &c.value {
            Some(v) => out.push_str(&format!("export {}={}\n", c.name, shell_quote(v))),
            None => out.push_str(&format!("unset {}\n", c.name)),
        }
    }
    out
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// What goes into `$GITHUB_ENV`, what goes on stdout (the masks), and the variables a runner
/// cannot remove and that are left as they are (the caller warns).
pub struct Github {
    pub env_file: String,
    pub stdout: String,
    pub kept: Vec<String>,
}

/// GitHub's environment-file syntax; `delimiter` must not occur in any value (the caller makes
/// a random one).
pub fn github(changes: &[Change], delimiter: &str) -> Github {
    let mut env_file = String::new();
    let mut stdout = String::new();
    let mut kept = Vec::new();
    let mut blanked: Vec<&str> = Vec::new();
    for c in changes {
        let value = match &c.value {
            Some(v) => v.as_str(),
            None if BLANKED.contains(&c.name.as_str())
                || BLANKED_IF_SET.contains(&c.name.as_str()) =>
            {
                ""
            }
            None => {
                kept.push(c.name.clone());
                continue;
            }
        };
        if let Some(b) = BLANKED.iter().find(|b| **b == c.name) {
            blanked.push(b);
        }
        if SECRET.contains(&c.name.as_str()) && !value.is_empty() {
            stdout.push_str(&format!("::add-mask::{value}\n"));
        }
        if value.contains('\n') || value.contains('\r') {
            env_file.push_str(&format!("{}<<{delimiter}\n{value}\n{delimiter}\n", c.name));
        } else {
            env_file.push_str(&format!("{}={value}\n", c.name));
        }
    }
    // Keys a later step may have from an earlier one's $GITHUB_ENV: blank them whether or not
    // this step sees them.
    for name in BLANKED.iter().filter(|b| !blanked.contains(b)) {
        env_file.push_str(&format!("{name}=\n"));
    }
    Github {
        env_file,
        stdout,
        kept,
    }
}

/// The step's outputs, as configure-aws-credentials sets them, for the assumed-role session
/// `arn` (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`): its account and itself. An ARN
/// holds no line break, so the one-line form is safe.
pub fn github_outputs(arn: &str) -> String {
    let mut out = String::new();
    if let Some(account) = arn.split(':').nth(4).filter(|a| !a.is_empty()) {
        out.push_str(&format!("aws-account-id={account}\n"));
    }
    out.push_str(&format!("authenticated-arn={arn}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outputs_are_the_sessions_account_and_arn() {
        assert_eq!(
            github_outputs("arn:aws:sts::123456789012:assumed-role/deploy/s"),
            "aws-account-id=123456789012\n\
             authenticated-arn=arn:aws:sts::123456789012:assumed-role/deploy/s\n"
        );
    }

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn the_changes_are_what_a_command_would_get_that_the_shell_has_not() {
        let current = os(&[
            ("PATH", "/bin"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_PROFILE", "x"),
        ]);
        let target = os(&[
            ("PATH", "/bin"),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/p"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok"),
        ]);
        let c = changes(current, &target, &[("CREDWRAP_PID", "42".into())]);
        let names: Vec<(&str, bool)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.value.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("AWS_ACCESS_KEY_ID", false),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", true),
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", true),
                ("AWS_PROFILE", false),
                ("CREDWRAP_PID", true),
            ]
        );
        let sh = shell(&c);
        assert!(sh.contains("unset AWS_ACCESS_KEY_ID\n"), "{sh}");
        assert!(
            sh.contains("export AWS_CONTAINER_AUTHORIZATION_TOKEN='tok'\n"),
            "{sh}"
        );
    }

    #[test]
    fn shell_quoting_survives_eval() {
        let c = [Change {
            name: "X".into(),
            value: Some("it's $HOME `x`".into()),
        }];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{}printf %s \"$X\"", shell(&c)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME `x`");
    }

    #[test]
    fn github_blanks_keys_masks_the_token_and_uses_heredocs_for_line_breaks() {
        let c = [
            Change {
                name: "AWS_ACCESS_KEY_ID".into(),
                value: None,
            },
            Change {
                name: "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
                value: Some("tok".into()),
            },
            Change {
                name: "AWS_PROFILE".into(),
                value: None,
            },
            Change {
                name: "NOTE".into(),
                value: Some("two\nlines".into()),
            },
        ];
        let g = github(&c, "ghadelimiter_1");
        assert!(
            g.env_file.starts_with("AWS_ACCESS_KEY_ID=\n"),
            "{}",
            g.env_file
        );
        assert!(g
            .env_file
            .contains("AWS_CONTAINER_AUTHORIZATION_TOKEN=tok\n"));
        assert!(g
            .env_file
            .contains("NOTE<<ghadelimiter_1\ntwo\nlines\nghadelimiter_1\n"));
        assert!(g.env_file.contains("AWS_SECRET_ACCESS_KEY=\n"));
        assert_eq!(g.stdout, "::add-mask::tok\n");
        assert_eq!(g.kept, ["AWS_PROFILE"]);
    }
}
