//! The root seed of a run and its named random sub-streams; the seed space (ranges and shards).
//!
//! Owns: [`SeedStreams`] (one seed, any number of named, independent `ChaCha8Rng` streams),
//! [`Draw`] (uniform ranges, chances and weighted choice over any `RngCore`, written out here so
//! the values never depend on a `rand` version's sampling algorithm), [`StreamEntropy`] (the
//! adapter that hands a stream to the model as `pegsim_model::env::Entropy`), the stable hash
//! [`Fnv64`] used wherever pegsim needs a hash that is the same on every build and platform, and
//! the seed space: [`SeedRange`] (`A..B`, `A..=B`, `N`) and [`Shard`] (`K/N`).
//!
//! It must not: keep global state, read a clock, or use `DefaultHasher` (its output may change
//! between Rust releases).
//!
//! How a stream is derived from `(seed, name)`: the 32-byte ChaCha key is four SplitMix64 outputs
//! of the seed, and the ChaCha *stream number* is the FNV-1a 64 hash of the name. Two names give
//! two different ChaCha streams of the same key, so the streams are independent by construction,
//! and taking, adding or removing one stream never shifts another (there is no shared counter).
//! Choices written down here:
//! - `A..B` is half-open (Rust's meaning), `A..=B` inclusive, a lone `N` is the one seed `N`.
//! - Shard `K/N` (1-based `K`) owns seed `s` iff `s % N == K - 1`.

use std::fmt;
use std::str::FromStr;

use pegsim_model::env::Entropy;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// FNV-1a, 64 bits: a stable, streaming hash (the same value on every build and platform).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv64(u64);

impl Fnv64 {
    /// The FNV-1a 64 offset basis.
    pub const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    /// The FNV-1a 64 prime.
    pub const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A hasher with nothing hashed yet.
    pub fn new() -> Self {
        Fnv64(Self::OFFSET_BASIS)
    }

    /// Hash more bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// The hash of everything written so far.
    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The hash of one byte string.
    pub fn hash(bytes: &[u8]) -> u64 {
        let mut h = Fnv64::new();
        h.write(bytes);
        h.finish()
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

/// SplitMix64: one step from `state`, returning the new state and the output.
fn splitmix64(state: u64) -> (u64, u64) {
    let state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (state, z ^ (z >> 31))
}

/// The root seed of one run and the named sub-streams derived from it.
///
/// Stream names are dotted paths that say who uses them: `scenario.topology.edge_nodes`,
/// `faults.partition`, `node.runner-3`, `workload`. The same `(seed, name)` always gives the same
/// stream; different names give independent streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedStreams {
    seed: u64,
    key: [u8; 32],
}

impl SeedStreams {
    /// The streams of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut key = [0u8; 32];
        let mut state = seed;
        for chunk in key.chunks_exact_mut(8) {
            let (next, out) = splitmix64(state);
            state = next;
            chunk.copy_from_slice(&out.to_le_bytes());
        }
        SeedStreams { seed, key }
    }

    /// The root seed (also the seed of the madsim runtime).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The stream called `name`: a fresh generator at its start, the same for the same
    /// `(seed, name)` however many other streams were taken before.
    pub fn stream(&self, name: &str) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.key);
        rng.set_stream(Fnv64::hash(name.as_bytes()));
        rng
    }

    /// The stream called `name`, as the model's [`Entropy`].
    pub fn entropy(&self, name: &str) -> StreamEntropy {
        StreamEntropy(self.stream(name))
    }
}

/// Uniform values, chances and weighted choices from any random source, with sampling written out
/// here (stable across `rand` versions).
pub trait Draw: RngCore {
    /// Uniform in `0..n`, without modulo bias (`0` when `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Reject the top partial copy of `0..n` in the u64 space.
        let zone = u64::MAX - (u64::MAX % n + 1) % n;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return x % n;
            }
        }
    }

    /// Uniform in `lo..=hi` (the bounds in either order).
    fn uniform_u64(&mut self, lo: u64, hi: u64) -> u64 {
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        match (hi - lo).checked_add(1) {
            Some(width) => lo + self.below(width),
            None => self.next_u64(),
        }
    }

    /// Uniform in `[0, 1)`, with 53 bits.
    fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi]` (the bounds in either order; `lo` when they are equal).
    fn uniform_f64(&mut self, lo: f64, hi: f64) -> f64 {
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        lo + (hi - lo) * self.unit_f64()
    }

    /// `true` with probability `p` (`p <= 0` never, `p >= 1` always; one draw either way).
    fn chance(&mut self, p: f64) -> bool {
        self.unit_f64() < p
    }

    /// An index drawn with probability proportional to `weights[i]`; `None` when every weight is
    /// zero (or there are none).
    fn weighted_index(&mut self, weights: &[u64]) -> Option<usize> {
        let total = weights.iter().try_fold(0u64, |acc, w| acc.checked_add(*w))?;
        if total == 0 {
            return None;
        }
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return Some(i);
            }
            x -= w;
        }
        None
    }

    /// One of `items`, drawn with probability proportional to its weight; `None` when every
    /// weight is zero.
    fn weighted<'a, T>(&mut self, items: &'a [(T, u64)]) -> Option<&'a T> {
        let weights: Vec<u64> = items.iter().map(|(_, w)| *w).collect();
        self.weighted_index(&weights).and_then(|i| items.get(i)).map(|(t, _)| t)
    }
}

impl<R: RngCore + ?Sized> Draw for R {}

/// A stream handed to the model as its [`Entropy`].
#[derive(Clone, Debug)]
pub struct StreamEntropy(pub ChaCha8Rng);

impl Entropy for StreamEntropy {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        Draw::below(&mut self.0, n)
    }
}

/// A set of seeds, written `A..B` (half-open), `A..=B` (inclusive) or `N` (one seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRange {
    /// First seed.
    pub start: u64,
    /// One past the last seed (`None` when the range ends at `u64::MAX` inclusive).
    pub end: Option<u64>,
}

/// A seed range that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeedRangeError {
    #[error("seed range `{0}` is not `A..B`, `A..=B` or `N` with unsigned integers")]
    Syntax(String),
    #[error("seed range `{0}` is empty (its end is not above its start)")]
    Empty(String),
}

impl SeedRange {
    /// The seeds `start..end`.
    pub fn new(start: u64, end: u64) -> Self {
        SeedRange { start, end: Some(end) }
    }

    /// Number of seeds in the range (saturating at `u64::MAX`).
    pub fn len(&self) -> u64 {
        match self.end {
            Some(end) => end.saturating_sub(self.start),
            None => (u64::MAX - self.start).saturating_add(1),
        }
    }

    /// Whether the range holds no seed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seeds, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> {
        let start = self.start;
        let count = self.len();
        (0..count).map(move |i| start + i)
    }

    /// The seeds of this range that belong to `shard`, in increasing order.
    pub fn iter_shard(&self, shard: Shard) -> impl Iterator<Item = u64> {
        self.iter().filter(move |s| shard.owns(*s))
    }
}

impl FromStr for SeedRange {
    type Err = SeedRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || SeedRangeError::Syntax(s.to_string());
        let num = |t: &str| t.trim().parse::<u64>().map_err(|_| syntax());
        let range = if let Some((a, b)) = s.split_once("..=") {
            let (start, last) = (num(a)?, num(b)?);
            if last < start {
                return Err(SeedRangeError::Empty(s.to_string()));
            }
            SeedRange { start, end: last.checked_add(1) }
        } else if let Some((a, b)) = s.split_once("..") {
            let (start, end) = (num(a)?, num(b)?);
            SeedRange { start, end: Some(end) }
        } else {
            let n = num(s)?;
            SeedRange { start: n, end: n.checked_add(1) }
        };
        if range.is_empty() {
            return Err(SeedRangeError::Empty(s.to_string()));
        }
        Ok(range)
    }
}

impl fmt::Display for SeedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "{}..{}", self.start, end),
            None => write!(f, "{}..={}", self.start, u64::MAX),
        }
    }
}

/// Shard `index` of `count` (1-based), written `K/N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// `K`, in `1..=count`.
    pub index: u64,
    /// `N`, at least 1.
    pub count: u64,
}

/// A shard that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("shard `{0}` is not `K/N` with 1 <= K <= N")]
pub struct ShardError(pub String);

impl Shard {
    /// The single shard that owns every seed.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether seed `seed` belongs to this shard: `seed % N == K - 1`.
    pub fn owns(&self, seed: u64) -> bool {
        self.count > 0 && seed % self.count == self.index - 1
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ShardError(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let index: u64 = k.trim().parse().map_err(|_| err())?;
        let count: u64 = n.trim().parse().map_err(|_| err())?;
        if index == 0 || count == 0 || index > count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Serde helpers for a `u64` in TOML, whose integers are `i64`: written as an integer when it
/// fits, else as a decimal string; read back from either. Use with `#[serde(with = "…")]`.
pub mod toml_u64 {
    use serde::de::{Deserializer, Error};
    use serde::Serializer;

    /// Write `v` as an integer when it fits in `i64`, else as a decimal string.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*v) {
            Ok(i) => s.serialize_i64(i),
            Err(_) => s.serialize_str(&v.to_string()),
        }
    }

    struct U64Visitor;

    impl serde::de::Visitor<'_> for U64Visitor {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an unsigned 64-bit integer (or its decimal string)")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<u64, E> {
            v.parse().map_err(|_| E::custom(format!("`{v}` is not an unsigned 64-bit integer")))
        }
    }

    /// Read a non-negative integer or a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(U64Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    fn take(rng: &mut ChaCha8Rng, n: usize) -> Vec<u64> {
        (0..n).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn fnv_matches_published_vectors() {
        // Test vectors of the FNV reference (draft-eastlake-fnv, FNV-1a 64).
        assert_eq!(Fnv64::hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv64::hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv64::hash(b"foobar"), 0x8594_4171_f739_67e8);
        let mut h = Fnv64::new();
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.finish(), Fnv64::hash(b"foobar"));
    }

    #[test]
    fn a_stream_is_a_function_of_seed_and_name() {
        let a = SeedStreams::new(7);
        let b = SeedStreams::new(7);
        assert_eq!(take(&mut a.stream("workload"), 8), take(&mut b.stream("workload"), 8));
        assert_ne!(take(&mut a.stream("workload"), 8), take(&mut a.stream("faults"), 8));
        assert_ne!(
            take(&mut a.stream("workload"), 8),
            take(&mut SeedStreams::new(8).stream("workload"), 8)
        );
    }

    #[test]
    fn streams_are_independent_of_each_others_use() {
        let streams = SeedStreams::new(99);
        let alone = take(&mut streams.stream("node.runner-1"), 16);
        // Take other streams, draw from them heavily, and take a new stream in between.
        let mut other = streams.stream("faults.partition");
        let _ = take(&mut other, 1000);
        let mut extra = streams.stream("a.stream.added.later");
        let _ = take(&mut extra, 10);
        let mut again = streams.stream("node.runner-1");
        let _ = take(&mut other, 5);
        assert_eq!(take(&mut again, 16), alone);
    }

    #[test]
    fn seed_ranges_parse_and_reject() {
        assert_eq!("3..7".parse::<SeedRange>().unwrap().iter().collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert_eq!("3..=5".parse::<SeedRange>().unwrap().iter().collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!("9".parse::<SeedRange>().unwrap().iter().collect::<Vec<_>>(), [9]);
        assert_eq!("0..=18446744073709551615".parse::<SeedRange>().unwrap().end, None);
        assert!(matches!("5..5".parse::<SeedRange>(), Err(SeedRangeError::Empty(_))));
        assert!(matches!("5..=4".parse::<SeedRange>(), Err(SeedRangeError::Empty(_))));
        for bad in ["", "a..b", "-1..3", "1...3", "1..2..3", "x"] {
            assert!(matches!(bad.parse::<SeedRange>(), Err(SeedRangeError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn shards_parse_and_reject() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn weighted_choice_skips_zero_weights_and_handles_none() {
        let mut rng = SeedStreams::new(1).stream("w");
        assert_eq!(rng.weighted_index(&[]), None);
        assert_eq!(rng.weighted_index(&[0, 0]), None);
        for _ in 0..200 {
            assert_eq!(rng.weighted_index(&[0, 5, 0]), Some(1));
        }
        let items = [("a", 0), ("b", 3)];
        assert_eq!(rng.weighted(&items), Some(&"b"));
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let mut rng = SeedStreams::new(2).stream("w");
        let mut counts = [0u32; 3];
        let n = 30_000;
        for _ in 0..n {
            counts[rng.weighted_index(&[1, 2, 7]).unwrap()] += 1;
        }
        for (count, share) in counts.iter().zip([0.1, 0.2, 0.7]) {
            let got = f64::from(*count) / f64::from(n);
            assert!((got - share).abs() < 0.02, "{counts:?}");
        }
    }

    proptest! {
        #[test]
        fn uniform_stays_in_bounds(seed in any::<u64>(), lo in any::<u64>(), hi in any::<u64>()) {
            let mut rng = SeedStreams::new(seed).stream("u");
            let x = rng.uniform_u64(lo, hi);
            prop_assert!(x >= lo.min(hi) && x <= lo.max(hi));
            let f = rng.uniform_f64(lo as f64, hi as f64);
            prop_assert!(f >= (lo.min(hi)) as f64 && f <= (lo.max(hi)) as f64);
            prop_assert!(rng.below(0) == 0);
        }

        #[test]
        fn shards_cover_every_seed_exactly_once(
            start in 0u64..1_000_000, len in 1u64..300, count in 1u64..9
        ) {
            let range = SeedRange::new(start, start + len);
            let mut seen: Vec<u64> = (1..=count)
                .flat_map(|index| range.iter_shard(Shard { index, count }).collect::<Vec<_>>())
                .collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, range.iter().collect::<Vec<_>>());
        }
    }
}
