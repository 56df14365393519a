//! A string that must never be printed: `Debug` and `Display` redact it, `==` takes the same
//! time however much of it matches, and memory is wiped on drop. [`wiped_bytes`] does the same
//! for the rendered responses that carry the role's keys.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for Secret {}

/// Bytes whose buffer is zeroed when the last reference to them goes: a response body holding
/// keys, which hyper may still be writing after the credential was replaced.
pub fn wiped_bytes(bytes: Vec<u8>) -> bytes::Bytes {
    struct Wiped(Vec<u8>);
    impl AsRef<[u8]> for Wiped {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Wiped {
        fn drop(&mut self) {
            self.0.zeroize();
        }
    }
    bytes::Bytes::from_owner(Wiped(bytes))
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The only way to the value: every call site is a place a secret leaves this type on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A secret read from JSON (the credential_process client's): it goes straight into the type.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn compares_by_value() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("abcd"));
    }

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("wJalrXUtnFEMI");
        assert!(!format!("{s:?} {s} {s:#?}").contains("wJalr"));
        assert_eq!(s.expose(), "wJalrXUtnFEMI");
    }
}
