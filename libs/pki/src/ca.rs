//! The control-plane certificate authority and the server certificates it issues.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use x509_parser::extensions::GeneralName;

use crate::files::{PUBLIC_MODE, SECRET_MODE, create_dir, read_to_string, write_atomic};
use crate::pem::{cert_not_after, first_cert, parse_cert, timestamp_to_utc};
use crate::site::{site_uri, validate_site_name};
use crate::{PkiError, Result};

const CA_COMMON_NAME: &str = "Manifold CA";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A server certificate closer than this to expiry is reissued at start.
const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Backdating of `notBefore`, to tolerate clock skew between machines.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A certificate and its private key, both PEM encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKeyPem {
    /// The leaf certificate (only the leaf: the chain is the CA alone).
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKeyPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate signed for a site's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCert {
    pub cert_pem: String,
    pub not_after: DateTime<Utc>,
}

/// The Manifold certificate authority: a self-signed ECDSA P-256 root.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a fresh CA ("Manifold CA", valid 10 years) in memory.
    pub fn generate() -> Result<Ca> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, CA_COMMON_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Manifold");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and PKCS#8 key, checking that they belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem)?;
        let der = first_cert(cert_pem)?;
        let (_, cert) = parse_cert(&der)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(PkiError::KeyMismatch);
        }
        if !cert.is_ca() {
            return Err(PkiError::InvalidCertificate(
                "the CA certificate is not marked as a CA".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// Reads `dir/ca.crt` and `dir/ca.key` when both exist; otherwise generates a new CA
    /// and writes them (`ca.key` mode 0600, `ca.crt` 0644), creating `dir` if needed.
    pub fn load_or_create(dir: &Path) -> Result<Ca> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        if cert_path.is_file() && key_path.is_file() {
            let cert_pem = read_to_string(&cert_path)?;
            let key_pem = read_to_string(&key_path)?;
            return Ca::from_pem(&cert_pem, &key_pem);
        }
        create_dir(dir)?;
        let ca = Ca::generate()?;
        // Key first: a crash in between leaves no ca.crt, so the pair is regenerated.
        write_atomic(&key_path, ca.key_pem.as_bytes(), SECRET_MODE)?;
        write_atomic(&cert_path, ca.cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(ca)
    }

    /// The CA certificate (the bundle clients trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PKCS#8 PEM), for storing the CA elsewhere. Handle with care.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a server certificate (serverAuth, valid 1 year) for the given names.
    /// Entries of `dns_names` that parse as IP addresses become IP SANs.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ip_addrs: &[IpAddr],
    ) -> Result<CertifiedKeyPem> {
        let (dns, ips) = split_names(dns_names, ip_addrs);
        if dns.is_empty() && ips.is_empty() {
            return Err(PkiError::InvalidCertificate(
                "a server certificate needs at least one name".into(),
            ));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let cn = dns.first().cloned().unwrap_or_else(|| ips[0].to_string());
        params.distinguished_name.push(DnType::CommonName, cn);
        for name in &dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into()?));
        }
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_leaf(&mut params, &key, SERVER_VALIDITY)
            .map(|cert_pem| CertifiedKeyPem {
                cert_pem,
                key_pem: key.serialize_pem(),
            })
    }

    /// Signs an agent's CSR for `site`. Only the CSR's public key (and its proof of
    /// possession) is used: the certificate names exactly the site (CN = site, URI SAN
    /// `spiffe://manifold/site/<site>`) with the clientAuth usage, whatever the CSR asked.
    pub fn sign_site_csr(
        &self,
        csr_pem: &str,
        site: &str,
        validity: Duration,
    ) -> Result<SignedCert> {
        validate_site_name(site)?;
        let public_key = crate::site::csr_public_key(csr_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, site);
        params.subject_alt_names = vec![SanType::URI(site_uri(site).try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert_pem = self.sign_leaf(&mut params, &public_key, validity)?;
        let not_after = cert_not_after(&cert_pem)?;
        Ok(SignedCert {
            cert_pem,
            not_after,
        })
    }

    fn sign_leaf(
        &self,
        params: &mut CertificateParams,
        public_key: &impl PublicKeyData,
        validity: Duration,
    ) -> Result<String> {
        set_validity(params, validity);
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(public_key, &self.issuer)?.pem())
    }

    /// Whether `cert_der` carries a valid signature of this CA.
    fn signed(&self, cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
        let Ok(ca_der) = first_cert(&self.cert_pem) else {
            return false;
        };
        let Ok((_, ca)) = parse_cert(&ca_der) else {
            return false;
        };
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
    }
}

/// Reuses `dir/server.crt` + `dir/server.key` when they parse, are signed by `ca`, cover
/// every requested name and stay valid for 30 more days; otherwise issues a new pair and
/// writes it (`server.key` mode 0600).
pub fn load_or_create_server_identity(
    dir: &Path,
    ca: &Ca,
    dns_names: &[String],
    ip_addrs: &[IpAddr],
) -> Result<CertifiedKeyPem> {
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    if cert_path.is_file() && key_path.is_file() {
        let existing = CertifiedKeyPem {
            cert_pem: read_to_string(&cert_path)?,
            key_pem: read_to_string(&key_path)?,
        };
        if reusable(&existing, ca, dns_names, ip_addrs) {
            return Ok(existing);
        }
    }
    create_dir(dir)?;
    let identity = ca.issue_server_cert(dns_names, ip_addrs)?;
    write_atomic(&key_path, identity.key_pem.as_bytes(), SECRET_MODE)?;
    write_atomic(&cert_path, identity.cert_pem.as_bytes(), PUBLIC_MODE)?;
    Ok(identity)
}

fn reusable(identity: &CertifiedKeyPem, ca: &Ca, dns_names: &[String], ips: &[IpAddr]) -> bool {
    let Ok(key) = KeyPair::from_pem(&identity.key_pem) else {
        return false;
    };
    let Ok(der) = first_cert(&identity.cert_pem) else {
        return false;
    };
    let Ok((_, cert)) = parse_cert(&der) else {
        return false;
    };
    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() || !ca.signed(&cert) {
        return false;
    }
    let renew_at = SystemTime::now() + SERVER_RENEW_BEFORE;
    let Ok(not_after) = timestamp_to_utc(cert.validity().not_after.timestamp()) else {
        return false;
    };
    if SystemTime::from(not_after) < renew_at {
        return false;
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let mut have_dns = Vec::new();
    let mut have_ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => have_dns.push(d.to_ascii_lowercase()),
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    have_ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    have_ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    let (want_dns, want_ips) = split_names(dns_names, ips);
    want_dns
        .iter()
        .all(|d| have_dns.contains(&d.to_ascii_lowercase()))
        && want_ips.iter().all(|ip| have_ips.contains(ip))
}

/// Separates names into DNS names and IP addresses (deduplicated, order kept).
fn split_names(dns_names: &[String], ip_addrs: &[IpAddr]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    for name in dns_names {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.iter().any(|d| d == name) => dns.push(name.to_owned()),
            Err(_) => {}
        }
    }
    for ip in ip_addrs {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    (dns, ips)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = Duration::from_secs(now.as_secs());
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + now + validity;
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    // Positive and without a leading zero byte, so the encoding keeps all 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
