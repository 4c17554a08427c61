//! Per-source credit for connections that never say `hello` (issue 11).
//!
//! Every source address (an IPv4 address, or an IPv6 /64) has a bucket of credit that
//! refills at a steady rate. A connection that fails before `hello` succeeds (garbage,
//! a wrong token, a timeout, a failed handshake) costs its source [`FAIL_COST`]; one
//! closed to make room for a newer stranger costs 1; one that says `hello` with the token
//! costs nothing. While a source cannot afford another failure, the node ignores its new connections
//! before any retry packet or TLS work, so a client that reconnects as fast as it is
//! dropped costs the node a hash lookup per packet instead of a handshake.
//!
//! Only sources whose address QUIC retry has validated are charged, so a spoofed flood
//! cannot spend an honest client's credit. Connections already open are never touched.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Credit a failed connection costs.
pub const FAIL_COST: u32 = 8;
/// Credit a connection closed to make room for a newer stranger costs.
pub const EVICT_COST: u32 = 1;
/// Sources tracked at once; when full, sources with full credit are forgotten first.
const MAX_SOURCES: usize = 1 << 16;

/// Credit per source: `burst` at most, one more every `refill`. A burst of 0 turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceCredit {
    /// Credit a source starts with and can save up.
    pub burst: u32,
    /// Time to earn one unit back.
    pub refill: Duration,
}

impl Default for SourceCredit {
    fn default() -> Self {
        // A source may fail 8 times in a row, then about once every 2 s.
        Self {
            burst: 64,
            refill: Duration::from_millis(250),
        }
    }
}

struct Bucket {
    credit: f64,
    at: Instant,
}

/// The buckets of every source seen lately.
pub struct Sources {
    cfg: SourceCredit,
    buckets: HashMap<IpAddr, Bucket>,
}

/// The key a source is counted under: IPv4 addresses one by one, IPv6 by /64 (one host
/// usually holds a whole /64).
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A bucket's credit at `now`, with what it earned since it was last charged.
fn credit(cfg: &SourceCredit, b: &Bucket, now: Instant) -> f64 {
    let earned =
        now.saturating_duration_since(b.at).as_secs_f64() / cfg.refill.as_secs_f64().max(1e-9);
    (b.credit + earned).min(f64::from(cfg.burst))
}

impl Sources {
    /// No source seen yet.
    pub fn new(cfg: SourceCredit) -> Self {
        Self {
            cfg,
            buckets: HashMap::new(),
        }
    }

    /// Whether a new connection from `ip` may go on: the source can afford to fail it.
    pub fn allows(&self, ip: IpAddr, now: Instant) -> bool {
        if self.cfg.burst == 0 {
            return true;
        }
        self.buckets
            .get(&key(ip))
            .is_none_or(|b| credit(&self.cfg, b, now) >= f64::from(FAIL_COST.min(self.cfg.burst)))
    }

    /// Spends `cost` of `ip`'s credit (down to zero).
    pub fn charge(&mut self, ip: IpAddr, cost: u32, now: Instant) {
        if self.cfg.burst == 0 || cost == 0 {
            return;
        }
        let k = key(ip);
        if !self.buckets.contains_key(&k) && self.buckets.len() >= MAX_SOURCES {
            let full = f64::from(self.cfg.burst);
            let cfg = self.cfg;
            self.buckets.retain(|_, b| credit(&cfg, b, now) < full);
            if self.buckets.len() >= MAX_SOURCES {
                // Tens of thousands of validated sources, all failing: start over rather
                // than turn new sources away.
                self.buckets.clear();
            }
        }
        let burst = f64::from(self.cfg.burst);
        let b = self.buckets.entry(k).or_insert(Bucket {
            credit: burst,
            at: now,
        });
        b.credit = (credit(&self.cfg, b, now) - f64::from(cost)).max(0.0);
        b.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_that_keeps_failing_is_shut_out_then_earns_its_way_back() {
        let cfg = SourceCredit {
            burst: 16,
            refill: Duration::from_millis(100),
        };
        let mut s = Sources::new(cfg);
        let t = Instant::now();
        let bad = ip("127.0.0.2");
        for _ in 0..2 {
            assert!(s.allows(bad, t));
            s.charge(bad, FAIL_COST, t);
        }
        assert!(!s.allows(bad, t));
        // Other sources, and the same source on other ports, are counted apart / alike.
        assert!(s.allows(ip("127.0.0.1"), t));
        assert!(!s.allows(ip("::ffff:127.0.0.2"), t));
        // Back once it has earned a failure's worth again.
        assert!(!s.allows(bad, t + Duration::from_millis(700)));
        assert!(s.allows(bad, t + Duration::from_millis(800)));
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let mut s = Sources::new(SourceCredit {
            burst: 8,
            refill: Duration::from_secs(10),
        });
        let t = Instant::now();
        s.charge(ip("2001:db8:1:2::1"), FAIL_COST, t);
        assert!(!s.allows(ip("2001:db8:1:2::ffff"), t));
        assert!(s.allows(ip("2001:db8:1:3::1"), t));
    }

    #[test]
    fn evictions_cost_little_and_a_zero_burst_turns_it_off() {
        let mut s = Sources::new(SourceCredit::default());
        let t = Instant::now();
        let a = ip("10.0.0.1");
        // 56 evictions leave a failure's worth of credit.
        for _ in 0..56 {
            s.charge(a, EVICT_COST, t);
        }
        assert!(s.allows(a, t));
        s.charge(a, EVICT_COST, t);
        assert!(!s.allows(a, t));
        let mut off = Sources::new(SourceCredit {
            burst: 0,
            refill: Duration::from_secs(1),
        });
        for _ in 0..100 {
            off.charge(a, FAIL_COST, t);
        }
        assert!(off.allows(a, t));
    }
}
