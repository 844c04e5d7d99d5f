//! Recording frames as the simulator sees them on the wire: every frame is decoded once per
//! observation with the model's codec (without a size limit, so the checkers can judge the size
//! themselves) and appended to the history with a hash of its exact bytes.

use std::sync::Arc;

use pegsim_model::fact::ConnId;
use pegsim_model::keys::RunnerId;
use pegsim_model::wire::Codec;

use crate::run::{Decoded, Dir, Entry};
use crate::world::shared::Shared;

/// FNV-1a, 64 bits: a stable hash of bytes (part of the trace hash, so it must never change).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Decode a frame for the history.
pub fn decode(dir: Dir, bytes: &[u8], text: bool) -> Decoded {
    if text {
        return Decoded::Undecodable(format!("text frame of {} bytes", bytes.len()));
    }
    let codec = Codec::new(usize::MAX);
    match dir {
        Dir::ToEngine => match codec.decode_to_rivet(bytes) {
            Ok(m) => Decoded::ToRivet(m),
            Err(e) => Decoded::Undecodable(e.to_string()),
        },
        Dir::ToRunner => match codec.decode_to_envoy(bytes) {
            Ok(m) => Decoded::ToEnvoy(m),
            Err(e) => Decoded::Undecodable(e.to_string()),
        },
    }
}

/// Record one frame observation.
#[allow(clippy::too_many_arguments)]
pub fn record(
    shared: &Shared,
    node: &str,
    conn: ConnId,
    runner: Option<RunnerId>,
    dir: Dir,
    received: bool,
    bytes: &[u8],
    text: bool,
) {
    let decoded = Arc::new(decode(dir, bytes, text));
    shared.record(
        node,
        Entry::Frame {
            conn,
            runner,
            dir,
            received,
            len: bytes.len(),
            bytes_hash: fnv1a(bytes),
            decoded,
        },
    );
}
