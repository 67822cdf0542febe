//! Unit tests: CA persistence, server identity reuse, CSR signing and real TLS handshakes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::extensions::GeneralName;

use crate::*;

fn localhost() -> (Vec<String>, Vec<IpAddr>) {
    (
        vec!["localhost".to_owned()],
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Ca>();
    check::<CertifiedKeyPem>();
    check::<PkiError>();
}

#[test]
fn ca_round_trip_and_key_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data");
    let ca = Ca::load_or_create(&path).unwrap();
    let again = Ca::load_or_create(&path).unwrap();
    assert_eq!(ca.cert_pem(), again.cert_pem());
    assert_eq!(
        std::fs::read_to_string(path.join("ca.crt")).unwrap(),
        ca.cert_pem()
    );

    let der = certs_from_pem(ca.cert_pem()).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(cert.is_ca());
    assert!(cert.subject().to_string().contains("Manifold CA"));
    let years = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
        / (365 * 24 * 3600);
    assert_eq!(years, 10);

    let loaded = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    let other = Ca::generate().unwrap();
    assert!(matches!(
        Ca::from_pem(ca.cert_pem(), other.key_pem()),
        Err(PkiError::KeyMismatch)
    ));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| {
            std::fs::metadata(path.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("ca.key"), 0o600);
        assert_eq!(mode("ca.crt") & 0o600, 0o600);
        assert_eq!(mode("ca.crt") & 0o022, 0);
    }
}

#[test]
fn server_identity_reused_or_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let (dns, ips) = localhost();

    let first = load_or_create_server_identity(dir.path(), &ca, &dns, &ips).unwrap();
    let again = load_or_create_server_identity(dir.path(), &ca, &dns, &ips).unwrap();
    assert_eq!(first, again, "a valid identity is reused");

    // A subset of the names is still covered.
    let subset = load_or_create_server_identity(dir.path(), &ca, &dns, &[]).unwrap();
    assert_eq!(first, subset);

    // A new name forces a new certificate that covers it.
    let more = vec!["localhost".to_owned(), "manifold.example".to_owned()];
    let bigger = load_or_create_server_identity(dir.path(), &ca, &more, &ips).unwrap();
    assert_ne!(first.cert_pem, bigger.cert_pem);
    let der = certs_from_pem(&bigger.cert_pem).unwrap();
    assert_eq!(der.len(), 1, "leaf only");
    let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) => format!("{b:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(names.contains(&"manifold.example".to_owned()), "{names:?}");
    assert!(names.contains(&"[127, 0, 0, 1]".to_owned()), "{names:?}");

    // A different CA invalidates the stored identity.
    let other_ca = Ca::generate().unwrap();
    let reissued = load_or_create_server_identity(dir.path(), &other_ca, &more, &ips).unwrap();
    assert_ne!(bigger.cert_pem, reissued.cert_pem);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn ip_strings_in_dns_names_become_ip_sans() {
    let ca = Ca::generate().unwrap();
    let id = ca
        .issue_server_cert(&["localhost".into(), "127.0.0.1".into()], &[])
        .unwrap();
    let der = certs_from_pem(&id.cert_pem).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(
        san.value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::IPAddress(b) if *b == [127, 0, 0, 1]))
    );
    assert!(
        !san.value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("127.0.0.1")))
    );
}

#[test]
fn csr_signing_names_only_the_site() {
    let ca = Ca::generate().unwrap();
    // A CSR that asks for other names, a server EKU and a DNS SAN.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["evil.example".to_owned(), "10.0.0.1".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "other-site");
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://manifold/site/other-site".try_into().unwrap(),
    ));
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();

    let signed = ca
        .sign_site_csr(&csr_pem, "pa2-par", Duration::from_secs(3600))
        .unwrap();
    let der = certs_from_pem(&signed.cert_pem).unwrap().remove(0);
    assert_eq!(site_from_cert_der(&der).as_deref(), Some("pa2-par"));

    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cn, vec!["pa2-par".to_owned()]);
    let sans = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(sans.len(), 1, "{sans:?}");
    assert_eq!(sans[0], GeneralName::URI("spiffe://manifold/site/pa2-par"));
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    // The certificate carries the CSR's public key.
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        rcgen::PublicKeyData::der_bytes(&key)
    );

    let not_after = cert_not_after(&signed.cert_pem).unwrap();
    assert_eq!(not_after, signed.not_after);
    let in_an_hour = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!((in_an_hour - not_after).num_seconds().abs() < 10);

    assert!(matches!(
        ca.sign_site_csr(&csr_pem, "Bad/Site", Duration::from_secs(60)),
        Err(PkiError::InvalidSiteName(_))
    ));
    assert!(matches!(
        ca.sign_site_csr("not a csr", "ok", Duration::from_secs(60)),
        Err(PkiError::InvalidCsr(_))
    ));
    // A server certificate names no site.
    let server = ca.issue_server_cert(&["localhost".into()], &[]).unwrap();
    let server_der = certs_from_pem(&server.cert_pem).unwrap().remove(0);
    assert_eq!(site_from_cert_der(&server_der), None);
}

#[test]
fn generated_csr_is_signable() {
    let ca = Ca::generate().unwrap();
    let (key_pem, csr_pem) = generate_csr("ny8-nyc").unwrap();
    let signed = ca
        .sign_site_csr(&csr_pem, "ny8-nyc", Duration::from_secs(86400))
        .unwrap();
    let der = certs_from_pem(&signed.cert_pem).unwrap().remove(0);
    assert_eq!(site_from_cert_der(&der).as_deref(), Some("ny8-nyc"));
    // The key matches the certificate (rustls checks this).
    client_config(
        ca.cert_pem(),
        Some(&CertifiedKeyPem {
            cert_pem: signed.cert_pem,
            key_pem,
        }),
    )
    .unwrap();
    assert!(generate_csr("").is_err());
}

/// Runs one TLS exchange; returns what the server learnt about the client's site, or the
/// client's handshake error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<Option<String>, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server).accept(tcp).await.ok()?;
        let site = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|der| site_from_cert_der(der));
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.ok()?;
        tls.write_all(&buf).await.ok()?;
        tls.shutdown().await.ok()?;
        Some(site)
    });

    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = match TlsConnector::from(client).connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            server_task.abort();
            return Err(e.to_string());
        }
    };
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"ping");
    let site = server_task.await.unwrap().expect("server side failed");
    Ok(site)
}

#[tokio::test]
async fn tls_handshake_with_and_without_client_cert() {
    let ca = Ca::generate().unwrap();
    let (dns, ips) = localhost();
    let identity = ca.issue_server_cert(&dns, &ips).unwrap();
    let server = server_config(&identity, Some(ca.cert_pem()), &[b"h2"]).unwrap();
    assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);

    // Without a client certificate: accepted, no site.
    let anonymous = client_config(ca.cert_pem(), None).unwrap();
    assert_eq!(handshake(server.clone(), anonymous).await, Ok(None));

    // With an agent certificate: the server sees the site.
    let (key_pem, csr_pem) = generate_csr("ams9-ams").unwrap();
    let signed = ca
        .sign_site_csr(&csr_pem, "ams9-ams", Duration::from_secs(3600))
        .unwrap();
    let agent = client_config(
        ca.cert_pem(),
        Some(&CertifiedKeyPem {
            cert_pem: signed.cert_pem,
            key_pem,
        }),
    )
    .unwrap();
    assert_eq!(
        handshake(server.clone(), agent).await,
        Ok(Some("ams9-ams".to_owned()))
    );

    // Server without client-CA: plain server auth still works.
    let plain = server_config(&identity, None, &[]).unwrap();
    let anonymous = client_config(ca.cert_pem(), None).unwrap();
    assert_eq!(handshake(plain, anonymous).await, Ok(None));
}

#[tokio::test]
async fn client_trusting_another_ca_fails() {
    let ca = Ca::generate().unwrap();
    let (dns, ips) = localhost();
    let identity = ca.issue_server_cert(&dns, &ips).unwrap();
    let server = server_config(&identity, Some(ca.cert_pem()), &[]).unwrap();
    let stranger = Ca::generate().unwrap();
    let client = client_config(stranger.cert_pem(), None).unwrap();
    let err = handshake(server, client).await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn client_cert_from_another_ca_is_rejected() {
    let ca = Ca::generate().unwrap();
    let (dns, ips) = localhost();
    let identity = ca.issue_server_cert(&dns, &ips).unwrap();
    let server = server_config(&identity, Some(ca.cert_pem()), &[]).unwrap();
    let rogue = Ca::generate().unwrap();
    let (key_pem, csr_pem) = generate_csr("pa2-par").unwrap();
    let signed = rogue
        .sign_site_csr(&csr_pem, "pa2-par", Duration::from_secs(3600))
        .unwrap();
    let client = client_config(
        ca.cert_pem(),
        Some(&CertifiedKeyPem {
            cert_pem: signed.cert_pem,
            key_pem,
        }),
    )
    .unwrap();
    // TLS 1.3: the client may finish before the server rejects; the exchange must fail.
    assert!(handshake(server, client).await.is_err());
}
