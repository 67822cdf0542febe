//! Site (agent) identities: CSR generation, and the site name carried in a certificate.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::{PkiError, Result};

/// Prefix of the URI SAN that names a site in an agent certificate.
pub const SITE_URI_PREFIX: &str = "spiffe://manifold/site/";

/// The URI SAN for `site`: `spiffe://manifold/site/<site>`.
pub fn site_uri(site: &str) -> String {
    format!("{SITE_URI_PREFIX}{site}")
}

/// Site names must be usable verbatim in a URI and a certificate: 1-253 characters of
/// lowercase ASCII letters, digits, `-` and `.`, starting and ending alphanumeric.
pub fn validate_site_name(site: &str) -> Result<()> {
    let ok = !site.is_empty()
        && site.len() <= 253
        && site
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && site.starts_with(|c: char| c.is_ascii_alphanumeric())
        && site.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidSiteName(site.to_owned()))
    }
}

/// Generates an agent key pair and a CSR for `site`. Returns `(key_pem, csr_pem)`; the
/// key never leaves the caller.
pub fn generate_csr(site: &str) -> Result<(String, String)> {
    validate_site_name(site)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, site);
    params.subject_alt_names = vec![SanType::URI(site_uri(site).try_into()?)];
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// The site named by a certificate's `spiffe://manifold/site/<site>` URI SAN, if any.
pub fn site_from_cert_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri
            .strip_prefix(SITE_URI_PREFIX)
            .filter(|site| validate_site_name(site).is_ok())
            .map(str::to_owned),
        _ => None,
    })
}

/// Whether a PEM CSR (with a valid self-signature, i.e. proof of possession of its key)
/// asks for the very key `cert_pem` certifies. The site registry uses it to answer a
/// repeated renewal (whose first answer was lost) with the certificate already issued.
pub fn csr_matches_cert(csr_pem: &str, cert_pem: &str) -> Result<bool> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    let (_, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    csr.verify_signature()
        .map_err(|e| PkiError::InvalidCsr(format!("bad signature: {e}")))?;
    let cert = crate::pem::first_cert(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok(cert.tbs_certificate.subject_pki.raw == csr.certification_request_info.subject_pki.raw)
}

/// Parses a PEM CSR, checks its self-signature (proof of key possession) and returns only
/// its public key: nothing else the CSR asks for is trusted.
pub(crate) fn csr_public_key(csr_pem: &str) -> Result<rcgen::SubjectPublicKeyInfo> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    let (_, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    csr.verify_signature()
        .map_err(|e| PkiError::InvalidCsr(format!("bad signature: {e}")))?;
    rcgen::SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| PkiError::InvalidCsr(format!("unsupported public key: {e}")))
}
