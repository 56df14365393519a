//! Why the role could not be assumed, phrased for the person at the terminal and classified for
//! the broker's retry policy.

use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use crate::exit::Failure;

/// Why credwrap could not get going before its first STS call.
#[derive(Debug)]
pub struct SetupError {
    pub message: String,
    pub hint: &'static str,
}

impl From<SetupError> for Failure {
    fn from(e: SetupError) -> Failure {
        Failure::setup(e.message, e.hint)
    }
}

/// A failed STS call, classified for the retry policy and for the user.
#[derive(Debug, Clone)]
pub struct AssumeError {
    /// The STS error code (`AccessDenied`, `Throttling`, ...), when STS answered at all.
    pub code: Option<String>,
    pub message: String,
    pub retryable: bool,
    /// What credwrap was doing: "assume arn:...", "get an MFA session".
    pub doing: String,
    /// Worth an `error` in the log even though it is retried: STS answered, but with something
    /// no working STS sends (an expired credential, garbage).
    pub suspicious: bool,
    /// What to do, when it is not about STS (the OIDC token could not be had).
    pub hint: Option<&'static str>,
}

impl From<AssumeError> for Failure {
    fn from(e: AssumeError) -> Failure {
        Failure::setup(format!("could not {}: {e}", e.doing), e.hint())
    }
}

impl AssumeError {
    /// An error of credwrap's own making (STS was not asked, or answered nonsense).
    pub fn local(message: impl Into<String>, retryable: bool) -> AssumeError {
        AssumeError {
            code: None,
            message: message.into(),
            retryable,
            doing: String::new(),
            suspicious: false,
            hint: None,
        }
    }

    /// The OIDC token could not be had from its source; `hint` says what to check.
    pub fn token(message: impl Into<String>, retryable: bool, hint: &'static str) -> AssumeError {
        AssumeError {
            hint: Some(hint),
            ..AssumeError::local(message, retryable)
        }
    }

    /// STS answered with something no working STS sends: retried, but logged at `error`.
    pub fn suspicious(message: impl Into<String>) -> AssumeError {
        AssumeError {
            suspicious: true,
            ..AssumeError::local(message, true)
        }
    }

    /// Whether the log should say this at `error` rather than `warn`.
    pub fn is_serious(&self) -> bool {
        self.suspicious || !self.retryable
    }

    /// Says what the failed call was for, in the words of "could not ...".
    pub fn doing(mut self, what: impl Into<String>) -> AssumeError {
        self.doing = what.into();
        self
    }

    /// One line telling the user what to do about this error.
    pub fn hint(&self) -> &'static str {
        if let Some(hint) = self.hint {
            return hint;
        }
        match self.code.as_deref() {
            Some("AccessDenied") => {
                "check that the role's trust policy allows the source identity \
                 (`aws sts get-caller-identity` shows it) to call sts:AssumeRole"
            }
            Some("InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException") => {
                "the source credentials are not valid: check AWS_ACCESS_KEY_ID/AWS_PROFILE"
            }
            Some("ExpiredToken" | "ExpiredTokenException") => {
                "the source credentials have expired: renew them (e.g. `aws sso login`) and retry"
            }
            Some("RegionDisabledException") => {
                "STS is not activated in this region: activate it in IAM or pick another with --region"
            }
            Some("ValidationError" | "MalformedPolicyDocument" | "PackedPolicyTooLarge") => {
                "STS rejected a parameter: check --role-arn, --duration (the role's \
                 MaxSessionDuration) and --external-id"
            }
            Some(_) => "see the STS error above",
            None if self.suspicious => {
                "check the system clock and any proxy between credwrap and STS \
                 (HTTPS_PROXY, AWS_ENDPOINT_URL_STS)"
            }
            None => "could not reach STS: check the network, any proxy, --region and AWS_ENDPOINT_URL_STS",
        }
    }

    pub fn from_sdk<E>(err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_string);
        let mut suspicious = false;
        let (message, status) = match &err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let message = match (err.message(), &code) {
                    (Some(m), _) => m.to_string(),
                    (None, Some(_)) => "no message".to_string(),
                    (None, None) => {
                        suspicious = true;
                        unreadable(status, se.raw().body().bytes())
                    }
                };
                (message, Some(status))
            }
            SdkError::ResponseError(re) => {
                suspicious = true;
                let status = re.raw().status().as_u16();
                (unreadable(status, re.raw().body().bytes()), Some(status))
            }
            SdkError::TimeoutError(_) => ("STS did not answer in time".to_string(), None),
            _ => (error_chain(&err), None),
        };
        let retryable = match (&err, code.as_deref()) {
            (
                _,
                Some(
                    "Throttling"
                    | "ThrottlingException"
                    | "RequestTimeout"
                    | "IDPCommunicationError",
                ),
            )
            | (_, Some("ServiceUnavailable" | "InternalFailure" | "InternalError")) => true,
            (SdkError::ServiceError(_), _) => status.is_some_and(|s| s >= 500),
            (SdkError::ConstructionFailure(_), _) => false,
            // Dispatch failures (refused, reset, DNS), timeouts and garbled responses pass.
            _ => true,
        };
        AssumeError {
            code,
            message,
            retryable,
            doing: String::new(),
            suspicious,
            hint: None,
        }
    }
}

impl std::fmt::Display for AssumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What to say of an answer that carries no STS error: empty, or something else's page.
fn unreadable(status: u16, body: Option<&[u8]>) -> String {
    if body.is_none_or(|b| b.iter().all(u8::is_ascii_whitespace)) {
        format!("STS answered HTTP {status} with an empty body")
    } else {
        format!(
            "STS answered HTTP {status} with a body that is not STS's XML (a proxy or a login \
             page in the way?)"
        )
    }
}

/// An error and its sources on one line, each level's message once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let msg = e.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        next = e.source();
    }
    parts.join(": ")
}
