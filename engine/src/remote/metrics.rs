//! What a node tells Prometheus (`prism node --metrics-listen`): counters the node's code
//! paths bump as images come and go, and gauges read from the node's own counts when a
//! scrape asks. No I/O here; [`super::http`] serves the text.
//!
//! Labels are bounded by construction: `op` is one of the op ids, `kind` one of the
//! error kinds, `state` one of two connection states, so no client can grow the output.
//! An image whose pipeline has several ops counts once under each of them (and each op's
//! time is observed under its own id), so a chain shows up in every op it uses.

use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::error::ErrorKind;
use crate::ops::Op;

/// The text formats a scrape may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// The Prometheus text exposition format, version 0.0.4 (what a plain GET gets).
    Prometheus,
    /// OpenMetrics 1.0 text, for scrapers that ask for it in `Accept`.
    OpenMetrics,
}

impl TextFormat {
    /// The format an `Accept` header asks for: OpenMetrics only when named.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => TextFormat::OpenMetrics,
            _ => TextFormat::Prometheus,
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            TextFormat::Prometheus => prometheus_text::CONTENT_TYPE,
            TextFormat::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailLabels {
    op: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a connection ended before it could send work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its source had no credit left ([`super::sources`]): ignored before any TLS work.
    NoCredit,
    /// A failed handshake, garbage, a wrong token or no `hello` in time.
    Failed,
    /// Closed to make room for a newer connection waiting to say `hello`.
    Evicted,
    /// The token was right but the node served its maximum of connections.
    Busy,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::NoCredit,
        Refusal::Failed,
        Refusal::Evicted,
        Refusal::Busy,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::NoCredit => "no-credit",
            Refusal::Failed => "failed",
            Refusal::Evicted => "evicted",
            Refusal::Busy => "busy",
        }
    }
}

/// The node's counts at the moment of a scrape, for the gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Images admitted and not yet answered (waiting for memory or a thread, or running).
    pub in_flight: u64,
    /// Images running on a thread now.
    pub running: u64,
    /// Connections that said `hello` with the token.
    pub authenticated: u64,
    /// Connections in their handshake or before `hello`.
    pub unauthenticated: u64,
    /// The memory budget for images, in bytes.
    pub memory_budget: u64,
    /// The part of it held by images now.
    pub memory_in_use: u64,
    /// Whether the node takes new work (false while it drains after SIGTERM).
    pub ready: bool,
}

/// The node's metrics and the registry that encodes them.
pub struct NodeMetrics {
    registry: Registry,
    done: Family<OpLabel, Counter>,
    failed: Family<FailLabels, Counter>,
    op_seconds: Family<OpLabel, Histogram>,
    received: Counter,
    sent: Counter,
    in_flight: Gauge,
    running: Gauge,
    connections: Family<StateLabel, Gauge>,
    refused: Family<ReasonLabel, Counter>,
    memory_budget: Gauge,
    memory_in_use: Gauge,
    ready: Gauge,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Every distinct op id of a pipeline, in order.
fn distinct_ids(ops: &[Op]) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = Vec::with_capacity(ops.len());
    for op in ops {
        if !ids.contains(&op.id()) {
            ids.push(op.id());
        }
    }
    ids
}

/// Saturating conversion for gauges (i64 inside).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl NodeMetrics {
    /// Every metric at zero, registered under the `prism_node` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("prism_node");
        let done = Family::<OpLabel, Counter>::default();
        registry.register(
            "images_done",
            "Images answered with a result, by op (an image counts under each op of its pipeline)",
            done.clone(),
        );
        // Every op shows from the start, at 0, so rates work before its first image.
        for &op in crate::ops::OP_IDS {
            let _ = done.get_or_create(&OpLabel { op });
        }
        let failed = Family::<FailLabels, Counter>::default();
        registry.register(
            "images_failed",
            "Images answered with an error, by op and error kind",
            failed.clone(),
        );
        // 1 ms to about 2 min: a small image's cheap op up to denoise on 12 MP.
        let op_seconds = Family::<OpLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 18))
        });
        registry.register_with_unit(
            "op_duration",
            "Time one op took on one image",
            Unit::Seconds,
            op_seconds.clone(),
        );
        let received = Counter::default();
        registry.register_with_unit(
            "received",
            "Image bytes received from clients",
            Unit::Bytes,
            received.clone(),
        );
        let sent = Counter::default();
        registry.register_with_unit(
            "sent",
            "Result bytes (answer headers and encoded outputs) sent to clients",
            Unit::Bytes,
            sent.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "images_in_flight",
            "Images admitted and not yet answered (queued or running)",
            in_flight.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "images_running",
            "Images running on a thread",
            running.clone(),
        );
        let connections = Family::<StateLabel, Gauge>::default();
        registry.register(
            "connections",
            "Open QUIC connections, by state (handshake: not yet authenticated)",
            connections.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        for r in Refusal::ALL {
            let _ = refused.get_or_create(&ReasonLabel { reason: r.label() });
        }
        registry.register(
            "connections_refused",
            "Connections ended before they could send work, by reason \
             (no-credit, failed, evicted, busy)",
            refused.clone(),
        );
        let memory_budget = Gauge::default();
        registry.register_with_unit(
            "memory_budget",
            "Memory the node lets images (compressed, decoded and working) hold at once",
            Unit::Bytes,
            memory_budget.clone(),
        );
        let memory_in_use = Gauge::default();
        registry.register_with_unit(
            "memory_in_use",
            "Part of the memory budget held by images now",
            Unit::Bytes,
            memory_in_use.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while the node takes new work, 0 while it drains after SIGTERM",
            ready.clone(),
        );
        Self {
            registry,
            done,
            failed,
            op_seconds,
            received,
            sent,
            in_flight,
            running,
            connections,
            refused,
            memory_budget,
            memory_in_use,
            ready,
        }
    }

    /// A connection ended before it could send work.
    pub fn connection_refused(&self, why: Refusal) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .inc();
    }

    /// An image of this pipeline was answered with a result.
    pub fn image_done(&self, ops: &[Op]) {
        for op in distinct_ids(ops) {
            self.done.get_or_create(&OpLabel { op }).inc();
        }
    }

    /// An image of this pipeline was answered with an error of `kind`.
    pub fn image_failed(&self, ops: &[Op], kind: ErrorKind) {
        for op in distinct_ids(ops) {
            let labels = FailLabels {
                op,
                kind: kind.as_str(),
            };
            self.failed.get_or_create(&labels).inc();
        }
    }

    /// One op took `time` on one image.
    pub fn op_time(&self, op: &'static str, time: Duration) {
        self.op_seconds
            .get_or_create(&OpLabel { op })
            .observe(time.as_secs_f64());
    }

    /// Image bytes came in from a client.
    pub fn received(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }

    /// Result bytes went out to a client.
    pub fn sent(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }

    /// The metrics as text, with the gauges set from `now`.
    pub fn encode(&self, now: &Snapshot, format: TextFormat) -> String {
        self.in_flight.set(gauge_value(now.in_flight));
        self.running.set(gauge_value(now.running));
        for (state, n) in [
            ("authenticated", now.authenticated),
            ("handshake", now.unauthenticated),
        ] {
            self.connections
                .get_or_create(&StateLabel { state })
                .set(gauge_value(n));
        }
        self.memory_budget.set(gauge_value(now.memory_budget));
        self.memory_in_use.set(gauge_value(now.memory_in_use));
        self.ready.set(i64::from(now.ready));
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder,
        // and a scrape then gets what was written so far rather than a crash.
        let _ = match format {
            TextFormat::Prometheus => prometheus_text::encode(&mut out, &self.registry),
            TextFormat::OpenMetrics => text::encode(&mut out, &self.registry),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str) -> Op {
        Op::default_for(id).unwrap()
    }

    /// The value of the one line that starts with `series ` (name and labels).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn images_count_under_each_distinct_op_with_their_kind() {
        let m = NodeMetrics::new();
        let chain = [op("erosion"), op("dilation"), op("erosion")];
        m.image_done(&chain);
        m.image_done(&[op("sift")]);
        m.image_failed(&[op("sift")], ErrorKind::Limit);
        m.image_failed(&[op("sift")], ErrorKind::Limit);
        m.image_failed(&[op("denoise")], ErrorKind::BadInput);
        let t = m.encode(&Snapshot::default(), TextFormat::Prometheus);
        assert_eq!(
            value(&t, r#"prism_node_images_done_total{op="erosion"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(&t, r#"prism_node_images_done_total{op="dilation"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(&t, r#"prism_node_images_done_total{op="sift"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                r#"prism_node_images_failed_total{op="sift",kind="limit"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &t,
                r#"prism_node_images_failed_total{op="denoise",kind="bad-input"}"#
            ),
            Some(1.0)
        );
        assert!(
            t.contains("# TYPE prism_node_images_done_total counter"),
            "{t}"
        );
        // Ops without images yet are there at 0.
        assert_eq!(
            value(&t, r#"prism_node_images_done_total{op="denoise"}"#),
            Some(0.0)
        );
    }

    #[test]
    fn op_times_fill_the_histogram_buckets() {
        let m = NodeMetrics::new();
        m.op_time("sift", Duration::from_millis(3));
        m.op_time("sift", Duration::from_millis(300));
        let t = m.encode(&Snapshot::default(), TextFormat::Prometheus);
        let series = |s: &str| value(&t, &format!("prism_node_op_duration_seconds_{s}"));
        assert_eq!(series(r#"count{op="sift"}"#), Some(2.0));
        assert!((series(r#"sum{op="sift"}"#).unwrap() - 0.303).abs() < 1e-9);
        // 3 ms falls in the 4 ms bucket, 300 ms in the 512 ms one.
        assert_eq!(series(r#"bucket{op="sift",le="0.002"}"#), Some(0.0));
        assert_eq!(series(r#"bucket{op="sift",le="0.004"}"#), Some(1.0));
        assert_eq!(series(r#"bucket{op="sift",le="0.512"}"#), Some(2.0));
        assert_eq!(series(r#"bucket{op="sift",le="+Inf"}"#), Some(2.0));
        assert!(t.contains("# TYPE prism_node_op_duration_seconds histogram"));
    }

    #[test]
    fn gauges_show_the_snapshot_and_bytes_add_up() {
        let m = NodeMetrics::new();
        m.connection_refused(Refusal::NoCredit);
        m.connection_refused(Refusal::NoCredit);
        m.connection_refused(Refusal::Busy);
        m.received(1000);
        m.received(24);
        m.sent(512);
        let now = Snapshot {
            in_flight: 3,
            running: 2,
            authenticated: 4,
            unauthenticated: 1,
            memory_budget: 1 << 30,
            memory_in_use: 5 << 20,
            ready: true,
        };
        let t = m.encode(&now, TextFormat::Prometheus);
        for (series, v) in [
            ("prism_node_received_bytes_total", 1024.0),
            ("prism_node_sent_bytes_total", 512.0),
            ("prism_node_images_in_flight", 3.0),
            ("prism_node_images_running", 2.0),
            (r#"prism_node_connections{state="authenticated"}"#, 4.0),
            (r#"prism_node_connections{state="handshake"}"#, 1.0),
            ("prism_node_memory_budget_bytes", f64::from(1u32 << 30)),
            ("prism_node_memory_in_use_bytes", f64::from(5u32 << 20)),
            ("prism_node_ready", 1.0),
            (
                r#"prism_node_connections_refused_total{reason="no-credit"}"#,
                2.0,
            ),
            (
                r#"prism_node_connections_refused_total{reason="busy"}"#,
                1.0,
            ),
            (
                r#"prism_node_connections_refused_total{reason="evicted"}"#,
                0.0,
            ),
            (
                r#"prism_node_connections_refused_total{reason="failed"}"#,
                0.0,
            ),
        ] {
            assert_eq!(value(&t, series), Some(v), "{series} in\n{t}");
        }
        let draining = m.encode(
            &Snapshot {
                ready: false,
                ..now
            },
            TextFormat::Prometheus,
        );
        assert_eq!(value(&draining, "prism_node_ready"), Some(0.0));
    }

    #[test]
    fn openmetrics_is_given_only_to_scrapers_that_ask() {
        assert_eq!(TextFormat::from_accept(None), TextFormat::Prometheus);
        assert_eq!(
            TextFormat::from_accept(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            TextFormat::Prometheus
        );
        let prom = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5";
        assert_eq!(TextFormat::from_accept(Some(prom)), TextFormat::OpenMetrics);
        let m = NodeMetrics::new();
        let om = m.encode(&Snapshot::default(), TextFormat::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        let plain = m.encode(&Snapshot::default(), TextFormat::Prometheus);
        assert!(!plain.contains("# EOF"));
        assert!(TextFormat::Prometheus
            .content_type()
            .starts_with("text/plain; version=0.0.4"));
    }
}
