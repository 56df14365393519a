//! Which certificate authorities STS's TLS connections trust.
//!
//! As the AWS CLI decides it: `AWS_CA_BUNDLE`, else the profile's `ca_bundle` (read once by
//! `settings`); else the system's store, read once here (`SSL_CERT_FILE` and `SSL_CERT_DIR`
//! are honoured). Where the system has none (a scratch or distroless image, an empty chroot),
//! the Mozilla roots compiled into credwrap (`webpki-root-certs`), said at debug level: STS's
//! certificates chain to those, so credwrap works there with nothing else installed. GitHub's
//! OIDC token service is trusted the same way.

use aws_smithy_http_client::tls::TrustStore;
use base64::Engine;

use crate::settings::CaBundle;

/// The certificate authorities chosen, as DER, read once: for STS's HTTP client and for the OIDC
/// token service's.
pub struct Roots {
    certs: Vec<Vec<u8>>,
}

impl Roots {
    pub fn load(bundle: Option<&CaBundle>) -> Roots {
        if let Some(bundle) = bundle {
            use rustls_pki_types::pem::PemObject;
            let certs: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_slice_iter(&bundle.pem)
                .filter_map(Result::ok)
                .map(|c| c.as_ref().to_vec())
                .collect();
            tracing::debug!(
                bundle = %bundle.path.display(),
                count = certs.len(),
                "trusting the configured CA bundle"
            );
            return Roots { certs };
        }
        let system = rustls_native_certs::load_native_certs();
        for e in &system.errors {
            tracing::debug!("reading the system's CA certificates: {e}");
        }
        let (certs, from): (Vec<Vec<u8>>, &str) = if system.certs.is_empty() {
            let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect();
            (
                bundled,
                "the Mozilla roots bundled with credwrap (no system CA certificates found)",
            )
        } else {
            let system = system.certs.iter().map(|c| c.as_ref().to_vec()).collect();
            (system, "the system's CA certificates")
        };
        tracing::debug!(count = certs.len(), "trusting {from}");
        Roots { certs }
    }

    /// For STS's client (aws-smithy-http-client takes PEM).
    pub fn trust_store(&self) -> TrustStore {
        let ders: Vec<&[u8]> = self.certs.iter().map(Vec::as_slice).collect();
        TrustStore::empty().with_pem_certificate(pem(&ders))
    }

    /// For rustls directly (the token service's client); unparsable certificates are skipped,
    /// as rustls-native-certs' own users do.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut store = rustls::RootCertStore::empty();
        let ders = self
            .certs
            .iter()
            .map(|c| rustls_pki_types::CertificateDer::from(c.as_slice()));
        store.add_parsable_certificates(ders);
        store
    }
}

/// DER certificates as one PEM document, which is what the HTTP client takes.
fn pem(certs: &[&[u8]]) -> Vec<u8> {
    let mut out = String::new();
    for der in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    #[test]
    fn bundled_roots_survive_the_trip_through_pem() {
        let ders: Vec<&[u8]> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| c.as_ref())
            .collect();
        assert!(ders.len() > 100, "{} bundled roots", ders.len());
        let pem = super::pem(&ders);
        let back: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back.len(), ders.len());
        assert!(back.iter().zip(&ders).all(|(a, b)| a.as_ref() == *b));
    }
}
