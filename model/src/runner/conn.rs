//! The runner's connection state and reconnect backoff (`spec/protocol.md` §2.3 step 5, §2.6).
//!
//! Owns: [`Link`] (at most one connection: asked for, open, or waiting to reconnect),
//! [`reconnect_delay`] and the fresh envoy key ([`fresh_envoy_key`]). Must not touch: what is
//! sent on a connection or what a frame means (the runner client).
//!
//! Backoff (§2.6): `min(reconnect_base_ms × 2^attempt, reconnect_max_ms)` plus a jitter drawn
//! uniformly from `0..=delay/4` (0–25 %) with the runner's random stream; `attempt` counts the
//! reconnects scheduled since the last `ToEnvoyInit`. The reasons that ask for the maximum backoff
//! use `reconnect_max_ms` plus the same jitter. `ws.going_away` reconnects at once, without
//! counting an attempt.

use crate::config::Timing;
use crate::env::Entropy;
use crate::fact::ConnId;

/// The runner's one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// A `Connect` is outstanding; the simulator answers `on_open` or `on_connect_failed`.
    Connecting,
    /// Open; `ready` once `ToEnvoyInit` arrived on it.
    Open { conn: ConnId, ready: bool },
    /// Waiting for the reconnect timer with this sequence number.
    Backoff { seq: u64 },
    /// No connection and none wanted (the process exited).
    Down,
}

impl Link {
    /// The open connection, if any.
    pub fn open(&self) -> Option<ConnId> {
        match self {
            Link::Open { conn, .. } => Some(*conn),
            _ => None,
        }
    }

    /// The connection that received `ToEnvoyInit`, if any.
    pub fn ready(&self) -> Option<ConnId> {
        match self {
            Link::Open { conn, ready: true } => Some(*conn),
            _ => None,
        }
    }
}

/// How long to wait before reconnect attempt `attempt` (from 0), `max` for the reasons that ask
/// for the maximum backoff.
pub fn reconnect_delay(timing: &Timing, attempt: u32, max: bool, rng: &mut dyn Entropy) -> u64 {
    let delay = if max {
        timing.reconnect_max_ms
    } else {
        let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
        timing.reconnect_base_ms.saturating_mul(factor).min(timing.reconnect_max_ms)
    };
    delay.saturating_add(rng.below(delay / 4 + 1))
}

/// A fresh, UUID-shaped (version 4) envoy key from the runner's random stream: 36 chars of hex
/// digits and `-`, valid per `wire::ids`.
pub fn fresh_envoy_key(rng: &mut dyn Entropy) -> String {
    let high = (rng.next_u64() & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let low = (rng.next_u64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xFFFF,
        high & 0xFFFF,
        low >> 48,
        low & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SplitMix;
    use crate::wire::ids::{check_identifier, ENVOY_KEY_MAX_CHARS, ENVOY_KEY_MIN_CHARS};

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let timing = Timing::default();
        let mut rng = SplitMix(7);
        for attempt in 0..12u32 {
            let base = (1_000u64 << attempt).min(30_000);
            for _ in 0..50 {
                let d = reconnect_delay(&timing, attempt, false, &mut rng);
                assert!(d >= base && d <= base + base / 4, "attempt {attempt}: {d}");
            }
        }
        let d = reconnect_delay(&timing, 0, true, &mut rng);
        assert!((30_000..=37_500).contains(&d));
        // Huge attempts saturate instead of overflowing.
        let d = reconnect_delay(&timing, 200, false, &mut rng);
        assert!((30_000..=37_500).contains(&d));
    }

    #[test]
    fn jitter_covers_its_range() {
        let timing = Timing::default();
        let mut rng = SplitMix(1);
        let draws: Vec<u64> =
            (0..2_000).map(|_| reconnect_delay(&timing, 0, false, &mut rng) - 1_000).collect();
        assert!(draws.iter().any(|d| *d < 25) && draws.iter().any(|d| *d > 225));
    }

    #[test]
    fn envoy_keys_are_fresh_uuids() {
        let mut rng = SplitMix(3);
        let a = fresh_envoy_key(&mut rng);
        let b = fresh_envoy_key(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_eq!(check_identifier(&a, ENVOY_KEY_MIN_CHARS, ENVOY_KEY_MAX_CHARS), Ok(()));
    }
}
