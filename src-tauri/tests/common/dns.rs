//! A real DNS server (hickory-server) on 127.0.0.1 for fleet tests: it answers
//! `<name>.fleet.test.` with the A records the test sets (TTL 0, so nothing caches them),
//! as a Kubernetes headless Service lists its pods. Shared by the app's unit tests
//! (`core/tests.rs`) and the end-to-end test.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;

/// The zone the server is authoritative for.
pub const ZONE: &str = "fleet.test.";

/// The server, on its own runtime; stops when dropped. Usable from async tests too: its
/// runtime is only ever blocked on from a thread of its own.
pub struct Dns {
    rt: Option<tokio::runtime::Runtime>,
    _server: Server<Catalog>,
    zone: Arc<InMemoryZoneHandler>,
    /// Where it answers (UDP).
    pub addr: SocketAddr,
    serial: AtomicU32,
}

impl Dns {
    /// Starts answering, with no records yet.
    pub fn start() -> Dns {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the DNS server");
        let origin = Name::from_ascii(ZONE).unwrap();
        let zone = Arc::new(InMemoryZoneHandler::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        ));
        let soa = SOA::new(
            Name::from_ascii("ns.fleet.test.").unwrap(),
            Name::from_ascii("admin.fleet.test.").unwrap(),
            1,
            60,
            60,
            600,
            0,
        );
        let (server, addr) = on(&rt, async {
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
            rt: Some(rt),
            _server: server,
            zone,
            addr,
            serial: AtomicU32::new(1),
        }
    }

    /// `name` (relative to the zone) as a fleet entry's host, fully qualified.
    pub fn host(name: &str) -> String {
        format!("{name}.{ZONE}")
    }

    /// Makes `name` (relative to the zone) answer with exactly `ips`, in one step.
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        let name = Name::from_ascii(Self::host(name)).unwrap();
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let mut set = RecordSet::with_ttl(name.clone(), RecordType::A, 0);
        for ip in ips {
            set.insert(
                Record::from_rdata(name.clone(), 0, RData::A(A(*ip))),
                serial,
            );
        }
        let rt = self.rt.as_ref().expect("running");
        on(rt, async {
            let key = RrKey::new(LowerName::new(&name), RecordType::A);
            let mut records = self.zone.records_mut().await;
            if ips.is_empty() {
                records.remove(&key);
            } else {
                records.insert(key, Arc::new(set));
            }
        });
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` to its end on `rt` from a thread of its own (blocking on a runtime inside
/// another one's task would panic).
fn on<F: std::future::Future + Send>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| s.spawn(|| rt.block_on(fut)).join().expect("DNS task"))
}
