//! A PKI for tests: a CA made with rcgen, workload certificates carrying SPIFFE IDs as
//! URI SANs, a secret store holding them, proxies started with it, and TLS 1.3 clients
//! that present them.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use weft_proxy::tls::verify::ServerVerifier;
use weft_proxy::tls::SecretStore;
use weft_proxy::{Proxy, ProxyOptions, RunningProxy};

/// The trust domain and namespace of test workloads: `{TD}/{service}` is an identity.
pub const TD: &str = "spiffe://weft.local/ns/default/sa";

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A workload certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `service` with `serial`; `expired` makes one whose validity ended.
    pub fn leaf(&self, service: &str, serial: u64, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![SanType::URI(
            format!("{TD}/{service}").try_into().expect("ia5"),
        )];
        // Minimal big-endian bytes, as DER writes them (and `/certs` shows them).
        let bytes: Vec<u8> = serial
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        params.serial_number = Some(SerialNumber::from(bytes));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2024, 1, 1);
            params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            chain: vec![cert.der().clone()],
            key_der: key.serialized_der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Starts a proxy with one worker whose SDS secrets come from `secrets`.
pub fn start(yaml: &str, secrets: &SecretStore) -> RunningProxy {
    let options = ProxyOptions {
        concurrency: 1,
        drain_timeout: Duration::from_secs(1),
        ..ProxyOptions::new("tls-test.yaml")
    }
    .with_secrets(secrets.clone());
    let proxy = match Proxy::from_text(&options, yaml) {
        Ok(p) => p,
        Err(e) => panic!("bootstrap rejected: {e}\n{yaml}"),
    };
    let running = proxy.start().expect("proxy starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running.is_ready() {
        assert!(Instant::now() < deadline, "proxy never became ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    running
}

/// A store holding `leaf` as `default` and `ca`'s root as `ROOTCA`.
pub fn store(ca: &Ca, leaf: &Leaf) -> SecretStore {
    let s = SecretStore::new();
    s.try_set_certificate("default", leaf.chain.clone(), leaf.key())
        .expect("certificate");
    s.try_set_trust("ROOTCA", vec![ca.root()]).expect("roots");
    s
}

/// A TLS 1.3 client of the test: it trusts `roots` (any name) and presents `leaf`.
pub fn client_config(
    roots: Vec<CertificateDer<'static>>,
    leaf: Option<&Leaf>,
    alpn: &[&str],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r).expect("root");
    }
    let verifier = ServerVerifier::new(Some(Arc::new(store)), Arc::from(Vec::new()));
    let builder = rustls::ClientConfig::builder_with_provider(weft_proxy::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match leaf {
        Some(l) => builder
            .with_client_auth_cert(l.chain.clone(), l.key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A TLS client connection of the test.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to `addr` over TLS with `config` (server name `inbound.default.svc`).
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("inbound.default.svc").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}
