//! The per-address limiter on authentication failures (SPEC §10): slows down whoever guesses
//! signatures or tokens, without touching other senders.
//!
//! Each client address has a bucket of `per_minute` failures that refills at `per_minute` a
//! minute. A failure (a 401 on `/webhooks` or `/admin`) takes one; an address whose bucket is
//! empty is answered 429 before anything is checked, until one failure has refilled. Successes
//! cost nothing, so a sender whose signatures are right is never slowed, and an address that
//! stops failing is whole again within a minute.
//!
//! Memory is bounded whatever the number of addresses: at most [`MAX_ADDRESSES`] buckets. A full
//! table first forgets the buckets that have refilled (they hold nothing), then the one that
//! failed longest ago — so a flood of addresses can only buy itself fresh budgets (an attacker
//! with that many addresses is not slowed by per-address limits anyway), never lock out an
//! address that did not fail. IPv6 addresses count per /64, the block one host is usually given,
//! so one host cannot rotate through its own addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Buckets kept at most (about 40 bytes each).
pub const MAX_ADDRESSES: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, as of `at_ms`.
    left: f64,
    at_ms: i64,
}

#[derive(Debug)]
pub struct AuthFailures {
    per_minute: u32,
    capacity: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

impl AuthFailures {
    /// `per_minute = 0` turns the limiter off.
    pub fn new(per_minute: u32) -> AuthFailures {
        Self::with_capacity(per_minute, MAX_ADDRESSES)
    }

    pub fn with_capacity(per_minute: u32, capacity: usize) -> AuthFailures {
        AuthFailures {
            per_minute,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// `Some(wait)` when `addr` has used up its failures: answer 429 with `Retry-After: wait`.
    pub fn blocked(&self, addr: IpAddr, now_ms: i64) -> Option<Duration> {
        if self.per_minute == 0 {
            return None;
        }
        let b = self.buckets.get(&key(addr))?;
        let left = self.refilled(*b, now_ms);
        if left >= 1.0 {
            return None;
        }
        let ms = ((1.0 - left) * self.ms_per_failure()).ceil() as u64;
        Some(Duration::from_millis(ms.max(1)))
    }

    /// Counts one authentication failure from `addr`.
    pub fn failed(&mut self, addr: IpAddr, now_ms: i64) {
        if self.per_minute == 0 {
            return;
        }
        let k = key(addr);
        if !self.buckets.contains_key(&k) && self.buckets.len() >= self.capacity {
            self.make_room(now_ms);
        }
        let (full, per) = (self.per_minute as f64, self.ms_per_failure());
        let b = self.buckets.entry(k).or_insert(Bucket {
            left: full,
            at_ms: now_ms,
        });
        let left = refill(*b, now_ms, full, per);
        *b = Bucket {
            left: (left - 1.0).max(0.0),
            at_ms: now_ms,
        };
    }

    /// Buckets held now (for tests and the bound).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn make_room(&mut self, now_ms: i64) {
        let full = self.per_minute as f64;
        let per = self.ms_per_failure();
        self.buckets
            .retain(|_, b| refill(*b, now_ms, full, per) < full);
        if self.buckets.len() >= self.capacity {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at_ms)
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&oldest);
            }
        }
    }

    fn refilled(&self, b: Bucket, now_ms: i64) -> f64 {
        refill(b, now_ms, self.per_minute as f64, self.ms_per_failure())
    }

    fn ms_per_failure(&self) -> f64 {
        60_000.0 / self.per_minute as f64
    }
}

fn refill(b: Bucket, now_ms: i64, full: f64, ms_per_failure: f64) -> f64 {
    let elapsed = (now_ms - b.at_ms).max(0) as f64;
    (b.left + elapsed / ms_per_failure).min(full)
}

/// IPv4 as is (also when mapped into IPv6); IPv6 by its /64.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_and_free_again_once_one_refills() {
        let mut l = AuthFailures::new(3);
        let a = ip("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(l.blocked(a, 0), None);
            l.failed(a, 0);
        }
        let wait = l.blocked(a, 0).expect("blocked after 3 failures");
        assert_eq!(
            wait,
            Duration::from_secs(20),
            "one failure refills in 60 s / 3"
        );
        assert!(l.blocked(a, 19_999).is_some());
        assert_eq!(l.blocked(a, 20_000), None);
    }

    #[test]
    fn one_address_failing_never_blocks_another() {
        let mut l = AuthFailures::new(2);
        for _ in 0..10 {
            l.failed(ip("203.0.113.7"), 0);
        }
        assert!(l.blocked(ip("203.0.113.7"), 0).is_some());
        assert_eq!(l.blocked(ip("203.0.113.8"), 0), None);
        assert_eq!(l.blocked(ip("2001:db8::1"), 0), None);
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_budget_and_mapped_ipv4_counts_as_ipv4() {
        let mut l = AuthFailures::new(2);
        l.failed(ip("2001:db8:1:2::1"), 0);
        l.failed(ip("2001:db8:1:2::ffff:1"), 0);
        assert!(l.blocked(ip("2001:db8:1:2:dead::beef"), 0).is_some());
        assert_eq!(l.blocked(ip("2001:db8:1:3::1"), 0), None);
        l.failed(ip("::ffff:198.51.100.1"), 0);
        l.failed(ip("198.51.100.1"), 0);
        assert!(l.blocked(ip("198.51.100.1"), 0).is_some());
    }

    #[test]
    fn memory_stays_bounded_whatever_the_number_of_addresses() {
        let mut l = AuthFailures::with_capacity(5, 100);
        for i in 0..10_000u32 {
            l.failed(IpAddr::V4(i.into()), i as i64);
        }
        assert!(l.len() <= 100, "{} buckets", l.len());
    }

    #[test]
    fn a_full_table_forgets_the_oldest_failure_first_so_a_recent_offender_stays_blocked() {
        let mut l = AuthFailures::with_capacity(1, 3);
        l.failed(ip("10.0.0.1"), 0);
        l.failed(ip("10.0.0.2"), 1);
        l.failed(ip("10.0.0.3"), 2);
        l.failed(ip("10.0.0.4"), 3);
        assert_eq!(
            l.blocked(ip("10.0.0.1"), 3),
            None,
            "the oldest was forgotten"
        );
        assert!(l.blocked(ip("10.0.0.3"), 3).is_some());
        assert!(l.blocked(ip("10.0.0.4"), 3).is_some());
    }

    #[test]
    fn zero_per_minute_turns_the_limiter_off() {
        let mut l = AuthFailures::new(0);
        for _ in 0..100 {
            l.failed(ip("203.0.113.7"), 0);
        }
        assert_eq!(l.blocked(ip("203.0.113.7"), 0), None);
        assert!(l.is_empty());
    }
}
