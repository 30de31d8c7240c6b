//! Connection limits beside the broker-wide `max.connections`: per client IP
//! (`max.connections.per.ip`, with `max.connections.per.ip.overrides`) and per listener
//! (Kafka's `listener.name.<name>.max.connections`), so that one host, or the
//! clients of one listener, cannot take every connection the broker allows.
//!
//! A connection over a limit is closed as soon as it is accepted, before anything is
//! read from it (Kafka closes one over the per-IP limit the same way; for a listener
//! over its limit Kafka stops accepting instead, which leaves the client waiting in
//! the kernel's backlog rather than told at once).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The limits and the connections they count.
#[derive(Debug)]
pub struct ConnectionLimits {
    per_ip: usize,
    per_ip_overrides: BTreeMap<IpAddr, usize>,
    /// By listener index; `None`: no limit of its own.
    per_listener: Vec<Option<usize>>,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    by_ip: HashMap<IpAddr, usize>,
    by_listener: HashMap<usize, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its IP already has this many connections.
    PerIp(usize),
    /// Its listener already has this many connections.
    Listener(usize),
}

/// A connection's place in the counts, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    listener: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
        if let Some(n) = open.by_listener.get_mut(&self.listener) {
            *n = n.saturating_sub(1);
        }
    }
}

impl ConnectionLimits {
    pub fn new(
        per_ip: usize,
        per_ip_overrides: BTreeMap<IpAddr, usize>,
        per_listener: Vec<Option<usize>>,
    ) -> Self {
        Self {
            per_ip,
            per_ip_overrides,
            per_listener,
            open: Mutex::new(Open::default()),
        }
    }

    /// Counts a new connection from `ip` on listener `listener`, unless a limit is
    /// reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, listener: usize) -> Result<Slot, Refused> {
        let ip_limit = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.per_ip);
        let listener_limit = self.per_listener.get(listener).copied().flatten();
        let mut open = self.open.lock();
        if open.by_ip.get(&ip).copied().unwrap_or(0) >= ip_limit {
            return Err(Refused::PerIp(ip_limit));
        }
        if let Some(limit) = listener_limit {
            if open.by_listener.get(&listener).copied().unwrap_or(0) >= limit {
                return Err(Refused::Listener(limit));
            }
        }
        *open.by_ip.entry(ip).or_default() += 1;
        *open.by_listener.entry(listener).or_default() += 1;
        Ok(Slot {
            limits: self.clone(),
            ip,
            listener,
        })
    }
}

/// Parses `max.connections.per.ip.overrides`: `ip:count,...` (Kafka also takes host
/// names there; Sluice takes addresses, so nothing is resolved at start). An IPv6
/// address is written in brackets: `[::1]:50`.
pub fn parse_ip_overrides(list: &str) -> Result<BTreeMap<IpAddr, usize>, String> {
    let mut out = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("{entry:?}: expected <ip>:<count>"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("{entry:?}: {host:?} is not an IP address"))?;
        let count: usize = count
            .parse()
            .map_err(|_| format!("{entry:?}: {count:?} is not a count"))?;
        out.insert(ip, count);
    }
    Ok(out)
}

/// Parses per-listener limits, `NAME=count,...` (listener names as in `--listeners`,
/// any case).
pub fn parse_listener_limits(list: &str) -> Result<BTreeMap<String, usize>, String> {
    let mut out = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, count) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?}: expected <listener>=<count>"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("{entry:?}: {count:?} is not a count"))?;
        out.insert(name.trim().to_ascii_uppercase(), count);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limits_with_overrides_and_per_listener_limits() {
        let overrides = parse_ip_overrides("127.0.0.2:3, [::1]:1").unwrap();
        let limits = Arc::new(ConnectionLimits::new(2, overrides, vec![None, Some(1)]));
        let a = limits.admit(ip("127.0.0.1"), 0).unwrap();
        let b = limits.admit(ip("127.0.0.1"), 0).unwrap();
        assert_eq!(
            limits.admit(ip("127.0.0.1"), 0).unwrap_err(),
            Refused::PerIp(2)
        );
        let held: Vec<Slot> = (0..3)
            .map(|_| limits.admit(ip("127.0.0.2"), 0).unwrap())
            .collect();
        assert_eq!(
            limits.admit(ip("127.0.0.2"), 0).unwrap_err(),
            Refused::PerIp(3)
        );
        assert!(limits.admit(ip("::1"), 0).is_ok_and(|s| {
            drop(s);
            true
        }));
        // Listener 1 takes one connection, whatever the IP.
        let l = limits.admit(ip("10.0.0.1"), 1).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.2"), 1).unwrap_err(),
            Refused::Listener(1)
        );
        drop(l);
        assert!(limits.admit(ip("10.0.0.2"), 1).is_ok());
        // Closing a connection frees its IP's slot.
        drop(a);
        let _c = limits.admit(ip("127.0.0.1"), 0).unwrap();
        drop((b, held));
        assert!(
            limits.open.lock().by_ip.len() == 1,
            "only 127.0.0.1's _c is left"
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(parse_ip_overrides("localhost:5").is_err());
        assert!(parse_ip_overrides("127.0.0.1").is_err());
        assert!(parse_ip_overrides("127.0.0.1:x").is_err());
        assert_eq!(parse_ip_overrides("").unwrap().len(), 0);
        assert!(parse_listener_limits("EXTERNAL").is_err());
        assert_eq!(
            parse_listener_limits("external=5").unwrap().get("EXTERNAL"),
            Some(&5)
        );
    }
}
