//! HTTPS with rustls: a backend whose certificate is signed by a private CA is trusted only
//! when that CA is given in `api.ca_file`, besides the platform's roots.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use wxcardd::api::{ApiConfig, Client, ClientBuildError, TransportKind};

const BODY: &str = r#"{"status":200,"message":"","data":{"cardCode":"M0001001","balance":128.50,"discount":0.95,"canMemberPrice":true}}"#;

/// A private CA (PEM) and a one-connection-at-a-time HTTPS server on 127.0.0.1 whose
/// certificate it signed; the server answers every request with [`BODY`].
fn private_backend() -> (String, std::net::SocketAddr) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            // A refused handshake ends the read with an error: next connection.
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            if head.ends_with(b"\r\n\r\n") {
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = tls.write_all(answer.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    (ca.pem(), addr)
}

fn config(addr: std::net::SocketAddr, ca_file: Option<std::path::PathBuf>) -> ApiConfig {
    ApiConfig {
        base_url: format!("https://{addr}/"),
        connect_timeout_ms: 1_000,
        deadline_ms: 5_000,
        ca_file,
        ..ApiConfig::default()
    }
}

#[test]
fn a_private_ca_in_ca_file_is_trusted() {
    let (ca_pem, addr) = private_backend();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("backend-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let client = Client::new(&config(addr, Some(ca_file))).unwrap();
    let card = client
        .get_member_card(None, "812345678901234567", None)
        .unwrap();
    assert_eq!(card.balance.to_string(), "128.50");
}

#[test]
fn without_the_ca_the_certificate_is_refused_as_a_tls_failure() {
    let (_, addr) = private_backend();
    let client = Client::new(&config(addr, None)).unwrap();
    let err = client
        .get_member_card(None, "812345678901234567", None)
        .unwrap_err();
    assert_eq!(err.transport_kind(), Some(TransportKind::Tls), "{err}");
}

#[test]
fn a_ca_file_without_a_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("not-a-ca.pem");
    std::fs::write(&ca_file, "this is not PEM\n").unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert!(matches!(
        Client::new(&config(addr, Some(ca_file))),
        Err(ClientBuildError::NoCertificate { .. })
    ));
}

/// The cashier's async lookups on an `https://` backend go through ureq (src/api/reads.rs is
/// plain HTTP only): the private CA from `ca_file` is trusted, and without it the
/// certificate is refused, as for every other call.
#[tokio::test(flavor = "current_thread")]
async fn the_async_reads_trust_the_same_roots() {
    let (ca_pem, addr) = private_backend();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("backend-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let trusted = Client::new(&config(addr, Some(ca_file))).unwrap();
    for _ in 0..2 {
        // `Connection: close` answers: the second lookup opens a new TLS connection.
        let card = trusted
            .get_member_card_async(None, "812345678901234567", None)
            .await
            .unwrap();
        assert_eq!(card.balance.to_string(), "128.50");
    }
    let untrusted = Client::new(&config(addr, None)).unwrap();
    let err = untrusted
        .get_member_card_async(None, "812345678901234567", None)
        .await
        .unwrap_err();
    assert_eq!(err.transport_kind(), Some(TransportKind::Tls), "{err}");
}
