//! A `prism node` child process for the remote tests: its own data dir, a free port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prism_engine::remote::client::NodeSpec;
use prism_engine::remote::tls::read_token_file;

/// The `prism` binary under test.
pub const PRISM: &str = env!("CARGO_BIN_EXE_prism");

/// A `prism node` child process, killed when dropped.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub token_file: PathBuf,
    /// The HTTP address of /healthz, /readyz and /metrics, with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
    _dir: Option<tempfile::TempDir>,
}

impl Node {
    /// A node on 127.0.0.1 with a free port and an identity of its own (or the one
    /// `--identity-dir` in `extra` names).
    pub fn start(extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::start_at("127.0.0.1:0", &dir.path().join("data"), extra);
        node._dir = Some(dir);
        node
    }

    /// A node listening on `listen` with its identity in `data_dir`: nodes given the same
    /// folder share one fingerprint and token, as the members of a fleet do (start them
    /// one after the other: the first one creates the identity). A shared identity
    /// (`--identity-dir` in `extra`) replaces the data dir.
    pub fn start_at(listen: &str, data_dir: &std::path::Path, extra: &[&str]) -> Node {
        // One thread unless the test asks for more.
        let threads: &[&str] = if extra.contains(&"--threads") {
            &[]
        } else {
            &["--threads", "1"]
        };
        let data_dir = if extra.contains(&"--identity-dir") {
            vec![]
        } else {
            vec!["--data-dir".into(), data_dir.to_path_buf()]
        };
        let mut child = Command::new(PRISM)
            .args(["node", "--listen", listen])
            .args(threads)
            .args(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("prism node starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || lines.next().expect("node prints its address").unwrap();
        let first = next();
        let addr = first
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let fingerprint = next().strip_prefix("fingerprint: ").unwrap().to_string();
        let token_file = PathBuf::from(next().strip_prefix("token file: ").unwrap());
        let metrics = extra.contains(&"--metrics-listen").then(|| {
            let line = next();
            let url = line.strip_prefix("metrics: http://").unwrap();
            url.split('/').next().unwrap().parse().unwrap()
        });
        Node {
            child,
            addr,
            fingerprint,
            token_file,
            metrics,
            _dir: None,
        }
    }

    /// Sends the node SIGTERM, as an orchestrator stopping it does (through the `kill`
    /// command: no libc dependency in the tests).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", self.child.id());
    }

    pub fn name(&self) -> String {
        self.addr.to_string()
    }

    /// `--remote`, `--fingerprint` and `--token-file` for this node.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--remote".into(),
            self.name(),
            "--fingerprint".into(),
            self.fingerprint.clone(),
            "--token-file".into(),
            self.token_file.display().to_string(),
        ]
    }

    pub fn spec(&self) -> NodeSpec {
        NodeSpec {
            addr: self.name(),
            fingerprint: self.fingerprint.parse().unwrap(),
            token: read_token_file(&self.token_file).unwrap(),
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The node's peak and current resident memory in KiB (`VmHWM`, `VmRSS`).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A runtime for driving a client from a test thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Connect options that try once (tests want the first failure, not retries).
pub fn once() -> prism_engine::remote::client::ConnectOptions {
    prism_engine::remote::client::ConnectOptions {
        retries: 0,
        ..Default::default()
    }
}

/// One HTTP/1.1 GET: the status and the whole answer (head and body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: node\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    (status, out)
}

/// The value of the one sample `series` (name and labels, as printed) in `/metrics`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// The node's `/metrics` text (it needs `--metrics-listen`).
pub fn scrape(node: &Node) -> String {
    let (code, text) = http_get(node.metrics.unwrap(), "/metrics");
    assert_eq!(code, 200, "{text}");
    text
}

/// Polls the node's `/metrics` until `series` has a value `ok` takes (60 s at most), and
/// gives the text that had it.
pub fn wait_for_metric(node: &Node, series: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(node);
        if metric(&text, series).is_some_and(&ok) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never got there:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
