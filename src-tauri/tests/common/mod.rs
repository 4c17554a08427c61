//! Helpers shared by the app's integration tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `sig` to the process group `-group` names; never to "every process".
///
/// libc, not the `kill` command: procps-ng 4.0.2 reads `-PGID` as its first digit
/// (`kill -TERM -99999` calls kill(-9, ..)), and a group id starting with 1 becomes
/// kill(-1): every process.
pub fn signal_group(group: i32, sig: libc::c_int) {
    assert!(group < -1, "not a process group: {group}");
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    unsafe {
        libc::kill(group, sig);
    }
}

/// Stops a child that leads its own process group, with everything it started.
pub fn stop_group(child: &mut Child) {
    let group = -(child.id() as i32);
    signal_group(group, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_group(group, libc::SIGKILL);
    let _ = child.wait();
}

/// A private D-Bus session bus with an unlocked gnome-keyring on it: a real Secret
/// Service that touches neither the user's bus nor their keyrings.
pub struct SecretService {
    bus: Child,
    keyring: Child,
    /// `DBUS_SESSION_BUS_ADDRESS` for clients.
    pub address: String,
    _home: tempfile::TempDir,
}

impl SecretService {
    pub fn start() -> SecretService {
        let home = tempfile::tempdir().expect("temp dir");
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("dbus-daemon runs (PRISM_WITH_APP=1 scripts/setup.sh installs it)");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().expect("piped"))
            .read_line(&mut address)
            .expect("dbus-daemon prints its address");
        let address = address.trim().to_string();
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_RUNTIME_DIR", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("gnome-keyring-daemon runs (PRISM_WITH_APP=1 scripts/setup.sh installs it)");
        // --unlock reads the new login keyring's password from stdin, up to EOF.
        let mut stdin = keyring.stdin.take().expect("piped");
        stdin.write_all(b"prism-test").expect("password written");
        drop(stdin);
        let service = SecretService {
            bus,
            keyring,
            address,
            _home: home,
        };
        service.wait_for_name("org.freedesktop.secrets");
        service
    }

    /// Waits until `name` is owned on the bus (asking does not start anything).
    fn wait_for_name(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    &format!("string:{name}"),
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
                .output()
                .expect("dbus-send runs");
            if String::from_utf8_lossy(&out.stdout).contains("boolean true") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never appeared on the bus"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        stop_group(&mut self.keyring);
        stop_group(&mut self.bus);
    }
}
