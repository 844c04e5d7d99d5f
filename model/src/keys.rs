//! The store's key layout (`spec/protocol.md` §1.8): one function per logical key, built from an
//! order-preserving tuple encoding, and the identifiers those keys are made of.
//!
//! Encoding of a tuple element (FoundationDB-like, so that byte order equals tuple order):
//! - a string: `0x02`, its bytes with every `0x00` written as `0x00 0xFF`, then `0x00`;
//! - a `u32` / `u64`: `0x15`, 8 bytes big-endian;
//! - an `i64`: `0x15`, 8 bytes big-endian of the value with its sign bit flipped.
//!
//! The actor keyspace is special: `actor_kv_key(A, k)` is `actor_kv_prefix(A) ++ k` with the
//! user key appended raw, so that store order, ranges and byte prefixes are exactly the KV
//! semantics of `spec/preload.md` §0 (keys containing `0x00` and `0xFF` included).
//!
//! This module owns only names and encodings; the records stored under the keys live in
//! `records`.

use std::fmt;

use crate::store::{strinc, KeyRange};

/// An actor id, as carried on the wire (`Id`, a string).
pub type ActorId = String;

/// A runner identity `R = (namespace, envoy_key)`.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RunnerId {
    pub namespace: String,
    pub envoy_key: String,
}

impl RunnerId {
    pub fn new(namespace: impl Into<String>, envoy_key: impl Into<String>) -> Self {
        RunnerId { namespace: namespace.into(), envoy_key: envoy_key.into() }
    }
}

impl fmt::Display for RunnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.envoy_key)
    }
}

/// Builder of one tuple-encoded key.
#[derive(Clone, Debug, Default)]
pub struct Tuple(Vec<u8>);

impl Tuple {
    pub fn new() -> Self {
        Tuple(Vec::new())
    }

    /// Append a string element.
    pub fn s(mut self, s: &str) -> Self {
        self.0.push(0x02);
        for b in s.as_bytes() {
            self.0.push(*b);
            if *b == 0 {
                self.0.push(0xFF);
            }
        }
        self.0.push(0x00);
        self
    }

    /// Append an unsigned integer element.
    pub fn u(mut self, v: u64) -> Self {
        self.0.push(0x15);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Append a signed integer element (order-preserving across the sign).
    pub fn i(mut self, v: i64) -> Self {
        self.0.push(0x15);
        self.0.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
        self
    }

    /// Append raw bytes (only for a final element whose order is the bytes' own order).
    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Reads tuple elements back from a key, for keys found by range reads.
#[derive(Clone, Debug)]
pub struct TupleReader<'a> {
    rest: &'a [u8],
}

/// A key that does not have the expected tuple shape (an internal error: the model wrote it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed store key: {0}")]
pub struct MalformedKey(pub &'static str);

impl<'a> TupleReader<'a> {
    pub fn new(key: &'a [u8]) -> Self {
        TupleReader { rest: key }
    }

    /// Skip a known prefix.
    pub fn skip(mut self, prefix: &[u8]) -> Result<Self, MalformedKey> {
        self.rest = self.rest.strip_prefix(prefix).ok_or(MalformedKey("prefix mismatch"))?;
        Ok(self)
    }

    /// Read a string element.
    pub fn s(&mut self) -> Result<String, MalformedKey> {
        let (tag, mut rest) = self.rest.split_first().ok_or(MalformedKey("missing string"))?;
        if *tag != 0x02 {
            return Err(MalformedKey("expected string tag"));
        }
        let mut out = Vec::new();
        loop {
            let (b, r) = rest.split_first().ok_or(MalformedKey("unterminated string"))?;
            rest = r;
            if *b == 0 {
                if rest.first() == Some(&0xFF) {
                    out.push(0);
                    rest = &rest[1..];
                    continue;
                }
                break;
            }
            out.push(*b);
        }
        self.rest = rest;
        String::from_utf8(out).map_err(|_| MalformedKey("string is not UTF-8"))
    }

    /// Read an unsigned integer element.
    pub fn u(&mut self) -> Result<u64, MalformedKey> {
        let raw = self.int()?;
        Ok(raw)
    }

    /// Read a signed integer element.
    pub fn i(&mut self) -> Result<i64, MalformedKey> {
        Ok((self.int()? ^ (1 << 63)) as i64)
    }

    fn int(&mut self) -> Result<u64, MalformedKey> {
        if self.rest.len() < 9 || self.rest[0] != 0x15 {
            return Err(MalformedKey("expected integer"));
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.rest[1..9]);
        self.rest = &self.rest[9..];
        Ok(u64::from_be_bytes(b))
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

fn runner(r: &RunnerId) -> Tuple {
    Tuple::new().s("runner").s(&r.namespace).s(&r.envoy_key)
}

/// `runner/R/info`: the runner record (`records::RunnerInfo`).
pub fn runner_info(r: &RunnerId) -> Vec<u8> {
    runner(r).s("info").into_bytes()
}

/// `runner/R/metadata/chunk_k`.
pub fn runner_metadata_chunk(r: &RunnerId, k: u32) -> Vec<u8> {
    runner(r).s("metadata").u(k as u64).into_bytes()
}

/// Every metadata chunk of `R`.
pub fn runner_metadata_range(r: &RunnerId) -> KeyRange {
    KeyRange::prefix(&runner(r).s("metadata").into_bytes())
}

/// `runner/R/alloc/A`: the generation of `A` allocated on `R`.
pub fn runner_alloc(r: &RunnerId, actor: &str) -> Vec<u8> {
    runner(r).s("alloc").s(actor).into_bytes()
}

/// Prefix of every `runner/R/alloc/*` key.
pub fn runner_alloc_prefix(r: &RunnerId) -> Vec<u8> {
    runner(r).s("alloc").into_bytes()
}

/// `runner/R/cmd/A/g/i`: a stored command (`versioned::ActorCommandKeyData`, embedded version).
pub fn runner_cmd(r: &RunnerId, actor: &str, generation: u32, index: i64) -> Vec<u8> {
    runner(r).s("cmd").s(actor).u(generation as u64).i(index).into_bytes()
}

/// Prefix of every command key of `R`.
pub fn runner_cmd_prefix(r: &RunnerId) -> Vec<u8> {
    runner(r).s("cmd").into_bytes()
}

/// Every command key of `(R, A, g)`.
pub fn runner_cmd_generation(r: &RunnerId, actor: &str, generation: u32) -> KeyRange {
    KeyRange::prefix(&runner(r).s("cmd").s(actor).u(generation as u64).into_bytes())
}

/// Every command key `(R, A, g, i)` with `i <= k`.
pub fn runner_cmd_upto(r: &RunnerId, actor: &str, generation: u32, k: i64) -> KeyRange {
    let start = runner(r).s("cmd").s(actor).u(generation as u64).into_bytes();
    let end = match k.checked_add(1) {
        Some(next) => runner_cmd(r, actor, generation, next),
        None => strinc(&start).unwrap_or_default(),
    };
    KeyRange::new(start, end)
}

/// Decode `(A, g, i)` from a command key of `R`.
pub fn parse_runner_cmd(r: &RunnerId, key: &[u8]) -> Result<(ActorId, u32, i64), MalformedKey> {
    let mut t = TupleReader::new(key).skip(&runner_cmd_prefix(r))?;
    let actor = t.s()?;
    let g = u32::try_from(t.u()?).map_err(|_| MalformedKey("generation out of range"))?;
    let i = t.i()?;
    Ok((actor, g, i))
}

/// `registry/ns/envoy_key`: present while the registry knows identity `R` (written by every
/// registration, deleted at retirement), so the registry can enumerate runners.
pub fn registry_entry(r: &RunnerId) -> Vec<u8> {
    Tuple::new().s("registry").s(&r.namespace).s(&r.envoy_key).into_bytes()
}

/// Every registry entry.
pub fn registry_range() -> KeyRange {
    KeyRange::prefix(&Tuple::new().s("registry").into_bytes())
}

/// Decode the identity from a registry entry key.
pub fn parse_registry_entry(key: &[u8]) -> Result<RunnerId, MalformedKey> {
    let mut t = TupleReader::new(key).skip(&Tuple::new().s("registry").into_bytes())?;
    let namespace = t.s()?;
    Ok(RunnerId { namespace, envoy_key: t.s()? })
}

/// `workflows/A`: present while actor `A`'s workflow is not complete, so a restarted executor
/// can find every live workflow.
pub fn workflow_entry(a: &str) -> Vec<u8> {
    Tuple::new().s("workflows").s(a).into_bytes()
}

/// Every workflow entry.
pub fn workflow_range() -> KeyRange {
    KeyRange::prefix(&Tuple::new().s("workflows").into_bytes())
}

/// Decode the actor id from a workflow entry key.
pub fn parse_workflow_entry(key: &[u8]) -> Result<ActorId, MalformedKey> {
    TupleReader::new(key).skip(&Tuple::new().s("workflows").into_bytes())?.s()
}

/// `eligible/ns/pool/version/R`.
pub fn eligible(ns: &str, pool: &str, version: u32, r: &RunnerId) -> Vec<u8> {
    Tuple::new().s("eligible").s(ns).s(pool).u(version as u64).s(&r.envoy_key).into_bytes()
}

/// Every eligibility entry of `(ns, pool)`.
pub fn eligible_pool(ns: &str, pool: &str) -> KeyRange {
    KeyRange::prefix(&Tuple::new().s("eligible").s(ns).s(pool).into_bytes())
}

/// Decode `(version, envoy_key)` from an eligibility key of `(ns, pool)`.
pub fn parse_eligible(ns: &str, pool: &str, key: &[u8]) -> Result<(u32, String), MalformedKey> {
    let prefix = Tuple::new().s("eligible").s(ns).s(pool).into_bytes();
    let mut t = TupleReader::new(key).skip(&prefix)?;
    let v = u32::try_from(t.u()?).map_err(|_| MalformedKey("version out of range"))?;
    Ok((v, t.s()?))
}

/// Prefix of the pending queue of `(ns, pool)`; entries are `prefix ++ versionstamp ++ A`.
pub fn pending_prefix(ns: &str, pool: &str) -> Vec<u8> {
    Tuple::new().s("pending").s(ns).s(pool).into_bytes()
}

/// The suffix written after the versionstamp of a pending entry.
pub fn pending_suffix(actor: &str) -> Vec<u8> {
    Tuple::new().s(actor).into_bytes()
}

fn actor(a: &str) -> Tuple {
    Tuple::new().s("actor").s(a)
}

/// `actor/A/state`: the workflow state.
pub fn actor_state(a: &str) -> Vec<u8> {
    actor(a).s("state").into_bytes()
}

/// `actor/A/ns`: the actor's namespace, present iff the actor exists and is not destroyed.
pub fn actor_namespace(a: &str) -> Vec<u8> {
    actor(a).s("ns").into_bytes()
}

/// Prefix of `actor/A/inbox/*`; signals are `prefix ++ versionstamp`.
pub fn actor_inbox_prefix(a: &str) -> Vec<u8> {
    actor(a).s("inbox").into_bytes()
}

/// `actor/A/placement`: `(R, g)` or absent. Authoritative for fencing.
pub fn actor_placement(a: &str) -> Vec<u8> {
    actor(a).s("placement").into_bytes()
}

/// Prefix of the actor's keyspace; a user key `k` is stored at `prefix ++ k`.
pub fn actor_kv_prefix(a: &str) -> Vec<u8> {
    actor(a).s("kv").into_bytes()
}

/// The store key of user key `k` of actor `a`.
pub fn actor_kv_key(a: &str, k: &[u8]) -> Vec<u8> {
    actor(a).s("kv").raw(k).into_bytes()
}

/// `actor/A/kv_usage`: the keyspace's storage usage (`spec/preload.md` §1.3), kept beside it.
pub fn actor_kv_usage(a: &str) -> Vec<u8> {
    actor(a).s("kv_usage").into_bytes()
}

/// `ns/ns/actor_name/name`: `ActorName.metadata` JSON, which carries the preload manifest.
pub fn actor_name_metadata(ns: &str, name: &str) -> Vec<u8> {
    Tuple::new().s("ns").s(ns).s("actor_name").s(name).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_order_matches_element_order() {
        let r = RunnerId::new("ns", "k1");
        let keys = [
            runner_cmd(&r, "a", 0, 0),
            runner_cmd(&r, "a", 0, 1),
            runner_cmd(&r, "a", 1, 0),
            runner_cmd(&r, "a\0", 0, 0),
            runner_cmd(&r, "ab", 0, 0),
            runner_cmd(&r, "b", 0, 0),
        ];
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
        }
        assert!(Tuple::new().i(-1).into_bytes() < Tuple::new().i(0).into_bytes());
        assert!(Tuple::new().i(i64::MIN).into_bytes() < Tuple::new().i(-1).into_bytes());
    }

    #[test]
    fn command_keys_parse_back() {
        let r = RunnerId::new("n\0s", "key");
        let k = runner_cmd(&r, "act\0or", 7, 1);
        assert_eq!(parse_runner_cmd(&r, &k), Ok(("act\0or".to_string(), 7, 1)));
        assert!(parse_runner_cmd(&r, b"garbage").is_err());
    }

    #[test]
    fn upto_range_covers_exactly_indices_at_most_k() {
        let r = RunnerId::new("ns", "k");
        let range = runner_cmd_upto(&r, "a", 3, 0);
        assert!(range.contains(&runner_cmd(&r, "a", 3, 0)));
        assert!(!range.contains(&runner_cmd(&r, "a", 3, 1)));
        assert!(!range.contains(&runner_cmd(&r, "a", 2, 0)));
        let all = runner_cmd_upto(&r, "a", 3, i64::MAX);
        assert!(all.contains(&runner_cmd(&r, "a", 3, i64::MAX)));
        assert!(!all.contains(&runner_cmd(&r, "a", 4, 0)));
    }

    #[test]
    fn kv_keys_keep_raw_byte_order() {
        let a = "actor";
        let p = actor_kv_prefix(a);
        for k in [&b""[..], &[0x00], &[0xFF, 0xFF], &[6, 0, 0]] {
            assert_eq!(actor_kv_key(a, k), [p.as_slice(), k].concat());
        }
        assert!(!KeyRange::prefix(&p).contains(&actor_kv_usage(a)));
    }
}
