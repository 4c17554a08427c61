//! Without a keyring (nothing listens at the session bus address), node tokens go to
//! `tokens.json`, readable by the user only. Its own process: libdbus reads the bus
//! address once per process.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use prism_app::settings::{SettingsStore, TokenBackend, TokenPlace};

#[test]
fn without_a_keyring_tokens_go_to_a_private_file() {
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        "unix:path=/nonexistent/prism-bus",
    );
    let dir = tempfile::tempdir().unwrap();
    let store = SettingsStore::with_tokens_in(dir.path(), TokenBackend::SystemKeyring);
    assert_eq!(store.token_place(), TokenPlace::File);
    let tokens: BTreeMap<String, String> =
        [("10.0.0.1:7878".to_string(), "file-token-1".to_string())].into();
    store.save_tokens(&tokens).unwrap();
    let path = dir.path().join("tokens.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(store.load_tokens().unwrap(), tokens);
}
