//! A fleet's node side: one identity shared by every node (`prism node identity new`,
//! `--identity-dir`), and the HTTP endpoint for probes and Prometheus
//! (`--metrics-listen`): what `/metrics` counts, and `/readyz` turning 503 while a node
//! drains after SIGTERM.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use prism_engine::codec::Format;
use prism_engine::remote::tls::{CERT_FILE, KEY_FILE, TOKEN_FILE};

mod common;

use common::cli::{events, of_kind, sample, summary, write_image};
use common::node::{http_get, metric, scrape, wait_for_metric, Node, PRISM};

/// `prism ARGS` run to the end.
fn prism(args: &[&str]) -> Output {
    Command::new(PRISM).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `prism node identity new --out DIR`; returns the fingerprint it printed.
fn identity_new(dir: &Path) -> String {
    let out = prism(&["node", "identity", "new", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in {}", stdout(&out)))
        .to_string()
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p.clone(), std::fs::read(&p).unwrap(), m)
        })
        .collect();
    v.sort();
    v
}

/// Runs `prism node ARGS` that must fail at start: its exit code and stderr.
fn node_fails(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(PRISM)
        .args(["node", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("prism node {args:?} started instead of failing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

/// Writes `n` small PNGs (different content) into `dir/in`, plus the extra ones given.
fn inputs(dir: &Path, n: u32, extra: &[(&str, u32)]) -> PathBuf {
    let root = dir.join("in");
    for i in 0..n {
        write_image(
            &root.join(format!("img{i}.png")),
            &sample(32, 24, i),
            Format::Png,
        );
    }
    for (name, side) in extra {
        write_image(&root.join(name), &sample(*side, *side, 99), Format::Png);
    }
    root
}

/// The size of every file directly in `dir`, added up.
fn total_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn every_node_with_the_identity_dir_is_one_fleet_for_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("identity");
    let fingerprint = identity_new(&id);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&id), 0o700);
        for f in [CERT_FILE, KEY_FILE, TOKEN_FILE] {
            assert_eq!(mode(&id.join(f)), 0o600, "{f}");
        }
    }
    let before = snapshot(&id);
    assert_eq!(before.len(), 3);
    // A second `identity new` into the same dir refuses and changes nothing.
    let again = prism(&["node", "identity", "new", "--out", id.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(snapshot(&id), before);

    let id_arg = id.to_str().unwrap();
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::start(&["--identity-dir", id_arg]))
        .collect();
    for n in &nodes {
        assert_eq!(
            n.fingerprint, fingerprint,
            "every replica presents the fleet's"
        );
        assert_eq!(n.token_file, id.join(TOKEN_FILE));
    }
    // One pinned fingerprint and one token file serve both nodes.
    let root = inputs(dir.path(), 8, &[]);
    let out = dir.path().join("out");
    let mut args = vec![
        "process".to_string(),
        "--json".into(),
        "--op".into(),
        "color-manipulation".into(),
        "--out".into(),
        out.display().to_string(),
        "--token-file".into(),
        id.join(TOKEN_FILE).display().to_string(),
    ];
    for n in &nodes {
        args.extend([
            "--remote".into(),
            n.name(),
            "--fingerprint".into(),
            fingerprint.clone(),
        ]);
    }
    args.push(root.display().to_string());
    let run = Command::new(PRISM).args(&args).output().unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let ev = events(&run.stdout);
    assert_eq!(summary(&ev)["done"], 8);
    for n in &nodes {
        assert!(
            of_kind(&ev, "done")
                .iter()
                .any(|e| e["worker"] == n.name().as_str()),
            "{} did no work: {ev:?}",
            n.name()
        );
    }
    // Serving never writes into the identity dir.
    drop(nodes);
    assert_eq!(snapshot(&id), before);
}

#[test]
fn a_bad_identity_dir_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let (code, err) = node_fails(&["--identity-dir", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(CERT_FILE) && err.contains("prism node identity new"),
        "{err}"
    );

    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    identity_new(&a);
    identity_new(&b);
    // Both dirs at once is bad usage.
    let (code, err) = node_fails(&[
        "--identity-dir",
        a.to_str().unwrap(),
        "--data-dir",
        b.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    // A certificate with another identity's key cannot serve.
    std::fs::copy(b.join(KEY_FILE), a.join(KEY_FILE)).unwrap();
    let (code, err) = node_fails(&["--identity-dir", a.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("TLS setup failed"), "{err}");
    // A key anyone may read is refused, and left as it is.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = b.join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, err) = node_fails(&["--identity-dir", b.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(err.contains("readable by every user"), "{err}");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "an identity dir is never changed");
    }
}

#[test]
fn metrics_count_images_by_op_and_kind_with_bytes_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 256u64 << 20;
    let node = Node::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--memory-budget",
        &budget.to_string(),
    ]);
    let before = scrape(&node);
    assert_eq!(metric(&before, "prism_node_ready"), Some(1.0), "{before}");
    assert_eq!(metric(&before, "prism_node_images_in_flight"), Some(0.0));
    assert_eq!(
        metric(&before, "prism_node_memory_budget_bytes"),
        Some(budget as f64)
    );
    // A client with the wrong token is refused, and counted as such.
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "0".repeat(64)).unwrap();
    let refused = prism(&[
        "process",
        "--op",
        "color-manipulation",
        "--out",
        dir.path().join("never").to_str().unwrap(),
        "--remote",
        &node.name(),
        "--fingerprint",
        &node.fingerprint,
        "--token-file",
        wrong.to_str().unwrap(),
        inputs(&dir.path().join("w"), 1, &[]).to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    wait_for_metric(
        &node,
        r#"prism_node_connections_refused_total{reason="failed"}"#,
        |v| v == 1.0,
    );
    // A 13x13 image makes the node's job panic (fault injection): it fails as bad input.
    let root = inputs(dir.path(), 4, &[("poison.png", 13)]);
    let out = dir.path().join("out");
    let run = prism(&[
        "process",
        "--json",
        "--op",
        "color-manipulation",
        "--op",
        "erosion",
        "--out",
        out.to_str().unwrap(),
        "--remote",
        &node.name(),
        "--fingerprint",
        &node.fingerprint,
        "--token-file",
        node.token_file.to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    let ev = events(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let s = summary(&ev);
    assert_eq!(
        (s["done"].as_u64(), s["failed"].as_u64()),
        (Some(4), Some(1))
    );
    let text = wait_for_metric(&node, "prism_node_memory_in_use_bytes", |v| v == 0.0);

    for op in ["color-manipulation", "erosion"] {
        let done = format!(r#"prism_node_images_done_total{{op="{op}"}}"#);
        assert_eq!(metric(&text, &done), Some(4.0), "{done}\n{text}");
        let failed = format!(r#"prism_node_images_failed_total{{op="{op}",kind="bad-input"}}"#);
        assert_eq!(metric(&text, &failed), Some(1.0), "{failed}\n{text}");
        // The poison image failed before its ops ran: four timings per op.
        let count = format!(r#"prism_node_op_duration_seconds_count{{op="{op}"}}"#);
        assert_eq!(metric(&text, &count), Some(4.0), "{count}\n{text}");
        let inf = format!(r#"prism_node_op_duration_seconds_bucket{{op="{op}",le="+Inf"}}"#);
        assert_eq!(metric(&text, &inf), Some(4.0), "{inf}\n{text}");
    }
    assert!(text.contains("# TYPE prism_node_op_duration_seconds histogram"));
    assert!(text.contains("# TYPE prism_node_images_done_total counter"));
    // Every input's bytes reached the node as they are; results went back with headers.
    let received = metric(&text, "prism_node_received_bytes_total").unwrap();
    assert_eq!(received, total_size(&root) as f64);
    let sent = metric(&text, "prism_node_sent_bytes_total").unwrap();
    let outputs = total_size(&out) as f64;
    assert!(
        sent > outputs && sent < outputs + 4.0 * 4096.0,
        "{sent} vs {outputs}"
    );
    assert_eq!(metric(&text, "prism_node_images_in_flight"), Some(0.0));
    assert_eq!(metric(&text, "prism_node_images_running"), Some(0.0));
    assert_eq!(
        metric(&text, r#"prism_node_connections{state="handshake"}"#),
        Some(0.0)
    );
    assert!(metric(&text, r#"prism_node_connections{state="authenticated"}"#).is_some());
    for (reason, n) in [("failed", 1.0), ("busy", 0.0), ("no-credit", 0.0)] {
        let series = format!(r#"prism_node_connections_refused_total{{reason="{reason}"}}"#);
        assert_eq!(metric(&text, &series), Some(n), "{series}\n{text}");
    }
}

#[test]
fn readyz_turns_503_while_the_node_drains_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--shutdown-grace-ms",
        "20000",
    ]);
    let http = node.metrics.unwrap();
    assert_eq!(http_get(http, "/readyz").0, 200);
    assert_eq!(http_get(http, "/healthz").0, 200);
    // A 17x17 image holds a node thread for 2 s (fault injection): the drain has to wait.
    let root = dir.path().join("in");
    write_image(&root.join("slow.png"), &sample(17, 17, 1), Format::Png);
    let out = dir.path().join("out");
    let client = Command::new(PRISM)
        .args([
            "process",
            "--json",
            "--op",
            "color-manipulation",
            "--out",
            out.to_str().unwrap(),
            "--remote",
            &node.name(),
            "--fingerprint",
            &node.fingerprint,
            "--token-file",
            node.token_file.to_str().unwrap(),
            root.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_metric(&node, "prism_node_images_running", |v| v == 1.0);
    node.sigterm();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (code, body) = http_get(http, "/readyz");
        if code == 503 {
            assert!(body.ends_with("draining\n"), "{body}");
            break;
        }
        assert_eq!(code, 200);
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Draining, not dead: alive, the image still in flight, and it says so in /metrics.
    assert_eq!(http_get(http, "/healthz").0, 200);
    let text = scrape(&node);
    assert_eq!(metric(&text, "prism_node_ready"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "prism_node_images_in_flight"),
        Some(1.0),
        "{text}"
    );
    // The image finishes on the node, then the node exits.
    let done = client.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    let ev = events(&done.stdout);
    assert_eq!(summary(&ev)["done"], 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "node did not exit after its drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect_timeout(&http, Duration::from_secs(1)).is_err());
}
