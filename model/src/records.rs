//! The records the model stores under the keys of `keys` (`spec/protocol.md` §1.8 and §6.1), and
//! their encoding. Model-internal records are JSON (serde, struct field order), which keeps them
//! deterministic and readable in traces; wire-defined values (stored commands, actor-name
//! metadata) use the protocol's own encodings and live in `wire`.
//!
//! A stored record that fails to decode is an internal error ([`RecordError`]): the operation
//! that read it fails visibly and nothing is silently skipped.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::RunnerId;

/// A stored record could not be decoded (the model wrote something it cannot read back).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("internal: stored {what} does not decode: {detail}")]
pub struct RecordError {
    pub what: &'static str,
    pub detail: String,
}

/// Encode a record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of strings, integers and booleans to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Decode a record, naming what it was on failure.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| RecordError { what, detail: e.to_string() })
}

/// `runner/R/info` (`spec/protocol.md` §6.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    pub pool: String,
    pub version: u32,
    pub protocol_version: u16,
    pub total_slots: u32,
    pub used_slots: u32,
    /// The current connection's epoch (commit version of its registration).
    pub epoch: u64,
    pub liveness_seq: u64,
    pub last_rtt_ms: u32,
    pub connected: bool,
    pub ready: bool,
    pub draining: bool,
    pub expired: bool,
}

impl RunnerInfo {
    /// `connected ∧ ready ∧ ¬draining ∧ ¬expired`.
    pub fn eligible(&self) -> bool {
        self.connected && self.ready && !self.draining && !self.expired
    }
}

/// `actor/A/placement`: the runner and generation the actor is allocated to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Placement {
    pub runner: RunnerId,
    pub generation: u32,
}

/// The stored form of one actor KV entry (`actor/A/kv/k`): the value with its metadata
/// (`spec/preload.md` §1.1). Layout: `u16` little-endian length of `version`, the `version`
/// bytes, `update_ts` as `i64` little-endian, then the value bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntryRecord {
    pub value: Vec<u8>,
    /// `KvMetadata.version`: the engine version string's bytes.
    pub version: Vec<u8>,
    /// `KvMetadata.update_ts`: model time (ms) of the put's commit.
    pub update_ts: i64,
}

impl KvEntryRecord {
    /// Encode for storage.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.version.len() + 8 + self.value.len());
        let len = u16::try_from(self.version.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.version[..len as usize]);
        out.extend_from_slice(&self.update_ts.to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// Decode a stored entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let err = |detail: &str| RecordError { what: "kv entry", detail: detail.to_string() };
        let (len, rest) = bytes.split_at_checked(2).ok_or_else(|| err("missing version length"))?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let (version, rest) = rest.split_at_checked(len).ok_or_else(|| err("truncated version"))?;
        let (ts, value) = rest.split_at_checked(8).ok_or_else(|| err("missing update_ts"))?;
        let mut tsb = [0u8; 8];
        tsb.copy_from_slice(ts);
        Ok(KvEntryRecord {
            value: value.to_vec(),
            version: version.to_vec(),
            update_ts: i64::from_le_bytes(tsb),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_entry_round_trips_and_rejects_truncation() {
        let e =
            KvEntryRecord { value: vec![0, 0xFF, 7], version: b"2.3.7".to_vec(), update_ts: -5 };
        let bytes = e.encode();
        assert_eq!(KvEntryRecord::decode(&bytes), Ok(e));
        for n in 0..(2 + 5 + 8) {
            assert!(KvEntryRecord::decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn runner_info_round_trips() {
        let info = RunnerInfo { pool: "p".into(), epoch: 9, connected: true, ..Default::default() };
        assert_eq!(decode::<RunnerInfo>("runner info", &encode(&info)), Ok(info));
        assert!(decode::<RunnerInfo>("runner info", b"{").is_err());
    }
}
