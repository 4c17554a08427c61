//! Remote nodes on loopback: real `prism node` processes (each with its own data dir and a
//! free port) and the `prism` CLI or the library client talking to them.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use image::RgbImage;
use prism_engine::codec::{self, EncodeOptions, Format, Metadata};
use prism_engine::remote::client::RemoteClient;
use prism_engine::remote::proto::{self, ErrorCode, ProcessHeader, Request, Response};
use prism_engine::{Frame, Op, Pixels};
use serde_json::Value;

mod common;

use common::node::{once, runtime, wait_for_metric, Node, PRISM};

/// `n` small images with different content, PNG and JPEG mixed.
fn make_images(dir: &Path, n: usize, w: u32, h: u32) -> PathBuf {
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..n as u32 {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * (i + 1) / 3) as u8,
                (y * 7 + i * 13) as u8,
                ((x ^ y) + i) as u8,
            ])
        });
        let frame = Frame::new(Pixels::Rgb(img));
        let (format, ext) = if i % 3 == 2 {
            (Format::Jpeg, "jpg")
        } else {
            (Format::Png, "png")
        };
        let bytes = codec::encode(
            &frame,
            format,
            &Metadata::default(),
            &EncodeOptions::default(),
        )
        .unwrap();
        std::fs::write(inputs.join(format!("img{i:03}.{ext}")), bytes).unwrap();
    }
    inputs
}

fn prism(args: &[String]) -> Output {
    common::cli::prism().args(args).output().unwrap()
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

use common::cli::{events, summary};

/// Every file under `dir`, relative path -> bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Runs the batch on this machine only and returns its outputs.
fn local_reference(
    inputs: &Path,
    out: &Path,
    ops: &[String],
) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut args = strings(&["process", "--threads", "1", "--json", "--out"]);
    args.push(out.display().to_string());
    args.extend(ops.iter().cloned());
    args.push(inputs.display().to_string());
    let o = prism(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tree(out)
}

fn ops(list: &[&str]) -> Vec<String> {
    list.iter()
        .flat_map(|id| ["--op".to_string(), id.to_string()])
        .collect()
}

/// Fast connection-loss detection for the tests: a killed node counts as lost in 1.5 s.
fn fast_fail() -> Vec<String> {
    strings(&[
        "--node-idle-timeout-ms",
        "1500",
        "--connect-timeout-ms",
        "3000",
    ])
}

#[test]
fn two_nodes_and_local_share_a_batch_byte_identically() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_images(dir.path(), 60, 96, 64);
    let pipeline = ops(&["color-manipulation", "histogram-equalization"]);
    let reference = local_reference(&inputs, &dir.path().join("local"), &pipeline);
    assert_eq!(reference.len(), 60);
    let (a, b) = (Node::start(&[]), Node::start(&[]));
    let out = dir.path().join("remote");
    let mut args = strings(&["process", "--json", "--local", "--threads", "1", "--out"]);
    args.push(out.display().to_string());
    args.extend(pipeline);
    args.extend(a.args());
    args.extend(b.args());
    args.extend(fast_fail());
    args.push(inputs.display().to_string());
    let o = prism(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o.stdout);
    let s = summary(&ev);
    assert_eq!(
        (s["done"].as_u64(), s["failed"].as_u64()),
        (Some(60), Some(0))
    );
    let workers: std::collections::BTreeSet<String> = ev
        .iter()
        .filter(|e| e["event"] == "done")
        .map(|e| e["worker"].as_str().unwrap().to_string())
        .collect();
    for w in [a.name(), b.name(), "local".to_string()] {
        assert!(workers.contains(&w), "{w} did no work: {workers:?}");
    }
    assert!(
        tree(&out) == reference,
        "remote outputs differ from local ones"
    );
}

#[test]
fn a_node_killed_mid_batch_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_images(dir.path(), 60, 320, 240);
    // Forty inverts (an identity, but real work) so each image takes a while on a node
    // and the one killed surely holds an image when it dies.
    let mut list = vec!["color-manipulation"; 40];
    list.push("histogram-equalization");
    let pipeline = ops(&list);
    let reference = local_reference(&inputs, &dir.path().join("local"), &pipeline);
    let (mut a, b) = (Node::start(&[]), Node::start(&[]));
    let out = dir.path().join("remote");
    let mut args = strings(&["process", "--json", "--local", "--threads", "1", "--out"]);
    args.push(out.display().to_string());
    args.extend(pipeline);
    args.extend(a.args());
    args.extend(b.args());
    args.extend(fast_fail());
    args.push(inputs.display().to_string());
    let mut child = Command::new(PRISM)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ev = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "done" && v["worker"] == a.name().as_str() {
            a.kill();
        }
        ev.push(v);
    }
    assert!(child.wait().unwrap().success());
    let s = summary(&ev);
    assert_eq!(
        (s["done"].as_u64(), s["failed"].as_u64()),
        (Some(60), Some(0))
    );
    let moved = s["moved_inputs"].as_array().unwrap();
    assert!(
        !moved.is_empty(),
        "the killed node's image must be listed as moved"
    );
    assert_eq!(s["moved"].as_u64(), Some(moved.len() as u64));
    let by_a = ev
        .iter()
        .filter(|e| e["event"] == "done" && e["worker"] == a.name().as_str())
        .count();
    assert!(by_a < 60);
    // Every moved input finished on a surviving worker.
    for m in moved {
        let done = ev
            .iter()
            .find(|e| e["event"] == "done" && e["input"] == *m)
            .unwrap();
        assert_ne!(done["worker"], a.name().as_str());
    }
    assert!(tree(&out) == reference, "outputs differ from a local run");
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

#[test]
fn node_down_at_start_retries_then_fails_or_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_images(dir.path(), 4, 32, 32);
    let live = Node::start(&[]);
    let dead = format!("127.0.0.1:{}", dead_port());
    let base = |out: &str, policy: &str| {
        let mut a = strings(&["process", "--json", "--op", "color-manipulation", "--out"]);
        a.push(dir.path().join(out).display().to_string());
        a.extend(strings(&[
            "--remote",
            &dead,
            "--fingerprint",
            &live.fingerprint,
            "--token-file",
            &live.token_file.display().to_string(),
            "--connect-retries",
            "2",
            "--connect-delay-ms",
            "100",
            "--connect-timeout-ms",
            "300",
            "--on-node-down",
            policy,
        ]));
        a
    };
    // Default policy: retries, then a clear error and nothing processed.
    let t0 = Instant::now();
    let mut args = base("fail", "fail");
    args.push(inputs.display().to_string());
    let o = prism(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("after 3 attempt(s)"), "{err}");
    assert!(err.contains(&dead), "{err}");
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "the retries waited"
    );
    assert!(tree(&dir.path().join("fail")).is_empty());
    // Fallback to this machine.
    let mut args = base("fallback", "local");
    args.push(inputs.display().to_string());
    let o = prism(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o.stdout);
    assert_eq!(summary(&ev)["done"].as_u64(), Some(4));
    assert!(ev
        .iter()
        .filter(|e| e["event"] == "done")
        .all(|e| e["worker"] == "local"));
    // Skip: go on with the node that answered.
    let mut args = base("skip", "skip");
    args.extend(live.args());
    // Same fingerprint list length as --remote: the dead one's plus the live one's.
    args.push(inputs.display().to_string());
    let o = prism(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o.stdout);
    assert_eq!(summary(&ev)["done"].as_u64(), Some(4));
    assert!(ev
        .iter()
        .filter(|e| e["event"] == "done")
        .all(|e| e["worker"] == live.name().as_str()));
}

#[test]
fn wrong_token_and_wrong_fingerprint_process_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_images(dir.path(), 3, 32, 32);
    let node = Node::start(&[]);
    let bad_token = dir.path().join("bad-token");
    std::fs::write(&bad_token, "0".repeat(64)).unwrap();
    let mut args = strings(&["process", "--op", "color-manipulation", "--out"]);
    args.push(dir.path().join("t").display().to_string());
    args.extend(strings(&[
        "--remote",
        &node.name(),
        "--fingerprint",
        &node.fingerprint,
        "--token-file",
        &bad_token.display().to_string(),
        inputs.to_str().unwrap(),
    ]));
    let o = prism(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("refused the token"), "{err}");
    assert!(tree(&dir.path().join("t")).is_empty());

    // Another node's certificate: refused by the pin before the token is sent.
    let other = Node::start(&[]);
    let mut args = strings(&["process", "--op", "color-manipulation", "--out"]);
    args.push(dir.path().join("f").display().to_string());
    args.extend(strings(&[
        "--remote",
        &node.name(),
        "--fingerprint",
        &other.fingerprint,
        "--token-file",
        &node.token_file.display().to_string(),
        inputs.to_str().unwrap(),
    ]));
    let o = prism(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("fingerprint"), "{err}");
    assert!(
        err.contains(&node.fingerprint),
        "names what was seen: {err}"
    );
    assert!(tree(&dir.path().join("f")).is_empty());

    // The library says the same, typed.
    let rt = runtime();
    let mut spec = node.spec();
    spec.token = "nope".into();
    let e = rt
        .block_on(RemoteClient::connect(&spec, &once()))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            prism_engine::remote::client::RemoteError::BadToken { .. }
        ),
        "{e}"
    );
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    codec::encode(
        &Frame::new(Pixels::Rgb(img)),
        Format::Png,
        &Metadata::default(),
        &EncodeOptions::default(),
    )
    .unwrap()
}

fn work(bytes: Vec<u8>) -> prism_engine::exec::WorkRequest {
    prism_engine::exec::WorkRequest {
        bytes: bytes.into(),
        ops: vec![Op::default_for("color-manipulation").unwrap()].into(),
        format: prism_engine::job::OutputFormat::Same,
        encode: EncodeOptions::default(),
        limits: codec::Limits::default(),
    }
}

/// Reads one response frame from a raw stream.
async fn read_response(recv: &mut quinn::RecvStream) -> Response {
    let buf = recv.read_to_end(1 << 20).await.unwrap();
    let (resp, _): (Response, usize) = proto::decode_frame(&buf, proto::MAX_RESPONSE_HEADER)
        .unwrap()
        .unwrap();
    resp
}

#[test]
fn garbage_on_the_port_does_not_stop_the_node() {
    let node = Node::start(&[]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut s: u32 = 12345;
    for n in 0..300usize {
        let len = [1, 20, 1200, 1500][n % 4];
        let mut pkt: Vec<u8> = (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (s >> 16) as u8
            })
            .collect();
        if n % 2 == 0 {
            // Looks like a QUIC v1 Initial, to get past the first checks.
            pkt[0] = 0xc3;
            if len > 5 {
                pkt[1..5].copy_from_slice(&[0, 0, 0, 1]);
            }
        }
        sock.send_to(&pkt, node.addr).unwrap();
    }
    let rt = runtime();
    let client = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    let res = rt
        .block_on(client.process(&work(png(40, 30)), &Default::default()))
        .unwrap();
    assert_eq!(res.format, Format::Png);
    // Garbage inside an authenticated stream is refused with a code, and the connection
    // goes on serving.
    let conn = client.connection().clone();
    let resp = rt.block_on(async {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        send.finish().unwrap();
        read_response(&mut recv).await
    });
    assert!(
        matches!(&resp, Response::Error(e) if e.code == ErrorCode::Protocol),
        "{resp:?}"
    );
    assert!(rt.block_on(client.fetch_health()).is_ok());
}

#[test]
fn a_param_value_the_node_does_not_take_fails_that_image_alone() {
    let node = Node::start(&[]);
    let rt = runtime();
    let client = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    let bytes = png(10, 10);
    let header = ProcessHeader {
        ops: vec![Op::default_for("color-manipulation").unwrap()],
        format: None,
        jpeg_quality: 95,
        limits: codec::Limits::default(),
        width: 10,
        height: 10,
        image_len: bytes.len() as u64,
    };
    // What a client with another list of modes would send: no `Op` here can hold it.
    let mut request = serde_json::to_value(Request::Process(header)).unwrap();
    request["ops"][0]["params"]["mode"] = "neon".into();
    let conn = client.connection().clone();
    let resp = rt.block_on(async {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&proto::encode(&request).unwrap())
            .await
            .unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        read_response(&mut recv).await
    });
    let Response::Error(e) = &resp else {
        panic!("a bad mode was processed: {resp:?}");
    };
    assert!(
        e.message.contains(
            r#"color-manipulation.mode: "neon" is not one of invert, grayscale, sepia, hue-saturation"#
        ),
        "{e:?}"
    );
    // The same connection goes on serving.
    assert!(rt
        .block_on(client.process(&work(bytes), &Default::default()))
        .is_ok());
}

#[test]
fn oversized_header_gets_an_error_code_and_the_node_goes_on() {
    let node = Node::start(&[]);
    let rt = runtime();
    let client = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    let conn = client.connection().clone();
    let resp = rt.block_on(async {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut head = proto::encode(&Request::Health).unwrap();
        head.truncate(proto::HEAD_LEN);
        head[8..12].copy_from_slice(&(1u32 << 30).to_be_bytes());
        send.write_all(&head).await.unwrap();
        read_response(&mut recv).await
    });
    assert!(
        matches!(&resp, Response::Error(e) if e.code == ErrorCode::HeaderTooLarge),
        "{resp:?}"
    );
    // The same connection and a new one still work.
    let h = rt.block_on(client.fetch_health()).unwrap();
    assert_eq!(h.cores, 1);
    assert_eq!(h.protocol, proto::VERSION);
    let other = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    assert!(rt
        .block_on(other.process(&work(png(8, 8)), &Default::default()))
        .is_ok());
}

#[test]
fn image_over_the_pixel_limit_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("small.png"), png(70, 70)).unwrap();
    std::fs::write(inputs.join("big.png"), png(101, 100)).unwrap();
    let node = Node::start(&["--max-pixels", "10000"]);
    let mut args = strings(&["process", "--json", "--op", "color-manipulation", "--out"]);
    args.push(dir.path().join("out").display().to_string());
    args.extend(node.args());
    args.push(inputs.display().to_string());
    let o = prism(&args);
    assert_eq!(o.status.code(), Some(1));
    let ev = events(&o.stdout);
    let failed: Vec<_> = ev.iter().filter(|e| e["event"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ev:?}");
    assert!(failed[0]["input"].as_str().unwrap().ends_with("big.png"));
    assert_eq!(failed[0]["kind"], "limit");
    let msg = failed[0]["message"].as_str().unwrap();
    assert!(msg.contains("10100") && msg.contains("node"), "{msg}");
    assert!(dir.path().join("out/small.png").exists());

    // A header that lies about the size is caught on the bytes.
    let rt = runtime();
    let client = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    let conn = client.connection().clone();
    let bytes = png(101, 100);
    let resp = rt.block_on(async {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let header = ProcessHeader {
            ops: vec![Op::default_for("color-manipulation").unwrap()],
            format: None,
            jpeg_quality: 95,
            limits: codec::Limits::default(),
            width: 10,
            height: 10,
            image_len: bytes.len() as u64,
        };
        send.write_all(&proto::encode(&Request::Process(header)).unwrap())
            .await
            .unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        read_response(&mut recv).await
    });
    assert!(
        matches!(&resp, Response::Error(e) if e.code == ErrorCode::BadRequest),
        "{resp:?}"
    );
}

#[test]
fn a_stalled_client_is_timed_out_while_others_are_served() {
    let node = Node::start(&["--stall-timeout-ms", "600"]);
    let rt = runtime();
    let slow = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    let conn = slow.connection().clone();
    let t0 = Instant::now();
    let stalled = rt.spawn(async move {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let header = ProcessHeader {
            ops: vec![Op::default_for("color-manipulation").unwrap()],
            format: None,
            jpeg_quality: 95,
            limits: codec::Limits::default(),
            width: 10,
            height: 10,
            image_len: 1000,
        };
        send.write_all(&proto::encode(&Request::Process(header)).unwrap())
            .await
            .unwrap();
        send.write_all(&[0x89, b'P', b'N', b'G']).await.unwrap();
        // ... and nothing more, without finishing the stream.
        let resp = read_response(&mut recv).await;
        drop(send);
        resp
    });
    // Meanwhile another client is served, and so is the slow one's connection.
    let other = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    for _ in 0..3 {
        assert!(rt
            .block_on(other.process(&work(png(50, 40)), &Default::default()))
            .is_ok());
    }
    assert!(rt
        .block_on(slow.process(&work(png(20, 20)), &Default::default()))
        .is_ok());
    let resp = rt.block_on(stalled).unwrap();
    assert!(
        matches!(&resp, Response::Error(e) if e.code == ErrorCode::Timeout),
        "{resp:?}"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(rt.block_on(other.fetch_health()).is_ok());
}

#[test]
fn sigterm_finishes_in_flight_images_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    // Denoise: each image keeps the node busy for a good while (100 ms and more), so an
    // image it has taken is still running when the signal comes.
    let inputs = make_images(dir.path(), 4, 400, 300);
    let pipeline = ops(&["denoise"]);
    let reference = local_reference(&inputs, &dir.path().join("local"), &pipeline);
    let mut node = Node::start(&["--metrics-listen", "127.0.0.1:0"]);
    let out = dir.path().join("remote");
    let mut args = strings(&["process", "--json", "--local", "--threads", "1", "--out"]);
    args.push(out.display().to_string());
    args.extend(pipeline);
    args.extend(node.args());
    args.extend(fast_fail());
    args.push(inputs.display().to_string());
    let mut child = Command::new(PRISM)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    // SIGTERM once the node has taken an image (its own count, not the client's view of
    // it: an image sent as the signal lands is refused and moved, rightly).
    wait_for_metric(&node, "prism_node_images_in_flight", |v| v >= 1.0);
    node.sigterm();
    let ev = reader.join().unwrap();
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let s = summary(&ev);
    assert_eq!(
        (s["done"].as_u64(), s["failed"].as_u64()),
        (Some(4), Some(0))
    );
    // The image the node had at SIGTERM finished there, not elsewhere.
    assert!(
        ev.iter()
            .any(|e| e["event"] == "done" && e["worker"] == node.name().as_str()),
        "{ev:?}"
    );
    assert!(tree(&out) == reference);
}

#[test]
fn connection_limit_refuses_extra_clients_and_goodbye_frees_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_images(dir.path(), 2, 16, 16);
    let node = Node::start(&["--max-connections", "1"]);
    let rt = runtime();
    let holder = rt
        .block_on(RemoteClient::connect(&node.spec(), &once()))
        .unwrap();
    let run = |out: &str, retries: &str| {
        let mut args = strings(&["process", "--op", "color-manipulation", "--out"]);
        args.push(dir.path().join(out).display().to_string());
        args.extend(node.args());
        // A few short retries cover the moment the node takes to see a goodbye; without
        // one it would hold the slot for its 60 s idle timeout.
        args.extend(strings(&[
            "--connect-retries",
            retries,
            "--connect-delay-ms",
            "200",
        ]));
        args.push(inputs.display().to_string());
        prism(&args)
    };
    let o = run("busy", "0");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("busy"), "{err}");
    rt.block_on(holder.goodbye());
    // Each run says goodbye, so back-to-back runs never find the node busy.
    for out in ["a", "b", "c"] {
        let o = run(out, "3");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}
