//! The node's health and metrics endpoint (`prism node --metrics-listen ADDR`): HTTP/1.1
//! on the node's tokio runtime, for probes and scrapers.
//!
//! - `GET /healthz`: 200 while the process serves (liveness).
//! - `GET /readyz`: 200 while the node takes new work, 503 while it drains after SIGTERM
//!   (a Kubernetes Service stops listing it then).
//! - `GET /metrics`: [`super::metrics`] as Prometheus text (OpenMetrics when asked).
//!
//! It listens on the network, so it is capped like the QUIC side: connections at once
//! (one more is closed at once), time to send the request head, the life of a connection
//! (one request each), the size of the head; a request with a body is refused unread.
//! Nothing here touches images, and nothing a request says reaches the node's work.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::TextFormat;

/// What the endpoint reports on: the running node.
pub(crate) trait Observed: Send + Sync + 'static {
    /// Whether the node takes new work.
    fn ready(&self) -> bool;
    /// The metrics as text in `format`.
    fn metrics(&self, format: TextFormat) -> String;
}

/// What the endpoint refuses or gives up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time a client has to send its request line and headers.
    pub header_timeout: Duration,
    /// Time a connection may live, from accept to the end of its answer.
    pub connection_timeout: Duration,
    /// Bytes of request line and headers (hyper's floor is 8 KiB).
    pub max_header_bytes: usize,
    /// Header fields per request.
    pub max_headers: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            // Probes and a scraper or two; a few more for people with curl.
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
            max_header_bytes: 8192,
            max_headers: 32,
        }
    }
}

/// Binds the endpoint's TCP listener (on the current runtime).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the endpoint until the runtime shuts down.
pub(crate) async fn serve(listener: TcpListener, node: Arc<dyn Observed>, limits: HttpLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // One request per connection: nothing to keep alive for probes, and a client
        // cannot hold a slot between requests.
        .keep_alive(false)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept: back off
                // instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: closing at once costs less than any answer.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn({
                let node = node.clone();
                move |req| {
                    let resp = respond(&req, node.as_ref());
                    async move { Ok::<_, Infallible>(resp) }
                }
            }),
        );
        let life = limits.connection_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // Past its time the connection is dropped, whatever state it is in.
            let _ = tokio::time::timeout(life, conn).await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The answer to one request (HEAD gets the same head without the body, from hyper).
fn respond<B>(req: &Request<B>, node: &dyn Observed) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let has_body = req
        .headers()
        .get(CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
    if has_body {
        // Never read: the connection closes after this answer.
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "requests carry no body here\n",
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if node.ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/metrics" => {
            let accept = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = TextFormat::from_accept(accept);
            let mut r = text(StatusCode::OK, node.metrics(format));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz, /readyz or /metrics\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    struct Fake {
        ready: AtomicBool,
    }

    impl Observed for Fake {
        fn ready(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
        fn metrics(&self, format: TextFormat) -> String {
            format!("fake_metric 1 {format:?}\n")
        }
    }

    /// A runtime serving a fake node on a free loopback port.
    fn start(limits: HttpLimits) -> (tokio::runtime::Runtime, SocketAddr, Arc<Fake>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(bind("127.0.0.1:0".parse().unwrap())).unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Fake {
            ready: AtomicBool::new(true),
        });
        rt.spawn(serve(listener, fake.clone(), limits));
        (rt, addr, fake)
    }

    /// Sends `raw` and reads until the server closes: the status and the whole answer.
    fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: node\r\n\r\n").as_bytes(),
        )
    }

    #[test]
    fn routes_answer_and_readiness_follows_the_node() {
        let (_rt, addr, fake) = start(HttpLimits::default());
        assert_eq!(get(addr, "/healthz").0, 200);
        assert_eq!(get(addr, "/readyz").0, 200);
        let (code, body) = get(addr, "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("text/plain; version=0.0.4"), "{body}");
        assert!(body.ends_with("fake_metric 1 Prometheus\n"), "{body}");
        let (_, om) = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: n\r\nAccept: application/openmetrics-text\r\n\r\n",
        );
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.ends_with("fake_metric 1 OpenMetrics\n"), "{om}");
        fake.ready.store(false, Ordering::SeqCst);
        let (code, body) = get(addr, "/readyz");
        assert_eq!(code, 503);
        assert!(body.ends_with("draining\n"));
        assert_eq!(get(addr, "/healthz").0, 200, "alive while draining");
        assert_eq!(get(addr, "/nope").0, 404);
        assert_eq!(get(addr, "/metrics?x=1").0, 200, "a query is ignored");
        let (code, head) = exchange(addr, b"HEAD /healthz HTTP/1.1\r\nHost: n\r\n\r\n");
        assert_eq!(code, 200);
        assert!(!head.ends_with("ok\n"), "HEAD has no body: {head}");
    }

    #[test]
    fn bodies_other_methods_and_big_heads_are_refused() {
        let (_rt, addr, _) = start(HttpLimits::default());
        let (code, body) = exchange(addr, b"POST /metrics HTTP/1.1\r\nHost: n\r\n\r\n");
        assert_eq!(code, 405);
        assert!(body.contains("allow: GET, HEAD"), "{body}");
        let post = b"GET /healthz HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(exchange(addr, post).0, 413);
        let chunked =
            b"GET /healthz HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(exchange(addr, chunked).0, 413);
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: n\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(64 << 10)
        );
        let (code, _) = exchange(addr, big.as_bytes());
        assert!(
            code == 431 || code == 0,
            "an oversized head is refused: {code}"
        );
        let many: String = (0..64).map(|i| format!("X-{i}: 1\r\n")).collect();
        let req = format!("GET /healthz HTTP/1.1\r\nHost: n\r\n{many}\r\n");
        let (code, _) = exchange(addr, req.as_bytes());
        assert!(code == 431 || code == 0, "too many headers: {code}");
        // The endpoint still answers afterwards.
        assert_eq!(get(addr, "/healthz").0, 200);
    }

    #[test]
    fn a_silent_client_is_dropped_and_the_connection_cap_holds() {
        let limits = HttpLimits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            connection_timeout: Duration::from_secs(2),
            ..HttpLimits::default()
        };
        let (_rt, addr, _) = start(limits);
        // Two silent clients take both slots.
        let silent: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        // A third is closed at once, without an answer.
        let (code, body) = get(addr, "/healthz");
        assert_eq!((code, body.as_str()), (0, ""), "over the cap");
        // The silent ones are closed by the header timeout, well before 10 s.
        let t = Instant::now();
        for mut s in silent {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // Their slots are free again.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(get(addr, "/healthz").0, 200);
    }
}
