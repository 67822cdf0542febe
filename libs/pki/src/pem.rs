//! PEM decoding helpers shared by the CA and the TLS configs.

use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{PkiError, Result};

/// Decodes every `CERTIFICATE` block of a PEM bundle (at least one is required).
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: "certificate",
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Decodes the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM document.
pub fn private_key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

/// The `notAfter` of the first certificate in `pem`.
pub fn cert_not_after(pem: &str) -> Result<DateTime<Utc>> {
    let der = first_cert(pem)?;
    let (_, cert) = parse_cert(&der)?;
    timestamp_to_utc(cert.validity().not_after.timestamp())
}

pub(crate) fn first_cert(pem: &str) -> Result<CertificateDer<'static>> {
    Ok(certs_from_pem(pem)?.swap_remove(0))
}

pub(crate) fn parse_cert(
    der: &[u8],
) -> Result<(&[u8], x509_parser::certificate::X509Certificate<'_>)> {
    x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))
}

pub(crate) fn timestamp_to_utc(secs: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| PkiError::InvalidCertificate(format!("timestamp {secs} out of range")))
}
