//! Node tokens in a real Secret Service (a private bus with gnome-keyring). One test in
//! its own process: libdbus reads the bus address once per process
//! (`token_file_fallback.rs` is the case without a keyring).

mod common;

use std::collections::BTreeMap;

use prism_app::settings::{SettingsStore, TokenBackend, TokenPlace};

fn tokens(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, t)| (a.to_string(), t.to_string()))
        .collect()
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .any(|e| {
            std::fs::read(e.path())
                .map(|b| String::from_utf8_lossy(&b).contains(needle))
                .unwrap_or(false)
        })
}

#[test]
fn tokens_go_to_the_keyring_and_a_token_file_moves_there() {
    // A token file from a session without a keyring.
    let dir = tempfile::tempdir().unwrap();
    SettingsStore::new(dir.path())
        .save_tokens(&tokens(&[("10.0.0.1:7878", "file-token-1")]))
        .unwrap();
    assert!(dir.path().join("tokens.json").exists());

    // A keyring appears (the next session has one): the file's tokens move into it.
    let service = common::SecretService::start();
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &service.address);
    let store = SettingsStore::with_tokens_in(dir.path(), TokenBackend::SystemKeyring);
    assert_eq!(store.token_place(), TokenPlace::Keyring);
    assert_eq!(
        store.load_tokens().unwrap(),
        tokens(&[("10.0.0.1:7878", "file-token-1")])
    );
    assert!(!dir.path().join("tokens.json").exists(), "the file is gone");
    let both = tokens(&[
        ("10.0.0.1:7878", "file-token-1"),
        ("10.0.0.2:7878", "keyring-token-2"),
    ]);
    store.save_tokens(&both).unwrap();
    assert!(!on_disk(dir.path(), "keyring-token-2"));
    // A new store (the next start) reads them back from the keyring.
    let again = SettingsStore::with_tokens_in(dir.path(), TokenBackend::SystemKeyring);
    assert_eq!(again.load_tokens().unwrap(), both);
    // What the keyring holds, read without Prism's code.
    let raw = keyring::Entry::new("dev.prism.app", "node-tokens")
        .unwrap()
        .get_password()
        .unwrap();
    assert!(raw.contains("keyring-token-2"));
    // No tokens left: the entry goes too.
    again.save_tokens(&BTreeMap::new()).unwrap();
    assert!(matches!(
        keyring::Entry::new("dev.prism.app", "node-tokens")
            .unwrap()
            .get_password(),
        Err(keyring::Error::NoEntry)
    ));
    assert!(again.load_tokens().unwrap().is_empty());
}
