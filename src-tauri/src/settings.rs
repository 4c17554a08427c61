//! Settings kept in the app's config folder (`settings.json`), and node tokens: in the
//! OS keyring where one answers (Secret Service on Linux, Keychain, Credential Manager),
//! else in `tokens.json` next to the settings, readable only by the user (mode 0600).
//! A token file left from a session without a keyring moves into the keyring once one
//! is there.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use prism_engine::job::OutputFormat;
use prism_engine::ops::OP_IDS;
use prism_engine::preset::Preset;
use prism_engine::Op;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// Where batches run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineMode {
    /// This machine's cores.
    #[default]
    Local,
    /// The configured remote nodes.
    Remote,
}

/// A remote node the user added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    /// `host:port`.
    pub address: String,
    /// The SHA-256 certificate fingerprint the user trusted (pinned), once trusted.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// How connecting to a node retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RetryConfig {
    /// Tries before giving up (the original app used a fixed number too).
    pub attempts: u32,
    /// Pause between tries.
    pub delay_ms: u64,
    /// Time one try (QUIC handshake, token and health) may take.
    pub timeout_ms: u64,
}

/// Bounds of [`RetryConfig::timeout_ms`].
pub const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 5,
            delay_ms: 1000,
            // A handshake and hello take milliseconds on a LAN and well under a second
            // across the world; a node that has not answered in 2 s is not coming.
            timeout_ms: 2000,
        }
    }
}

/// How fleets (node entries named by DNS) are looked up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FleetConfig {
    /// Time between lookups of a connected fleet's name: members that appear join, those
    /// that leave DNS drain.
    pub resolve_every_ms: u64,
    /// The DNS server (`IP` or `IP:PORT`) to ask for fleet names instead of the system's.
    pub dns_server: Option<String>,
}

/// Bounds of [`FleetConfig::resolve_every_ms`].
pub const RESOLVE_EVERY_MS: std::ops::RangeInclusive<u64> = 200..=600_000;

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            // A Deployment's new pods take seconds to start; a few more to be found is fine.
            resolve_every_ms: 5000,
            dns_server: None,
        }
    }
}

impl FleetConfig {
    /// The DNS server as an address (port 53 unless given), if one is set.
    pub fn dns_server(&self) -> Result<Option<std::net::SocketAddr>, AppError> {
        let Some(s) = self.dns_server.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if let Ok(a) = s.parse::<std::net::SocketAddr>() {
            return Ok(Some(a));
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| Some(std::net::SocketAddr::new(ip, 53)))
            .map_err(|_| {
                AppError::BadRequest(format!(
                    "{s:?} is not a DNS server address (an IP, or IP:PORT)"
                ))
            })
    }
}

/// Everything the app remembers between runs, except tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// The sidebar's chain: the ops, in order, that images without their own go through.
    pub global_ops: Vec<Op>,
    /// `same`, `png`, `jpeg`, `webp`, `tiff` or `bmp`.
    pub output_format: String,
    /// Threads for local processing; 0 = one per core.
    pub threads: usize,
    /// Local or remote.
    pub engine: EngineMode,
    /// Remote nodes, in the order added.
    pub nodes: Vec<NodeConfig>,
    /// In remote mode, also use this computer's cores.
    pub use_local_too: bool,
    /// Connection retries.
    pub retry: RetryConfig,
    /// How fleet names are looked up.
    pub fleet: FleetConfig,
    /// The folder last added from or saved into: file dialogs start there.
    pub last_folder: Option<PathBuf>,
    /// Saved chains with their output format, by name, in the order saved.
    pub presets: Vec<Preset>,
}

/// The op a fresh install starts with: the original app's first operation when this build
/// has it.
pub fn default_op() -> Op {
    let id = if OP_IDS.contains(&"edge-detection") {
        "edge-detection"
    } else {
        OP_IDS[0]
    };
    Op::default_for(id).expect("every catalogue op has valid defaults")
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            global_ops: vec![default_op()],
            output_format: "same".into(),
            threads: 0,
            engine: EngineMode::Local,
            nodes: Vec::new(),
            use_local_too: false,
            retry: RetryConfig::default(),
            fleet: FleetConfig::default(),
            last_folder: None,
            presets: Vec::new(),
        }
    }
}

/// Checks a chain's length as a preset's is checked ([`prism_engine::preset::check_steps`]),
/// so every chain can be saved as one.
pub fn check_chain(ops: &[Op]) -> Result<(), AppError> {
    prism_engine::preset::check_steps(ops.len()).map_err(AppError::BadRequest)
}

/// The most local threads accepted (more than any desktop has).
pub const MAX_THREADS: usize = 1024;

impl Settings {
    /// The output format policy.
    pub fn output_format(&self) -> OutputFormat {
        OutputFormat::from_name(&self.output_format).unwrap_or(OutputFormat::Same)
    }

    /// Checks values that came from the UI or from disk.
    pub fn validate(&self) -> Result<(), AppError> {
        check_chain(&self.global_ops)?;
        for (i, p) in self.presets.iter().enumerate() {
            if self.presets[..i].iter().any(|q| q.name() == p.name()) {
                return Err(AppError::BadRequest(format!(
                    "two presets are named {:?}",
                    p.name()
                )));
            }
        }
        if OutputFormat::from_name(&self.output_format).is_none() {
            return Err(AppError::BadRequest(format!(
                "unknown output format {:?} (same, png, jpeg, webp, tiff, bmp)",
                self.output_format
            )));
        }
        if self.threads > MAX_THREADS {
            return Err(AppError::BadRequest(format!(
                "threads must be 0 (all cores) to {MAX_THREADS}"
            )));
        }
        if self.retry.attempts == 0 || self.retry.attempts > 100 {
            return Err(AppError::BadRequest(
                "connection attempts must be 1 to 100".into(),
            ));
        }
        if self.retry.delay_ms > 60_000 {
            return Err(AppError::BadRequest(
                "the delay between attempts must be at most 60 s".into(),
            ));
        }
        if !TIMEOUT_MS.contains(&self.retry.timeout_ms) {
            return Err(AppError::BadRequest(
                "the time one attempt may take must be 0.1 s to 60 s".into(),
            ));
        }
        if !RESOLVE_EVERY_MS.contains(&self.fleet.resolve_every_ms) {
            return Err(AppError::BadRequest(
                "the time between lookups of a fleet's name must be 0.2 s to 600 s".into(),
            ));
        }
        self.fleet.dns_server()?;
        Ok(())
    }
}

/// Where node tokens may be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenBackend {
    /// The OS keyring when one answers, else the private file.
    SystemKeyring,
    /// The private file only (tests; machines without a keyring).
    File,
}

/// Where node tokens are kept now, as the UI says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenPlace {
    /// The OS keyring.
    Keyring,
    /// `tokens.json`, readable by the user only.
    File,
}

/// The keyring entry holding every node token (one JSON map, so nodes can be listed).
const KEYRING_SERVICE: &str = "dev.prism.app";
const KEYRING_USER: &str = "node-tokens";

/// The config folder, its files, and the keyring entry for tokens.
#[derive(Clone, Debug)]
pub struct SettingsStore {
    dir: PathBuf,
    backend: TokenBackend,
    /// Resolved on first use (it may talk to D-Bus): the entry, or None for the file.
    keyring: Arc<OnceLock<Option<keyring::Entry>>>,
}

impl SettingsStore {
    /// A store in `dir` (created on first save) with tokens in the file.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_tokens_in(dir, TokenBackend::File)
    }

    /// A store in `dir` with tokens where `backend` says.
    pub fn with_tokens_in(dir: impl Into<PathBuf>, backend: TokenBackend) -> Self {
        Self {
            dir: dir.into(),
            backend,
            keyring: Arc::new(OnceLock::new()),
        }
    }

    /// The keyring entry for tokens, if a keyring answers. Probed once: reading a missing
    /// entry is the cheapest call that proves the service is there and unlocked.
    fn keyring(&self) -> Option<&keyring::Entry> {
        if self.backend == TokenBackend::File {
            return None;
        }
        self.keyring
            .get_or_init(|| {
                let entry = keyring::Entry::new(KEYRING_SERVICE, KEYRING_USER).ok()?;
                match entry.get_password() {
                    Ok(_) | Err(keyring::Error::NoEntry) => Some(entry),
                    Err(_) => None,
                }
            })
            .as_ref()
    }

    /// Where tokens are kept.
    pub fn token_place(&self) -> TokenPlace {
        match self.keyring() {
            Some(_) => TokenPlace::Keyring,
            None => TokenPlace::File,
        }
    }

    /// The config folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn settings_path(&self) -> PathBuf {
        self.dir.join("settings.json")
    }

    fn tokens_path(&self) -> PathBuf {
        self.dir.join("tokens.json")
    }

    /// Loads settings; a missing file gives defaults, a broken or stale one gives
    /// defaults for what cannot be read plus a warning to show.
    pub fn load(&self) -> (Settings, Option<String>) {
        let path = self.settings_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (Settings::default(), None)
            }
            Err(e) => {
                return (
                    Settings::default(),
                    Some(format!(
                        "cannot read {}: {e}; using defaults",
                        path.display()
                    )),
                )
            }
        };
        let warn = |what: &str| Some(format!("{}: {what}; using defaults", path.display()));
        let mut value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return (Settings::default(), warn(&e.to_string())),
        };
        // Settings from before chains kept one op: it becomes a chain of one.
        if let Some(obj) = value.as_object_mut() {
            if let Some(op) = obj.remove("globalOp") {
                obj.entry("globalOps")
                    .or_insert_with(|| serde_json::Value::Array(vec![op]));
            }
        }
        if let Ok(s) = serde_json::from_value::<Settings>(value.clone()) {
            if s.validate().is_ok() {
                return (s, None);
            }
        }
        // An op from another build (renamed param, op not in this build) should not cost
        // the user their nodes or their other presets: retry without what does not parse.
        let mut lost = Vec::new();
        if let Some(obj) = value.as_object_mut() {
            let chain_ok = obj.get("globalOps").is_none_or(|v| {
                serde_json::from_value::<Vec<Op>>(v.clone())
                    .is_ok_and(|ops| check_chain(&ops).is_ok())
            });
            if !chain_ok {
                obj.remove("globalOps");
                lost.push("the saved operations".to_string());
            }
            if let Some(serde_json::Value::Array(presets)) = obj.get_mut("presets") {
                let mut names = std::collections::HashSet::new();
                presets.retain(|p| match Preset::from_value(p.clone()) {
                    Ok(p) if names.insert(p.name().to_string()) => true,
                    _ => {
                        let name = p["name"].as_str().unwrap_or("?");
                        lost.push(format!("preset {name:?}"));
                        false
                    }
                });
            }
        }
        match serde_json::from_value::<Settings>(value) {
            Ok(s) if s.validate().is_ok() => {
                let what = format!("{} not valid here", lost.join(", "));
                (s, warn(&what))
            }
            Ok(_) => (Settings::default(), warn("invalid values")),
            Err(e) => (Settings::default(), warn(&e.to_string())),
        }
    }

    /// Writes settings atomically.
    pub fn save(&self, settings: &Settings) -> Result<(), AppError> {
        let json = serde_json::to_vec_pretty(settings)
            .map_err(|e| AppError::Settings(format!("cannot encode settings: {e}")))?;
        self.write_private(&self.settings_path(), &json, 0o644)
    }

    /// Node tokens by address.
    pub fn load_tokens(&self) -> Result<BTreeMap<String, String>, AppError> {
        let Some(entry) = self.keyring() else {
            return self.load_token_file();
        };
        let mut tokens = match entry.get_password() {
            Ok(json) => serde_json::from_str(&json)
                .map_err(|e| AppError::Settings(format!("the keyring's node tokens: {e}")))?,
            Err(keyring::Error::NoEntry) => BTreeMap::new(),
            Err(e) => return Err(AppError::Settings(format!("cannot read the keyring: {e}"))),
        };
        // Tokens saved while there was no keyring move into it, and the file goes.
        if self.tokens_path().exists() {
            let from_file = self.load_token_file()?;
            for (address, token) in from_file {
                tokens.entry(address).or_insert(token);
            }
            self.save_tokens(&tokens)?;
        }
        Ok(tokens)
    }

    fn load_token_file(&self) -> Result<BTreeMap<String, String>, AppError> {
        let path = self.tokens_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                restrict(&path)?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| AppError::Settings(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(AppError::Settings(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes node tokens: into the keyring (and removes any token file), or into the
    /// file, readable by the user only.
    pub fn save_tokens(&self, tokens: &BTreeMap<String, String>) -> Result<(), AppError> {
        let json = serde_json::to_vec_pretty(tokens)
            .map_err(|e| AppError::Settings(format!("cannot encode tokens: {e}")))?;
        let Some(entry) = self.keyring() else {
            return self.write_private(&self.tokens_path(), &json, 0o600);
        };
        let stored = if tokens.is_empty() {
            match entry.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            entry.set_password(&String::from_utf8_lossy(&json))
        };
        stored.map_err(|e| AppError::Settings(format!("cannot write to the keyring: {e}")))?;
        match std::fs::remove_file(self.tokens_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AppError::Settings(format!(
                "tokens are in the keyring now, but {} could not be removed: {e}",
                self.tokens_path().display()
            ))),
        }
    }

    /// Writes `bytes` to a temporary file created with `mode`, then renames it over `path`.
    fn write_private(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), AppError> {
        let fail =
            |e: std::io::Error| AppError::Settings(format!("cannot write {}: {e}", path.display()));
        create_private_dir(&self.dir).map_err(fail)?;
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let written = opts
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Makes a token file private again if something widened its permissions.
fn restrict(path: &Path) -> Result<(), AppError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| AppError::Settings(format!("{}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| AppError::Settings(format!("cannot protect {}: {e}", path.display())),
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_engine::preset::MAX_STEPS;

    #[test]
    fn round_trips_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path().join("cfg"));
        let (s, warn) = store.load();
        assert_eq!(s, Settings::default());
        assert!(warn.is_none());
        let s = Settings {
            output_format: "png".into(),
            threads: 3,
            engine: EngineMode::Remote,
            nodes: vec![NodeConfig {
                address: "10.0.0.2:7878".into(),
                fingerprint: Some("ab".repeat(32)),
            }],
            global_ops: vec![
                Op::from_pairs("color-manipulation", [("mode", "sepia")]).unwrap(),
                Op::default_for("erosion").unwrap(),
            ],
            presets: vec![Preset::new(
                "p",
                vec![Op::default_for("dilation").unwrap()],
                OutputFormat::from_name("png").unwrap(),
            )
            .unwrap()],
            ..Settings::default()
        };
        store.save(&s).unwrap();
        assert_eq!(store.load(), (s, None));
    }

    #[test]
    fn a_stale_op_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path());
        std::fs::write(
            dir.path().join("settings.json"),
            r#"{"globalOp":{"op":"teleport","params":{}},"threads":2}"#,
        )
        .unwrap();
        let (s, warn) = store.load();
        assert_eq!(s.threads, 2);
        assert_eq!(s.global_ops, vec![default_op()]);
        assert!(warn.unwrap().contains("not valid"));
        std::fs::write(dir.path().join("settings.json"), "{not json").unwrap();
        let (s, warn) = store.load();
        assert_eq!(s, Settings::default());
        assert!(warn.is_some());
    }

    #[test]
    fn one_saved_op_becomes_a_chain_and_a_stale_preset_goes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path());
        std::fs::write(
            dir.path().join("settings.json"),
            r#"{"globalOp":{"op":"erosion","params":{"size":3}},"threads":2}"#,
        )
        .unwrap();
        let (s, warn) = store.load();
        assert_eq!(warn, None);
        assert_eq!(s.threads, 2);
        assert_eq!(
            s.global_ops,
            vec![Op::from_pairs("erosion", [("size", "3")]).unwrap()]
        );
        let good = r#"{"version":1,"name":"good","steps":[{"op":"dilation","params":{}}]}"#;
        let stale = r#"{"version":1,"name":"old","steps":[{"op":"teleport","params":{}}]}"#;
        std::fs::write(
            dir.path().join("settings.json"),
            format!(
                r#"{{"globalOps":[{{"op":"erosion","params":{{}}}}],"presets":[{stale},{good}]}}"#
            ),
        )
        .unwrap();
        let (s, warn) = store.load();
        assert_eq!(s.global_ops, vec![Op::default_for("erosion").unwrap()]);
        let names: Vec<&str> = s.presets.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["good"]);
        assert!(warn.unwrap().contains("preset \"old\" not valid"));
    }

    #[test]
    fn chains_must_hold_one_to_max_steps_ops_and_preset_names_differ() {
        let mut s = Settings {
            global_ops: vec![],
            ..Settings::default()
        };
        assert!(s.validate().is_err());
        s.global_ops = vec![default_op(); MAX_STEPS + 1];
        assert!(s.validate().is_err());
        s.global_ops = vec![default_op(); MAX_STEPS];
        assert!(s.validate().is_ok());
        let p = Preset::new("same", vec![default_op()], OutputFormat::Same).unwrap();
        s.presets = vec![p.clone(), p];
        assert!(s.validate().is_err());
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut s = Settings {
            output_format: "gif".into(),
            ..Settings::default()
        };
        assert!(s.validate().is_err());
        s.output_format = "jpeg".into();
        s.retry.attempts = 0;
        assert!(s.validate().is_err());
        s.retry.attempts = 3;
        assert!(s.validate().is_ok());
        s.retry.timeout_ms = 50;
        assert!(s.validate().is_err());
        s.retry.timeout_ms = 500;
        assert!(s.validate().is_ok());
        s.fleet.resolve_every_ms = 100;
        assert!(s.validate().is_err());
        s.fleet.resolve_every_ms = 1000;
        s.fleet.dns_server = Some("dns.local".into());
        assert!(s.validate().is_err());
        s.fleet.dns_server = Some("10.0.0.1".into());
        assert_eq!(
            s.fleet.dns_server().unwrap(),
            Some("10.0.0.1:53".parse().unwrap())
        );
        s.fleet.dns_server = Some("127.0.0.1:5353".into());
        assert!(s.validate().is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn tokens_are_readable_by_the_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path().join("cfg"));
        assert!(store.load_tokens().unwrap().is_empty());
        let mut t = BTreeMap::new();
        t.insert("127.0.0.1:7878".to_string(), "secret".to_string());
        store.save_tokens(&t).unwrap();
        let path = dir.path().join("cfg/tokens.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(dir.path().join("cfg"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        // Widened by someone else: loading makes it private again.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(store.load_tokens().unwrap(), t);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
