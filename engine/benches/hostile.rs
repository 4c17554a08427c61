//! Hostile load on loopback (issue 11), not a criterion bench: one client with the token
//! runs 40 JPEGs of 1 MP through a `prism node` process while 200 connections without the
//! token arrive and sit idle and 20 clients send garbage (10 over QUIC streams, 10 as raw
//! UDP datagrams). Prints the node's peak RSS, the honest client's throughput against
//! the same batch on a quiet node (goal: at least 0.8x) and that every image finished.
//!
//! Every attacker sends from a loopback address of its own (127.0.0.2 and up; Linux
//! answers all of 127/8), the honest client from 127.0.0.1, as on a real network where
//! attackers do not share the client's address; `PRISM_BENCH_SAME_ADDRESS=1` puts them
//! all on 127.0.0.1 to see the worst case.
//!
//! On one machine the crowd's own CPU (handshakes, datagrams) competes with the node's,
//! which a real attacker's would not, so the node's CPU time per batch and the crowd's
//! (its runtime's threads) are printed too.
//!
//! `cargo bench -p prism-engine --bench hostile` (release), or quicker to build:
//! `cargo test -p prism-engine --bench hostile` (the dev profile). Bounded: five quiet
//! and five hostile batches, interleaved so background load hits both alike, each crowd
//! stopped when its batch ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use prism_engine::codec::{self, EncodeOptions, Format, Metadata};
use prism_engine::exec::{run_batch, RunConfig, Worker};
use prism_engine::job::{collect_inputs, Batch};
use prism_engine::ops::{CancelToken, Op};
use prism_engine::remote::client::{ConnectOptions, RemoteWorker};
use prism_engine::remote::tls;
use prism_engine::{Frame, Pixels};

// The tests' `prism node` runner: its own data dir, a free port, the printed identity read.
#[allow(dead_code)]
#[path = "../tests/common/node.rs"]
mod node;

const IMAGES: u32 = 40;
/// The crowd; `PRISM_BENCH_IDLE` and `PRISM_BENCH_GARBAGE` change it, to see what costs.
fn crowd_size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const ROUNDS: usize = 5;

/// 40 different 1 MP JPEGs (1000x1000, a smooth pattern shifted per image).
fn inputs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    (0..IMAGES)
        .map(|i| {
            let img = RgbImage::from_fn(1000, 1000, |x, y| {
                let (x, y) = (x + i * 7, y);
                image::Rgb([
                    ((x * 255) / 1000) as u8,
                    ((y * 255) / 1000) as u8,
                    (((x + y) * 3) % 256) as u8,
                ])
            });
            let bytes = codec::encode(
                &Frame::new(Pixels::Rgb(img)),
                Format::Jpeg,
                &Metadata::default(),
                &EncodeOptions::default(),
            )
            .expect("encode input");
            let p = dir.join(format!("photo{i:02}.jpg"));
            std::fs::write(&p, bytes).expect("write input");
            p
        })
        .collect()
}

/// The node's peak and current RSS in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let (peak, now) = node::memory_kib(pid);
    (peak as f64 / 1024.0, now as f64 / 1024.0)
}

/// CPU seconds the node has used (user + system).
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("node stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    // USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}

/// CPU seconds this process's threads named `prefix`* have used (the crowd's runtime).
fn thread_cpu_secs(prefix: &str) -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else {
            continue;
        };
        if !s[open + 1..close].starts_with(prefix) {
            continue;
        }
        let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
        total +=
            (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0;
    }
    total
}

/// The address attacker `i` sends from: 127.0.0.2 and up, never the honest client's
/// 127.0.0.1 (Linux answers all of 127/8 on loopback), as real attackers come from
/// addresses of their own. `PRISM_BENCH_SAME_ADDRESS=1` puts them all on 127.0.0.1.
fn attacker_ip(i: usize) -> std::net::Ipv4Addr {
    if std::env::var_os("PRISM_BENCH_SAME_ADDRESS").is_some_and(|v| v == "1") {
        return std::net::Ipv4Addr::LOCALHOST;
    }
    std::net::Ipv4Addr::new(127, 0, (i / 250) as u8, 2 + (i % 250) as u8)
}

fn stranger_endpoint(fingerprint: &str, from: std::net::Ipv4Addr) -> quinn::Endpoint {
    let (crypto, _) = tls::client_crypto(fingerprint.parse().expect("fp")).expect("tls");
    let cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let mut ep = quinn::Endpoint::client(SocketAddr::from((from, 0))).expect("ep");
    ep.set_default_client_config(cfg);
    ep
}

/// Arrives, completes the handshake and says nothing until the node closes it.
async fn idle_stranger(ep: quinn::Endpoint, addr: SocketAddr, stop: Arc<AtomicBool>) {
    let Ok(connecting) = ep.connect(addr, tls::SERVER_NAME) else {
        return;
    };
    if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connecting).await {
        while !stop.load(Ordering::Relaxed) {
            if tokio::time::timeout(Duration::from_millis(200), conn.closed())
                .await
                .is_ok()
            {
                break;
            }
        }
    }
}

/// Handshakes the garbage clients completed, and datagrams sent.
static GARBAGE_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
static GARBAGE_DATAGRAMS: AtomicUsize = AtomicUsize::new(0);

/// Connects again and again, each time writing junk on every stream it may open.
async fn quic_garbage(ep: quinn::Endpoint, addr: SocketAddr, stop: Arc<AtomicBool>) {
    let junk: Vec<u8> = (0..64 * 1024).map(|i| (i * 31 % 256) as u8).collect();
    while !stop.load(Ordering::Relaxed) {
        let Ok(connecting) = ep.connect(addr, tls::SERVER_NAME) else {
            return;
        };
        let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), connecting).await else {
            continue;
        };
        GARBAGE_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            let Ok(Ok((mut send, _recv))) =
                tokio::time::timeout(Duration::from_millis(300), conn.open_bi()).await
            else {
                break;
            };
            let w = tokio::time::timeout(Duration::from_millis(300), send.write_all(&junk));
            if !matches!(w.await, Ok(Ok(()))) {
                break;
            }
        }
        conn.close(0u32.into(), b"");
    }
}

/// Sends random datagrams, half of them shaped like QUIC v1 Initials, about 1000 a second.
async fn udp_garbage(addr: SocketAddr, stop: Arc<AtomicBool>, seed: u32, from: std::net::Ipv4Addr) {
    let sock = tokio::net::UdpSocket::bind(SocketAddr::from((from, 0)))
        .await
        .expect("udp");
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let len = [20, 1200, 1350][n % 3];
        let mut pkt: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as u8
            })
            .collect();
        if n % 2 == 0 && len > 5 {
            pkt[0] = 0xc3;
            pkt[1..5].copy_from_slice(&[0, 0, 0, 1]);
        }
        let _ = sock.send_to(&pkt, addr).await;
        GARBAGE_DATAGRAMS.fetch_add(1, Ordering::Relaxed);
        n += 1;
        // tokio's timer rounds up to whole milliseconds: 500-1000 datagrams a second.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = inputs(dir.path());
    let threads = std::env::var("PRISM_BENCH_THREADS").unwrap_or_else(|_| "2".into());
    // `PRISM_BENCH_SOURCE_CREDIT=0` turns the node's per-source credit off, for a before.
    let credit = std::env::var("PRISM_BENCH_SOURCE_CREDIT").unwrap_or_else(|_| "64".into());
    let mut node = node::Node::start(&["--threads", &threads, "--source-credit", &credit]);
    let pid = node.child.id();
    let (addr, fingerprint, spec) = (node.addr, node.fingerprint.clone(), node.spec());
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // The crowd has a runtime of its own, as it would have a machine of its own.
    let crowd_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-crowd")
        .enable_all()
        .build()
        .expect("runtime");

    let idle_strangers = crowd_size("PRISM_BENCH_IDLE", 200);
    let garbage_clients = crowd_size("PRISM_BENCH_GARBAGE", 20);
    let batch_once = |round: usize, hostile: bool| -> (f64, f64, f64, usize, usize) {
        let out = dir
            .path()
            .join(format!("out-{}-{round}", if hostile { "h" } else { "q" }));
        std::fs::create_dir_all(&out).expect("out dir");
        let batch = Batch {
            inputs: collect_inputs(&files, &out).expect("inputs"),
            pipeline: Arc::from(vec![Op::default_for("color-manipulation").expect("op")]),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut crowd = Vec::new();
        if hostile {
            // Each idle stranger and each garbage client has an address of its own.
            for s in 0..idle_strangers {
                let ep = {
                    let _rt = crowd_rt.enter();
                    stranger_endpoint(&fingerprint, attacker_ip(garbage_clients + s))
                };
                crowd.push(crowd_rt.spawn(idle_stranger(ep, addr, stop.clone())));
            }
            for i in 0..garbage_clients {
                if i % 2 == 0 {
                    let ep = {
                        let _rt = crowd_rt.enter();
                        stranger_endpoint(&fingerprint, attacker_ip(i))
                    };
                    crowd.push(crowd_rt.spawn(quic_garbage(ep, addr, stop.clone())));
                } else {
                    crowd.push(crowd_rt.spawn(udp_garbage(
                        addr,
                        stop.clone(),
                        i as u32,
                        attacker_ip(i),
                    )));
                }
            }
            // The crowd arrives first; the client connects into it.
            std::thread::sleep(Duration::from_millis(300));
        }
        let (t0, cpu0, crowd0) = (
            Instant::now(),
            cpu_secs(pid),
            thread_cpu_secs("bench-crowd"),
        );
        let worker: Vec<Arc<dyn Worker>> = vec![Arc::new(
            RemoteWorker::connect(client_rt.handle(), &spec, &ConnectOptions::default())
                .expect("the client with the token connects"),
        )];
        let (done, failed) = run_batch(
            &batch,
            &worker,
            &RunConfig::new(&out),
            &CancelToken::new(),
            &mut |_| {},
        );
        let (secs, cpu, crowd_cpu) = (
            t0.elapsed().as_secs_f64(),
            cpu_secs(pid) - cpu0,
            thread_cpu_secs("bench-crowd") - crowd0,
        );
        // Goodbye, so the node frees the connection at once.
        drop(worker);
        stop.store(true, Ordering::Relaxed);
        for t in crowd {
            let _ =
                crowd_rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), t).await });
        }
        (secs, cpu, crowd_cpu, done, failed)
    };

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut quiet, mut hostile, mut quiet_cpu, mut hostile_cpu, mut crowd_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut all_done = true;
    let mut quiet_peak = 0.0;
    for r in 0..ROUNDS {
        let (s, cpu, _, done, failed) = batch_once(r, false);
        all_done &= done == IMAGES as usize && failed == 0;
        quiet.push(s);
        quiet_cpu.push(cpu);
        quiet_peak = rss_mib(pid).0;
        let (s, cpu, crowd, done, failed) = batch_once(r, true);
        println!("hostile round {r}: {done} done, {failed} failed in {s:.2} s");
        all_done &= done == IMAGES as usize && failed == 0;
        hostile.push(s);
        hostile_cpu.push(cpu);
        crowd_cpu.push(crowd);
    }
    let (peak, now) = rss_mib(pid);
    let (q, h) = (median(quiet.clone()), median(hostile.clone()));
    println!(
        "quiet: {:.2} s per batch ({:.1} images/s), runs {quiet:.2?}",
        q,
        IMAGES as f64 / q
    );
    println!(
        "hostile ({idle_strangers} idle strangers, {garbage_clients} garbage clients): {:.2} s \
         per batch ({:.1} images/s), runs {hostile:.2?}",
        h,
        IMAGES as f64 / h
    );
    println!(
        "throughput under attack: {:.2}x the quiet run (goal >= 0.8x)",
        q / h
    );
    println!(
        "node CPU per batch: {:.2} s quiet, {:.2} s under attack (medians)",
        median(quiet_cpu),
        median(hostile_cpu)
    );
    println!(
        "the crowd's own CPU per hostile batch (same 2 cores): {:.2} s (median)",
        median(crowd_cpu)
    );
    println!(
        "node RSS: peak {quiet_peak:.0} MiB before the last attack, peak {peak:.0} MiB \
         overall, {now:.0} MiB at the end"
    );
    println!(
        "the garbage clients made {} connections and sent {} datagrams",
        GARBAGE_CONNECTIONS.load(Ordering::Relaxed),
        GARBAGE_DATAGRAMS.load(Ordering::Relaxed)
    );
    println!(
        "every image finished: {}",
        if all_done { "yes" } else { "NO" }
    );
    node.kill();
}
