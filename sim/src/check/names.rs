//! The names of every invariant the checkers report, spelled exactly as the specs spell them
//! (`"<id> <name>"`), so that a violation names its invariant in one place only.
//!
//! Owns nothing but these strings and the rule saying which invariants the timing envelope may
//! excuse (`spec/protocol.md` §6.3: S1, S2 and S14).

// ---- safety, spec/protocol.md §8.2 ---------------------------------------------------------------
pub const S1: &str = "S1 INV-SINGLE";
pub const S2: &str = "S2 INV-GEN-SEQ";
pub const S3: &str = "S3 INV-GEN";
pub const S4: &str = "S4 INV-EVT (order, prefix)";
pub const S5: &str = "S5 INV-EVT (authenticity)";
pub const S6: &str = "S6 INV-CMD-KEY";
pub const S7: &str = "S7 INV-CMD-IDEM";
pub const S8: &str = "S8 INV-ACK (events)";
pub const S9: &str = "S9 INV-ACK (commands)";
pub const S10: &str = "S10 INV-TOMB";
pub const S11: &str = "S11 INV-FRAME";
pub const S12: &str = "S12 INV-ID";
pub const S13: &str = "S13 INV-ELIG";
pub const S14: &str = "S14 INV-KV1W";
pub const S15: &str = "S15 INV-SLOTS";
pub const S16: &str = "S16 INV-STATUS";
pub const S17: &str = "S17 INV-DISPOSITION";
pub const S18: &str = "S18 INV-BOUND (store)";

// ---- preload, spec/preload.md §8 (P0-P11 come from `preload::oracle::Invariant::name`) -----------
pub const P12: &str = "P12 oracle equivalence";
pub const P13: &str = "P13 no round trip when covered";
pub const P14: &str = "P14 new-actor safety";
pub const P15: &str = "P15 not persisted";
pub const P16: &str = "P16 freshness";
pub const K6: &str = "K6 storage bound";

// ---- the data-loss oracle ------------------------------------------------------------------------
pub const DATA_LOSS: &str = "DATA-LOSS counter";

// ---- the history itself --------------------------------------------------------------------------
/// Not a spec invariant: the history must carry a `Fact::Commit` for every applied commit (store
/// versions are consecutive), or the checkers' shadow of the store is wrong and every check that
/// reads it could raise false alarms or miss violations. Reported so the gap is visible.
pub const HISTORY: &str = "HISTORY every commit recorded";

// ---- liveness, spec/protocol.md §8.3 -------------------------------------------------------------
pub const L1: &str = "L1 connection";
pub const L2: &str = "L2 INV-CMD-DELIVER";
pub const L3: &str = "L3 event delivery";
pub const L4: &str = "L4 start progress";
pub const L5: &str = "L5 stop progress";
pub const L6: &str = "L6 crash detection";
pub const L7: &str = "L7 runner expiry";
pub const L8: &str = "L8 INV-LIVE (queue)";
pub const L9: &str = "L9 drain completion";
pub const L10: &str = "L10 INV-BOUND (memory)";

/// The id of an invariant name: the text before the first space (`S4`, `P2`, `DATA-LOSS`).
pub fn id(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

/// Whether a violation of this invariant found while the timing envelope is broken is labelled
/// "outside envelope" instead of counted (`spec/protocol.md` §6.3).
pub fn envelope_sensitive(name: &str) -> bool {
    matches!(id(name), "S1" | "S2" | "S14")
}
