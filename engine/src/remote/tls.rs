//! The node's identity and the TLS both ends speak: a self-signed certificate (rcgen) and
//! a random token kept in the node's data dir, readable by the owner only; clients pin
//! the certificate's SHA-256 fingerprint instead of trusting any authority.
//!
//! A fleet shares one identity: [`create_identity`] writes the three files once (`prism
//! node identity new`), and every replica reads them with [`load_identity_dir`], which
//! never writes, so the directory may be a read-only mount (a Kubernetes Secret, systemd
//! credentials). Every replica then presents the same fingerprint and accepts the same
//! token, and a client pins one fingerprint for all of them.
//!
//! Pinning replaces chain validation, not signature checks: the verifier compares the
//! fingerprint, then checks the handshake signature with the certificate's key through the
//! crypto provider, so only the holder of the node's private key passes. TLS 1.3 only,
//! ALPN `prism/1`, no 0-RTT and no session resumption (every connection shows the
//! certificate again).

use std::fmt;
use std::fs;
use std::io::Write;
// Owner-only modes are set explicitly on Unix; elsewhere (Windows) the data dir sits in
// the user's profile, whose ACL already keeps others out.
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::proto::ALPN;

/// The certificate file in a node's data dir.
pub const CERT_FILE: &str = "node-cert.pem";
/// The private key file in a node's data dir.
pub const KEY_FILE: &str = "node-key.pem";
/// The token file in a node's data dir.
pub const TOKEN_FILE: &str = "token";
/// The name a client asks for in the handshake (the pin, not the name, is what counts).
pub const SERVER_NAME: &str = "prism-node";

/// Why keys, certificates or TLS settings could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file in the data dir could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A stored certificate or key is unreadable.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An identity file is missing from a fixed identity dir.
    #[error("{path}: not found in the identity dir {dir}")]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// The identity dir.
        dir: PathBuf,
    },
    /// A new identity would replace files already there.
    #[error("{0}: already exists; an identity is never overwritten")]
    Exists(PathBuf),
    /// A secret file any user can read.
    #[error(
        "{path}: readable by every user (mode {mode:04o}); run `chmod o-r` on it, or in \
         Kubernetes give the Secret volume defaultMode 0440 or stricter"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A fingerprint given by the user does not parse.
    #[error("fingerprint {0:?}: expected 64 hex digits (SHA-256), colons allowed")]
    BadFingerprint(String),
    /// rustls or rcgen refused the settings.
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A certificate's SHA-256 fingerprint (of its DER encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(cert_der).into())
    }

    /// Compares in constant time.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;

    /// Accepts 64 hex digits in either case, with or without colons, with an optional
    /// `sha256:` prefix (as `openssl x509 -fingerprint -sha256` prints it, or as the node does).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TlsError::BadFingerprint(s.to_string());
        let t = s.trim();
        let t = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("SHA256:"))
            .or_else(|| t.strip_prefix("sha256 Fingerprint="))
            .unwrap_or(t);
        let hex: Vec<u8> = t.bytes().filter(|&b| b != b':').collect();
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Fingerprint(out))
    }
}

/// A node's certificate and private key, and the fingerprint clients pin.
pub struct NodeIdentity {
    /// The self-signed certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Its private key (PKCS#8 DER).
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of `cert`.
    pub fingerprint: Fingerprint,
}

/// Creates `dir` (owner-only) if missing.
pub fn ensure_data_dir(dir: &Path) -> Result<(), TlsError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        #[cfg(unix)]
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600 via a temporary file, so a crash never leaves
/// a half-written key and the secret is never readable by others, even for a moment.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let res = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(io_err(path))
}

/// Reads a secret file, first tightening its mode to 0600 if others could read it.
fn read_secret(path: &Path) -> Result<Vec<u8>, TlsError> {
    #[cfg(unix)]
    {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
        }
    }
    fs::read(path).map_err(io_err(path))
}

/// A new self-signed certificate and its key, both PEM.
fn new_certificate() -> Result<(String, String), TlsError> {
    let ck =
        rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string(), "localhost".to_string()])
            .map_err(|e| TlsError::Setup(format!("cannot create a certificate: {e}")))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// A new token: 32 random bytes as hex, with a newline.
fn new_token() -> Result<String, TlsError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| TlsError::Setup(format!("no system randomness: {e}")))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{hex}\n"))
}

/// Parses a PEM certificate and key read from `cert_path` and `key_path`.
fn parse_identity(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<NodeIdentity, TlsError> {
    let bad = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let cert = CertificateDer::from_pem_slice(cert_pem).map_err(|e| bad(cert_path, e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad(key_path, e))?;
    let fingerprint = Fingerprint::of(&cert);
    Ok(NodeIdentity {
        cert,
        key,
        fingerprint,
    })
}

/// Loads the node's certificate and key from `dir`, creating them on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<NodeIdentity, TlsError> {
    ensure_data_dir(dir)?;
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert_path.exists() || !key_path.exists() {
        let (cert, key) = new_certificate()?;
        write_secret(&key_path, key.as_bytes())?;
        write_secret(&cert_path, cert.as_bytes())?;
    }
    parse_identity(
        &read_secret(&cert_path)?,
        &cert_path,
        &read_secret(&key_path)?,
        &key_path,
    )
}

/// Loads the node's token from `dir`, creating 32 random bytes (as hex) on first start.
pub fn load_or_create_token(dir: &Path) -> Result<(String, PathBuf), TlsError> {
    ensure_data_dir(dir)?;
    let path = dir.join(TOKEN_FILE);
    if !path.exists() {
        write_secret(&path, new_token()?.as_bytes())?;
    }
    let token = read_token_file(&path)?;
    Ok((token, path))
}

/// Writes a new identity for a fleet into `dir` (created owner-only if missing): the
/// certificate, its key and a token, each readable by the owner only. Refuses to replace
/// any of them, so a fleet's identity is never lost by running this twice.
pub fn create_identity(dir: &Path) -> Result<Fingerprint, TlsError> {
    ensure_data_dir(dir)?;
    let paths = [
        dir.join(CERT_FILE),
        dir.join(KEY_FILE),
        dir.join(TOKEN_FILE),
    ];
    if let Some(p) = paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        return Err(TlsError::Exists(p.clone()));
    }
    let (cert, key) = new_certificate()?;
    let token = new_token()?;
    let files = [&cert, &key, &token];
    for (i, (path, text)) in paths.iter().zip(files).enumerate() {
        if let Err(e) = write_secret(path, text.as_bytes()) {
            // All three or none: a half-made identity would block the next attempt.
            for p in &paths[..i] {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
    }
    Ok(parse_identity(cert.as_bytes(), &paths[0], key.as_bytes(), &paths[1])?.fingerprint)
}

/// Reads a file of a fixed identity dir as it is: never created, never re-moded (the dir
/// may be read-only); a secret that every user may read is refused, as ssh does.
fn read_fixed(dir: &Path, name: &str, secret: bool) -> Result<(Vec<u8>, PathBuf), TlsError> {
    let path = dir.join(name);
    // Follows symlinks: a Kubernetes Secret volume links each key into a hidden dir.
    let meta = fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing {
            path: path.clone(),
            dir: dir.to_path_buf(),
        },
        _ => TlsError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    #[cfg(unix)]
    if secret && meta.permissions().mode() & 0o004 != 0 {
        return Err(TlsError::Exposed {
            mode: meta.permissions().mode() & 0o7777,
            path,
        });
    }
    #[cfg(not(unix))]
    let _ = (secret, &meta);
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    Ok((bytes, path))
}

/// Loads a fleet's identity made by [`create_identity`] from `dir`, without writing
/// anything: the certificate, the key, the token and the token file's path.
pub fn load_identity_dir(dir: &Path) -> Result<(NodeIdentity, String, PathBuf), TlsError> {
    let (cert, cert_path) = read_fixed(dir, CERT_FILE, false)?;
    let (key, key_path) = read_fixed(dir, KEY_FILE, true)?;
    let (token, token_path) = read_fixed(dir, TOKEN_FILE, true)?;
    let id = parse_identity(&cert, &cert_path, &key, &key_path)?;
    let token = parse_token(token, &token_path)?;
    Ok((id, token, token_path))
}

/// Reads a token file (surrounding whitespace ignored).
pub fn read_token_file(path: &Path) -> Result<String, TlsError> {
    parse_token(fs::read(path).map_err(io_err(path))?, path)
}

/// A token file's text, trimmed; an empty or non-text one is an error naming `path`.
fn parse_token(raw: Vec<u8>, path: &Path) -> Result<String, TlsError> {
    let text = String::from_utf8(raw).map_err(|_| TlsError::BadFile {
        path: path.to_path_buf(),
        message: "token is not text".into(),
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(TlsError::BadFile {
            path: path.to_path_buf(),
            message: "token file is empty".into(),
        });
    }
    Ok(token)
}

/// Compares tokens in constant time (their length is not secret: tokens are fixed-size).
pub fn token_matches(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node's TLS settings: TLS 1.3 only, ALPN `prism/1`, no 0-RTT, no tickets.
pub fn server_tls(id: &NodeIdentity) -> Result<rustls::ServerConfig, TlsError> {
    let setup = |e: rustls::Error| TlsError::Setup(e.to_string());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup)?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())
        .map_err(setup)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // 0 refuses early data; quinn only accepts 0-RTT when this is u32::MAX.
    cfg.max_early_data_size = 0;
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(cfg)
}

/// [`server_tls`] for QUIC.
pub fn server_crypto(id: &NodeIdentity) -> Result<QuicServerConfig, TlsError> {
    QuicServerConfig::try_from(server_tls(id)?).map_err(|e| TlsError::Setup(e.to_string()))
}

/// Accepts exactly one certificate (by fingerprint) and checks the handshake signature
/// with its key, so a node that merely replays the certificate cannot pass.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
    /// The fingerprint a node presented when it did not match, for the error message.
    mismatch: Mutex<Option<Fingerprint>>,
}

impl PinnedVerifier {
    /// A verifier for `pin`.
    pub fn new(pin: Fingerprint) -> Self {
        Self {
            pin,
            provider: provider(),
            mismatch: Mutex::new(None),
        }
    }

    /// The fingerprint the last refused node presented, if one was refused.
    pub fn mismatch(&self) -> Option<Fingerprint> {
        *self.mismatch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of(end_entity);
        if !seen.matches(&self.pin) {
            *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
            return Err(rustls::Error::General(format!(
                "certificate fingerprint mismatch: the node presented {seen}, {} is pinned",
                self.pin
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered; a TLS 1.2 signature here means a downgrade attempt.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client's TLS settings for a node pinned by `pin`, and the verifier (to tell a
/// fingerprint mismatch from other handshake failures).
pub fn client_tls(
    pin: Fingerprint,
) -> Result<(rustls::ClientConfig, Arc<PinnedVerifier>), TlsError> {
    let verifier = Arc::new(PinnedVerifier::new(pin));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.enable_early_data = false;
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok((cfg, verifier))
}

/// [`client_tls`] for QUIC.
pub fn client_crypto(
    pin: Fingerprint,
) -> Result<(QuicClientConfig, Arc<PinnedVerifier>), TlsError> {
    let (cfg, verifier) = client_tls(pin)?;
    let quic = QuicClientConfig::try_from(cfg).map_err(|e| TlsError::Setup(e.to_string()))?;
    Ok((quic, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_common_spellings() {
        let fp = Fingerprint([0xab; 32]);
        let plain = fp.to_string();
        assert_eq!(plain.len(), 64);
        assert_eq!(plain.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(plain.to_uppercase().parse::<Fingerprint>().unwrap(), fp);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(colons.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            format!("sha256:{plain}").parse::<Fingerprint>().unwrap(),
            fp
        );
        assert!("abcd".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }

    #[cfg(unix)]
    #[test]
    fn identity_and_token_persist_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        let a = load_or_create_identity(&data).unwrap();
        let (t1, tpath) = load_or_create_token(&data).unwrap();
        let b = load_or_create_identity(&data).unwrap();
        let (t2, _) = load_or_create_token(&data).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint, "the certificate is kept");
        assert_eq!(t1, t2, "the token is kept");
        assert_eq!(t1.len(), 64);
        assert_eq!(Fingerprint::of(&a.cert), a.fingerprint);
        for f in [CERT_FILE, KEY_FILE, TOKEN_FILE] {
            let mode = fs::metadata(data.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert_eq!(
            fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(read_token_file(&tpath).unwrap(), t1);
        assert!(token_matches(&t1, &t2));
        assert!(!token_matches(&t1, &t1[1..]));
        assert!(!token_matches(&t1, &"0".repeat(64)));
    }

    #[cfg(unix)]
    #[test]
    fn a_fleet_identity_is_made_once_and_read_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let id_dir = dir.path().join("fleet");
        let fp = create_identity(&id_dir).unwrap();
        for f in [CERT_FILE, KEY_FILE, TOKEN_FILE] {
            let mode = fs::metadata(id_dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let before: Vec<Vec<u8>> = [CERT_FILE, KEY_FILE, TOKEN_FILE]
            .iter()
            .map(|f| fs::read(id_dir.join(f)).unwrap())
            .collect();
        assert!(matches!(create_identity(&id_dir), Err(TlsError::Exists(_))));
        let (a, token, token_path) = load_identity_dir(&id_dir).unwrap();
        let (b, token2, _) = load_identity_dir(&id_dir).unwrap();
        assert_eq!((a.fingerprint, b.fingerprint), (fp, fp));
        assert_eq!(token, token2);
        assert_eq!(token.len(), 64);
        assert_eq!(token_path, id_dir.join(TOKEN_FILE));
        // Group-readable (a Kubernetes Secret with fsGroup) is fine and stays so.
        fs::set_permissions(id_dir.join(KEY_FILE), fs::Permissions::from_mode(0o440)).unwrap();
        load_identity_dir(&id_dir).unwrap();
        let mode = fs::metadata(id_dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o440);
        // Readable by everyone is refused, for the key and the token alike.
        for f in [KEY_FILE, TOKEN_FILE] {
            let p = id_dir.join(f);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_identity_dir(&id_dir).err().unwrap();
            assert!(
                matches!(&e, TlsError::Exposed { path, mode: 0o644 } if *path == p),
                "{e}"
            );
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let after: Vec<Vec<u8>> = [CERT_FILE, KEY_FILE, TOKEN_FILE]
            .iter()
            .map(|f| fs::read(id_dir.join(f)).unwrap())
            .collect();
        assert_eq!(before, after, "nothing was rewritten");
        // A missing file names itself (the CLI adds the command that makes one).
        fs::remove_file(id_dir.join(TOKEN_FILE)).unwrap();
        let e = load_identity_dir(&id_dir).err().unwrap();
        assert!(matches!(&e, TlsError::Missing { .. }), "{e}");
        assert!(e.to_string().contains(TOKEN_FILE), "{e}");
        // And a half-made dir is not topped up by `new`.
        assert!(matches!(create_identity(&id_dir), Err(TlsError::Exists(_))));
        assert!(!id_dir.join(TOKEN_FILE).exists());
    }

    #[test]
    fn a_new_data_dir_gets_a_new_identity() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = load_or_create_identity(d1.path()).unwrap();
        let b = load_or_create_identity(d2.path()).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        let (ta, _) = load_or_create_token(d1.path()).unwrap();
        let (tb, _) = load_or_create_token(d2.path()).unwrap();
        assert_ne!(ta, tb);
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create_token(dir.path()).unwrap();
        let p = dir.path().join(TOKEN_FILE);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create_identity(dir.path()).unwrap();
        let _ = read_secret(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// Runs a TLS handshake in memory between the two configs.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(Arc::new(server))?;
        for _ in 0..16 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                assert_eq!(c.alpn_protocol(), Some(ALPN));
                assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    /// Serves `cert` but signs with `key`: what a node that copied another's certificate
    /// (but not its private key) would do.
    #[derive(Debug)]
    struct Impostor(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Impostor {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn verifier_pins_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_identity(dir.path()).unwrap();
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let ok = PinnedVerifier::new(id.fingerprint);
        assert!(ok
            .verify_server_cert(&id.cert, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert!(ok.mismatch().is_none());
        let wrong = PinnedVerifier::new(Fingerprint([0; 32]));
        let e = wrong
            .verify_server_cert(&id.cert, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert!(e.to_string().contains("fingerprint mismatch"), "{e}");
        assert_eq!(wrong.mismatch(), Some(id.fingerprint));
    }

    #[test]
    fn handshakes_pass_only_with_the_pin_and_the_key() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let real = load_or_create_identity(d1.path()).unwrap();
        let other = load_or_create_identity(d2.path()).unwrap();
        // The pinned node.
        handshake(
            client_tls(real.fingerprint).unwrap().0,
            server_tls(&real).unwrap(),
        )
        .unwrap();
        // Another node: refused by fingerprint.
        let (cfg, verifier) = client_tls(real.fingerprint).unwrap();
        let e = handshake(cfg, server_tls(&other).unwrap()).unwrap_err();
        assert!(e.to_string().contains("fingerprint mismatch"), "{e}");
        assert_eq!(verifier.mismatch(), Some(other.fingerprint));
        // The real certificate without its key: the fingerprint matches, the signature fails.
        let p = provider();
        let signer = p
            .key_provider
            .load_private_key(other.key.clone_key())
            .unwrap();
        let ck = Arc::new(rustls::sign::CertifiedKey::new(
            vec![real.cert.clone()],
            signer,
        ));
        let mut impostor = rustls::ServerConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Impostor(ck)));
        impostor.alpn_protocols = vec![ALPN.to_vec()];
        let (cfg, verifier) = client_tls(real.fingerprint).unwrap();
        let e = handshake(cfg, impostor).unwrap_err();
        assert!(verifier.mismatch().is_none());
        assert!(
            matches!(e, rustls::Error::InvalidCertificate(_)),
            "a bad handshake signature must fail: {e:?}"
        );
    }

    #[test]
    fn configs_build() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_identity(dir.path()).unwrap();
        server_crypto(&id).unwrap();
        client_crypto(id.fingerprint).unwrap();
    }
}
