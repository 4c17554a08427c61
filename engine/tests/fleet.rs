//! Fleets and credits on loopback.
//!
//! A real DNS server (hickory-server, in this test process) answers a fleet's name with
//! 127.x.y.z addresses where `prism node` processes listen, all on one port and sharing
//! one identity as a Deployment's replicas do; `prism process --remote NAME:PORT
//! --dns-server` runs batches on them while the test changes the records, kills nodes or
//! stops the DNS server. Credits: a node busy with another client's images gets none of a
//! batch, and tells the client when its slots free up.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;
use prism_engine::codec::Format;
use prism_engine::exec::{run_batch, Event, RunConfig, Worker};
use prism_engine::job::{collect_inputs, Batch};
use prism_engine::ops::{CancelToken, Op};
use prism_engine::remote::client::{ConnectOptions, RemoteClient, RemoteWorker};
use serde_json::Value;

mod common;

use common::cli::{of_kind, prism, sample, summary, write_image};
use common::node::{once, runtime, Node};

/// The zone the test's DNS server is authoritative for.
const ZONE: &str = "fleet.test.";

/// A DNS server on 127.0.0.1 answering `<name>.fleet.test.` with the A records the test
/// sets (TTL 0, so nothing caches them).
struct Dns {
    rt: tokio::runtime::Runtime,
    server: Option<Server<Catalog>>,
    zone: Arc<InMemoryZoneHandler>,
    addr: SocketAddr,
    serial: AtomicU32,
}

impl Dns {
    fn start() -> Dns {
        let rt = runtime();
        let origin = Name::from_ascii(ZONE).unwrap();
        let zone: InMemoryZoneHandler =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_ascii("ns.fleet.test.").unwrap(),
            Name::from_ascii("admin.fleet.test.").unwrap(),
            1,
            60,
            60,
            600,
            0,
        );
        let zone = Arc::new(zone);
        let (server, addr) = rt.block_on(async {
            assert!(
                zone.upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1)
                    .await
            );
            let mut catalog = Catalog::new();
            catalog.upsert(
                LowerName::new(&origin),
                vec![zone.clone() as Arc<dyn ZoneHandler>],
            );
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let mut server = Server::new(catalog);
            server.register_socket(socket);
            (server, addr)
        });
        Dns {
            rt,
            server: Some(server),
            zone,
            addr,
            serial: AtomicU32::new(1),
        }
    }

    /// Makes `name` (relative to the zone) answer with exactly `ips`, in one step.
    fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        let name = Name::from_ascii(format!("{name}.{ZONE}")).unwrap();
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let mut set = RecordSet::with_ttl(name.clone(), RecordType::A, 0);
        for ip in ips {
            set.insert(
                Record::from_rdata(name.clone(), 0, RData::A(A(*ip))),
                serial,
            );
        }
        self.rt.block_on(async {
            let key = RrKey::new(LowerName::new(&name), RecordType::A);
            let mut records = self.zone.records_mut().await;
            if ips.is_empty() {
                records.remove(&key);
            } else {
                records.insert(key, Arc::new(set));
            }
        });
    }

    /// Stops answering: lookups time out from now on.
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = self.rt.block_on(server.shutdown_gracefully());
        }
    }
}

/// `n` nodes sharing one identity, on `base.2`, `base.3`, ... and one port; each with one
/// thread.
fn fleet_nodes(identity: &Path, base: [u8; 3], n: u8) -> Vec<Node> {
    let ip = |i: u8| Ipv4Addr::new(base[0], base[1], base[2], 2 + i);
    let first = Node::start_at(&format!("{}:0", ip(0)), identity, &[]);
    let port = first.addr.port();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(Node::start_at(&format!("{}:{port}", ip(i)), identity, &[]));
    }
    for n in &nodes[1..] {
        assert_eq!(n.fingerprint, nodes[0].fingerprint, "one identity");
    }
    nodes
}

fn ipv4(node: &Node) -> Ipv4Addr {
    match node.addr.ip() {
        std::net::IpAddr::V4(v4) => v4,
        other => panic!("{other}"),
    }
}

/// `n` PNG inputs in `dir/in`, each different.
fn inputs(dir: &Path, n: u32, side: u32) -> PathBuf {
    let src = dir.join("in");
    for i in 0..n {
        write_image(
            &src.join(format!("img{i:03}.png")),
            &sample(side, side, i),
            Format::Png,
        );
    }
    src
}

/// The work per image in the fleet batches: a denoise costs tens of milliseconds on 96x96
/// at one thread, so a batch lasts long enough for DNS changes to take effect mid-way.
const SIDE: u32 = 96;
const PIPELINE: [&str; 4] = ["--op", "denoise", "--param", "denoise.search=15"];

/// `prism process` on the fleet `name:port` through the test's DNS server, as a child whose
/// stdout (JSON events) the test reads as it goes.
fn fleet_batch(dns: &Dns, name: &str, nodes: &[Node], src: &Path, out: &Path) -> Child {
    let port = nodes[0].addr.port();
    Command::new(common::node::PRISM)
        .arg("process")
        .args(PIPELINE)
        .args(["--json", "--out"])
        .arg(out)
        .args(["--remote", &format!("{name}.{ZONE}:{port}")])
        .args(["--fingerprint", &nodes[0].fingerprint])
        .arg("--token-file")
        .arg(&nodes[0].token_file)
        .args(["--dns-server", &dns.addr.to_string()])
        .args(["--resolve-every-ms", "300"])
        .args([
            "--node-idle-timeout-ms",
            "1500",
            "--connect-timeout-ms",
            "3000",
        ])
        .arg(src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads stderr to its end on a thread, so a chatty child never blocks on a full pipe.
fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    })
}

/// Every input ended exactly once, as `done`, and its output is there, once.
fn assert_all_done_once(ev: &[Value], src: &Path, out: &Path, n: usize) {
    let s = summary(ev);
    assert_eq!(
        (s["done"].as_u64(), s["failed"].as_u64()),
        (Some(n as u64), Some(0)),
        "{s}"
    );
    let mut ended = BTreeMap::new();
    for e in ev
        .iter()
        .filter(|e| e["event"] == "done" || e["event"] == "failed")
    {
        *ended.entry(e["index"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(ended.len(), n, "every input ended");
    assert!(ended.values().all(|&c| c == 1), "an input ended twice");
    // One output per input, no `img (2).png`: nothing was written twice.
    let mut written: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    for name in &written {
        let bytes = std::fs::read(out.join(name)).unwrap();
        prism_engine::codec::decode(&bytes, &Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn workers_of<'a>(ev: &'a [Value], kind: &str) -> BTreeSet<&'a str> {
    of_kind(ev, kind)
        .iter()
        .map(|e| e["worker"].as_str().unwrap())
        .collect()
}

#[test]
fn a_fleet_grows_and_shrinks_mid_batch_and_every_input_ends_once() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let src = inputs(dir.path(), N as u32, SIDE);
    let out = dir.path().join("out");
    let mut nodes = fleet_nodes(&dir.path().join("identity"), [127, 0, 1], 4);
    let ips: Vec<Ipv4Addr> = nodes.iter().map(ipv4).collect();
    let names: Vec<String> = nodes.iter().map(Node::name).collect();
    let dns = Dns::start();
    // Two members at the start.
    dns.set("nodes", &ips[..2]);
    let mut child = fleet_batch(&dns, "nodes", &nodes, &src, &out);
    let stderr = collect_stderr(&mut child);
    let mut ev: Vec<Value> = Vec::new();
    #[derive(Debug, PartialEq)]
    enum Phase {
        TwoMembers,
        FourMembers,
        Shrunk,
    }
    let mut phase = Phase::TwoMembers;
    let mut done_at_shrink = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let is_done = v["event"] == "done";
        ev.push(v);
        let done = of_kind(&ev, "done").len();
        match phase {
            Phase::TwoMembers if done >= 20 => {
                // Scale-up: two more pods become ready.
                dns.set("nodes", &ips);
                phase = Phase::FourMembers;
            }
            Phase::FourMembers if is_done => {
                let by = workers_of(&ev, "done");
                if by.contains(names[2].as_str()) && by.contains(names[3].as_str()) {
                    // Scale-down: .3 leaves DNS and drains; .2 leaves DNS and is killed
                    // with whatever it holds.
                    dns.set("nodes", &ips[2..]);
                    nodes[0].kill();
                    done_at_shrink = done;
                    phase = Phase::Shrunk;
                }
            }
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    let err = stderr.join().unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(
        phase,
        Phase::Shrunk,
        "the batch ended before the fleet changed: {err}"
    );
    assert!(
        done_at_shrink < N - 60,
        "too little was left after the scale-down to tell anything ({done_at_shrink} done)"
    );
    assert_all_done_once(&ev, &src, &out, N);
    // All four members did work.
    let by = workers_of(&ev, "done");
    assert_eq!(by, names.iter().map(String::as_str).collect(), "{err}");
    // What the drained member started, it finished: nothing moved off it.
    let mut ran: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for r in of_kind(&ev, "running") {
        ran.entry(r["index"].as_u64().unwrap())
            .or_default()
            .push(r["worker"].as_str().unwrap());
    }
    let done_by: BTreeMap<u64, &str> = of_kind(&ev, "done")
        .iter()
        .map(|d| (d["index"].as_u64().unwrap(), d["worker"].as_str().unwrap()))
        .collect();
    let drained = names[1].as_str();
    for (i, workers) in &ran {
        if workers.contains(&drained) {
            assert_eq!(
                workers.last(),
                Some(&drained),
                "input {i} moved off: {workers:?}"
            );
            assert_eq!(done_by[i], drained, "input {i}");
        }
    }
    // Well after the scale-down (the last 20 images handed out), only the members still
    // listed took work.
    let running = of_kind(&ev, "running");
    let late: BTreeSet<&str> = running[running.len() - 20..]
        .iter()
        .map(|r| r["worker"].as_str().unwrap())
        .collect();
    assert!(
        late.is_subset(&[names[2].as_str(), names[3].as_str()].into()),
        "late work went to {late:?}"
    );
    assert!(err.contains(&format!("{} joined", names[2])), "{err}");
    assert!(err.contains(&format!("{} left DNS", names[1])), "{err}");
    assert!(
        err.contains(&format!("{} finished its images", names[1])),
        "{err}"
    );
}

#[test]
fn a_name_that_stops_resolving_does_not_stop_the_batch() {
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let src = inputs(dir.path(), N as u32, SIDE);
    let out = dir.path().join("out");
    let nodes = fleet_nodes(&dir.path().join("identity"), [127, 0, 2], 2);
    let ips: Vec<Ipv4Addr> = nodes.iter().map(ipv4).collect();
    let mut dns = Dns::start();
    dns.set("nodes", &ips);
    let mut child = fleet_batch(&dns, "nodes", &nodes, &src, &out);
    let stderr = collect_stderr(&mut child);
    let mut ev: Vec<Value> = Vec::new();
    let mut stopped = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        ev.push(serde_json::from_str(&line.unwrap()).unwrap());
        if !stopped && of_kind(&ev, "done").len() >= 5 {
            dns.stop();
            stopped = true;
        }
    }
    let status = child.wait().unwrap();
    let err = stderr.join().unwrap();
    assert!(status.success(), "{err}");
    assert!(stopped);
    assert_all_done_once(&ev, &src, &out, N);
    let by = workers_of(&ev, "done");
    assert_eq!(by.len(), 2, "{by:?}");
    assert_eq!(summary(&ev)["moved"].as_u64(), Some(0), "{err}");
}

#[test]
fn fleet_names_that_list_nothing_or_cannot_be_read_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = inputs(dir.path(), 2, 16);
    let nodes = fleet_nodes(&dir.path().join("identity"), [127, 0, 3], 1);
    let dns = Dns::start();
    let port = nodes[0].addr.port().to_string();
    let run = |remote: &str| {
        prism()
            .args(["process", "--op", "color-manipulation", "--json", "--out"])
            .arg(dir.path().join("out"))
            .args(["--remote", remote, "--fingerprint", &nodes[0].fingerprint])
            .arg("--token-file")
            .arg(&nodes[0].token_file)
            .args(["--dns-server", &dns.addr.to_string()])
            .args(["--connect-retries", "1", "--connect-delay-ms", "100"])
            .arg(&src)
            .output()
            .unwrap()
    };
    // No such name: nothing runs, and the message says which name.
    let o = run(&format!("missing.{ZONE}:{port}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("missing.fleet.test"), "{err}");
    assert!(err.contains("nothing was processed"), "{err}");
    // Not HOST:PORT: a usage error before anything is tried.
    let o = run("no port here");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--remote"));
    // A wrong token: said as such (not "no member could be connected"), and final.
    dns.set("nodes", &[ipv4(&nodes[0])]);
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-fleet-token\n").unwrap();
    let o = prism()
        .args(["process", "--op", "color-manipulation", "--out"])
        .arg(dir.path().join("out"))
        .args(["--remote", &format!("nodes.{ZONE}:{port}")])
        .args(["--fingerprint", &nodes[0].fingerprint, "--token-file"])
        .arg(&wrong)
        .args(["--dns-server", &dns.addr.to_string()])
        .arg(&src)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let said = format!("node nodes.{ZONE}:{port} refused the token");
    assert!(err.contains(&said), "{err}");
    assert!(!err.contains("no member could be connected"), "{err}");
    let written = std::fs::read_dir(dir.path().join("out")).map_or(0, |d| d.count());
    assert_eq!(written, 0, "nothing was processed");
}

/// A worker for `node`, through the library.
fn worker(rt: &tokio::runtime::Runtime, node: &Node) -> Arc<RemoteWorker> {
    Arc::new(
        RemoteWorker::connect(
            rt.handle(),
            &node.spec(),
            &ConnectOptions {
                retries: 0,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

/// Waits up to `limit` for `f` to hold.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn a_node_busy_with_another_clients_images_gets_none_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let free = Node::start(&[]);
    let busy = Node::start(&[]);
    let rt = runtime();
    // Another client fills the busy node's one thread for a while: three 17x17 images
    // sleep 2 s each there (the fault-injection feature), and it ignores credits.
    let hog = Arc::new(
        rt.block_on(RemoteClient::connect(&busy.spec(), &once()))
            .unwrap(),
    );
    let poison = prism_engine::codec::encode(
        &sample(17, 17, 0),
        Format::Png,
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    let hogging: Vec<_> = (0..3)
        .map(|_| {
            let (hog, req) = (
                hog.clone(),
                prism_engine::exec::WorkRequest {
                    bytes: poison.clone().into(),
                    ops: vec![Op::default_for("color-manipulation").unwrap()].into(),
                    format: prism_engine::job::OutputFormat::Same,
                    encode: Default::default(),
                    limits: Default::default(),
                },
            );
            rt.spawn(async move { hog.process(&req, &CancelToken::new()).await.is_ok() })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || {
            rt.block_on(hog.fetch_health())
                .is_ok_and(|h| h.in_flight == 3)
        }),
        "the hog's images are at the node"
    );
    let on_free = worker(&rt, &free);
    let on_busy = worker(&rt, &busy);
    assert!(on_busy.client().health().credits, "the node grants credits");
    // The busy node grants nothing, the free one its thread.
    assert!(eventually(Duration::from_secs(2), || on_free
        .client()
        .window()
        .limit()
        == 1));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(on_busy.client().window().limit(), 0);
    let files: Vec<PathBuf> = (0..20u32)
        .map(|i| {
            let p = dir.path().join(format!("in/{i:02}.png"));
            write_image(&p, &sample(48, 40, i), Format::Png);
            p
        })
        .collect();
    let out = dir.path().join("out");
    let batch = Batch {
        inputs: collect_inputs(&files, &out).unwrap(),
        pipeline: vec![Op::default_for("color-manipulation").unwrap()].into(),
    };
    let workers: Vec<Arc<dyn Worker>> = vec![on_free.clone(), on_busy.clone()];
    let mut events = Vec::new();
    let start = Instant::now();
    let (done, failed) = run_batch(
        &batch,
        &workers,
        &RunConfig::new(&out),
        &CancelToken::new(),
        &mut |e| events.push(e.clone()),
    );
    let took = start.elapsed();
    assert_eq!((done, failed), (20, 0));
    let by_busy = events
        .iter()
        .filter(|e| matches!(e, Event::Done { worker, .. } if *worker == busy.name()))
        .count();
    // The hog holds the node for 6 s; the batch is done long before on the free node.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(by_busy, 0, "the busy node got work it could only queue");
    // When its thread frees up, the node says so.
    for h in hogging {
        assert!(rt.block_on(h).unwrap(), "the hog's images finish");
    }
    assert!(
        eventually(Duration::from_secs(5), || on_busy.client().window().limit()
            == 1),
        "no credit came when the node's thread freed up"
    );
}

#[test]
fn a_node_shutting_down_grants_nothing() {
    let node = Node::start(&["--threads", "2", "--shutdown-grace-ms", "5000"]);
    let rt = runtime();
    let w = worker(&rt, &node);
    assert!(eventually(Duration::from_secs(2), || w
        .client()
        .window()
        .limit()
        == 2));
    // Something in flight keeps the node in its grace period for a while.
    let hog = Arc::new(
        rt.block_on(RemoteClient::connect(&node.spec(), &once()))
            .unwrap(),
    );
    let poison = prism_engine::codec::encode(
        &sample(17, 17, 0),
        Format::Png,
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    let req = prism_engine::exec::WorkRequest {
        bytes: poison.into(),
        ops: vec![Op::default_for("color-manipulation").unwrap()].into(),
        format: prism_engine::job::OutputFormat::Same,
        encode: Default::default(),
        limits: Default::default(),
    };
    let h2 = hog.clone();
    let slow = rt.spawn(async move { h2.process(&req, &CancelToken::new()).await.is_ok() });
    // Another client's image takes one of the two threads: one is left for us.
    assert!(
        eventually(Duration::from_secs(5), || w.client().window().limit() == 1),
        "the window did not shrink when another client's image arrived"
    );
    node.sigterm();
    assert!(
        eventually(Duration::from_secs(3), || w.client().window().limit() == 0),
        "the node kept granting credits while shutting down"
    );
    assert!(rt.block_on(slow).unwrap(), "the image in flight finished");
}
