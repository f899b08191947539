//! Test certificates and the TLS acceptor for fault upstreams served over TLS.

use std::fmt;
use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A server certificate and key, and the CA certificate a client should trust, all PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The leaf certificate the fault upstream presents.
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
    /// The CA to give the client (handoff's `ca_file`).
    pub ca_pem: String,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is test material, but keep it out of logs anyway.
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A fresh test CA and a leaf it signed, valid for `names` (DNS names or IP addresses,
    /// e.g. `"localhost"`, `"127.0.0.1"`).
    pub fn generate(names: &[&str]) -> TlsIdentity {
        Self::signed_by_test_ca(leaf_params(names))
    }

    /// A self-signed leaf for `names`, with `ca_pem` an unrelated CA: a client trusting
    /// `ca_pem` rejects the certificate (unknown issuer), for `tls_certificate_invalid`.
    pub fn self_signed(names: &[&str]) -> TlsIdentity {
        let (other_ca, _) = new_ca("handoff unrelated CA");
        let key = KeyPair::generate().expect("rcgen: generate leaf key");
        let cert = leaf_params(names)
            .self_signed(&key)
            .expect("rcgen: self-sign leaf");
        TlsIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: other_ca.pem(),
        }
    }

    /// A leaf for `names` signed by a fresh test CA (`ca_pem`), valid only during 2020:
    /// expired, for `tls_certificate_invalid` with dates to name.
    pub fn expired(names: &[&str]) -> TlsIdentity {
        let mut params = leaf_params(names);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        Self::signed_by_test_ca(params)
    }

    /// A leaf from `params`, signed by a fresh test CA.
    fn signed_by_test_ca(params: CertificateParams) -> TlsIdentity {
        let (ca, ca_key) = new_ca("handoff test CA");
        let key = KeyPair::generate().expect("rcgen: generate leaf key");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("rcgen: sign leaf");
        TlsIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
        }
    }

    /// A rustls acceptor presenting this identity, offering only `http/1.1` by ALPN.
    pub(crate) fn acceptor(&self) -> io::Result<TlsAcceptor> {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(io::Error::other)?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn new_ca(name: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("rcgen: CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("rcgen: generate CA key");
    let cert = params.self_signed(&key).expect("rcgen: self-sign CA");
    (cert, key)
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params =
        CertificateParams::new(sans).expect("rcgen: leaf names must be DNS names or IPs");
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("handoff fault upstream"),
    );
    params
}
