//! TLS for dbcadence's own connections: rustls with the ring provider (no system OpenSSL, so
//! the shipped binaries run on any managed node with a libc), with libpq's meanings of
//! `ssl_mode`:
//! - verify-full: the certificate chains to a trusted CA (`ca_cert`, else the system's CAs)
//!   and names the host;
//! - verify-ca, and require with `ca_cert`: the chain, not the name;
//! - require and prefer without `ca_cert`: encrypted, not verified (as libpq does).
//!
//! The PostgreSQL driver gets a [`client_config`]; mysql_async applies the same policy through
//! its own rustls set-up (`SslOpts`), on the provider installed by [`install_provider`].

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::connection::{ConnectionArgs, SslMode};
use crate::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's rustls provider (once), for the libraries that ask rustls for
/// the default one (mysql_async).
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another provider installed first is as good: nothing to do then.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The rustls configuration for a connection with `args`' ssl_mode and ca_cert.
pub fn client_config(args: &ConnectionArgs) -> Result<rustls::ClientConfig> {
    install_provider();
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS set-up", e.to_string()))?;
    let verify_chain = matches!(args.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (args.ssl_mode == SslMode::Require && args.ca_cert.is_some());
    if !verify_chain {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(args)?), provider)
        .build()
        .map_err(|e| Error::invalid("TLS set-up", e.to_string()))?;
    Ok(if args.ssl_mode == SslMode::VerifyFull {
        builder.with_webpki_verifier(webpki).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            .with_no_client_auth()
    })
}

/// The CAs a server certificate must chain to: `ca_cert`, else the system's.
fn roots(args: &ConnectionArgs) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match &args.ca_cert {
        Some(path) => {
            let not_pem = |e: &dyn std::fmt::Display| {
                Error::invalid(
                    "ca_cert",
                    format!("'{}' is not a PEM certificate: {e}", path.display()),
                )
            };
            if !path.exists() {
                return Err(Error::io(
                    "read the CA certificate",
                    path,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| not_pem(&e))? {
                store
                    .add(cert.map_err(|e| not_pem(&e))?)
                    .map_err(|e| not_pem(&e))?;
            }
            if store.is_empty() {
                return Err(not_pem(&"no certificate in it"));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(Error::invalid(
                    "ca_cert",
                    "the system has no trusted CA certificates to verify the server with; give ca_cert",
                ));
            }
        }
    }
    Ok(store)
}

/// verify-ca: the chain to a trusted CA is checked, the host name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(e)) if names_another_host(&e) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether a certificate error only says the certificate names another host.
fn names_another_host(error: &CertificateError) -> bool {
    matches!(
        error,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

/// require/prefer without a CA: the session is encrypted, the certificate is not checked
/// (the handshake's signatures still are).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
