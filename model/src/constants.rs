//! Every constant of `spec/protocol.md` §10 and `spec/preload.md` §10, named once, with the spec's
//! default. Nothing else in the model writes one of these numbers down; scenarios that vary a
//! value do so through configuration structs whose `Default` reads from here.
//!
//! Durations are milliseconds of the deciding node's monotonic clock (`u64`).

// ---- protocol.md §10 -------------------------------------------------------------------------

/// Only supported wire version; also the embedded header value of stored values.
pub const PROTOCOL_VERSION: u16 = 8;
/// Capacity of a runner whose connect request carries no `slots`.
pub const DEFAULT_SLOTS: u32 = 100;
/// `ToEnvoyInit` until `ToRivetMetadata`.
pub const INIT_TIMEOUT_MS: u64 = 5_000;
/// Edge liveness write, then ping.
pub const PING_INTERVAL_MS: u64 = 3_000;
/// Uniform jitter added to every ping interval: `0..PING_JITTER_MS`.
pub const PING_JITTER_MS: u64 = 128;
/// The edge closes a connection that has not answered a ping for this long.
pub const PING_TIMEOUT_MS: u64 = 15_000;
/// The runner closes its connection when no ping arrived for this long.
pub const RUNNER_PING_TIMEOUT_MS: u64 = 10_000;
/// `envoyLostThreshold`: the runner fence.
pub const RUNNER_LOST_THRESHOLD_MS: u64 = 15_000;
/// Extra silence the registry waits before expiring a runner.
pub const FENCE_MARGIN_MS: u64 = 5_000;
/// Registry poll of `liveness_seq`.
pub const LOST_CHECK_INTERVAL_MS: u64 = 1_000;
/// Timing envelope: frame delivery bound.
pub const MAX_LINK_DELAY_MS: u64 = 1_000;
/// Timing envelope: liveness write to ping send.
pub const MAX_STEP_DELAY_MS: u64 = 1_000;
/// Start deadline.
pub const ACTOR_START_THRESHOLD_MS: u64 = 30_000;
/// `actorStopThreshold`: graceful stop bound on the runner.
pub const ACTOR_STOP_THRESHOLD_MS: u64 = 30_000;
/// Added to the workflow's stop deadline.
pub const STOP_GRACE_MS: u64 = 5_000;
/// Crash restart backoff base.
pub const BACKOFF_BASE_MS: u64 = 2_000;
/// Crash restart backoff jitter: `uniform[0, BACKOFF_JITTER_MS)`.
pub const BACKOFF_JITTER_MS: u64 = 500;
/// Crash restart backoff exponent cap (512 s + jitter).
pub const BACKOFF_MAX_EXPONENT: u32 = 8;
/// Retry count reset after this quiet period.
pub const RETRY_RESET_MS: u64 = 600_000;
/// A crash restart waiting for capacity this long goes to `Sleeping`.
pub const RESTART_PENDING_TIMEOUT_MS: u64 = 60_000;
/// Periodic pending-queue drainer run.
pub const PENDING_RECHECK_INTERVAL_MS: u64 = 5_000;
/// Pending entries per drainer transaction.
pub const DRAIN_BATCH: usize = 16;
/// Acknowledge events when `last - last_acked >= EVENT_ACK_BATCH_SIZE`.
pub const EVENT_ACK_BATCH_SIZE: i64 = 250;
/// Every applied event is acknowledged within this.
pub const EVENT_ACK_MAX_DELAY_MS: u64 = 2_000;
/// The runner re-sends unacknowledged events on a live connection after this.
pub const EVENT_RESEND_INTERVAL_MS: u64 = 10_000;
/// Events per `ToRivetEvents` frame.
pub const EVENTS_FRAME_MAX: usize = 128;
/// Events per `Events` signal.
pub const DEMUX_BATCH_MAX: usize = 256;
/// An idle, empty demuxer queue is removed after this.
pub const DEMUX_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Drain bound of the demuxer at connection end.
pub const DEMUX_FLUSH_TIMEOUT_MS: u64 = 10_000;
/// Signals consumed per workflow step.
pub const WF_SIGNAL_BATCH: usize = 256;
/// Command keys per replay transaction.
pub const REPLAY_PAGE_KEYS: usize = 64;
/// Commands per `ToEnvoyCommands` frame.
pub const FRAME_MAX_COMMANDS: usize = 32;
/// Split threshold for command frames (2 MiB).
pub const FRAME_TARGET_BYTES: usize = 2 * 1024 * 1024;
/// Hard limit on any frame, both directions (8 MiB).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// So that a single `Start` with its bundle fits a frame (4 MiB).
pub const MAX_ACTOR_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Bus messages buffered during replay.
pub const LIVE_BUFFER_MAX: usize = 4_096;
/// Runner-side bound on an unanswered KV request.
pub const KV_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Runner reconnect backoff base.
pub const RECONNECT_BASE_MS: u64 = 1_000;
/// Runner reconnect backoff cap (plus 0-25 % jitter).
pub const RECONNECT_MAX_MS: u64 = 30_000;
/// Graceful drain bound on the runner.
pub const RUNNER_SHUTDOWN_TIMEOUT_MS: u64 = 120_000;
/// Retired-identity cleanup.
pub const RETIRE_GRACE_MS: u64 = 60_000;
/// `maxResponsePayloadSize` (informational, 20 MiB).
pub const MAX_RESPONSE_PAYLOAD_BYTES: u64 = 20 * 1024 * 1024;
/// Store limit: transaction duration.
pub const STORE_TXN_MAX_MS: u64 = 5_000;
/// Store limit: transaction size (10 MB).
pub const STORE_TXN_MAX_BYTES: usize = 10_000_000;
/// Store limit: value size (100 kB). See `store` for how the model treats it.
pub const STORE_VALUE_MAX_BYTES: usize = 100_000;
/// Runner metadata chunking.
pub const METADATA_CHUNK_BYTES: usize = 10_000;

// ---- preload.md §10 --------------------------------------------------------------------------

/// Encoded key limit; a raw key may be at most `MAX_KEY_SIZE - KEY_OVERHEAD` bytes.
pub const MAX_KEY_SIZE: usize = 2_048;
/// Per-key term in the key-size check, the put payload and storage usage.
pub const KEY_OVERHEAD: usize = 2;
/// Largest raw key (2,046 bytes).
pub const MAX_RAW_KEY_SIZE: usize = MAX_KEY_SIZE - KEY_OVERHEAD;
/// Per put value (128 KiB).
pub const MAX_VALUE_SIZE: usize = 131_072;
/// Keys per get, put and delete.
pub const MAX_KEYS: usize = 128;
/// Put payload (976 KiB).
pub const MAX_PUT_PAYLOAD_SIZE: usize = 999_424;
/// Per-actor storage quota (10 GiB); scenarios lower it.
pub const MAX_STORAGE_SIZE: u64 = 10_737_418_240;
/// Entries of a list with `limit = None`.
pub const LIST_DEFAULT_LIMIT: u64 = 16_384;
/// The engine's version string stored in every entry's metadata.
pub const KV_METADATA_VERSION: &str = "2.3.7";
/// The `update_ts` term of a preload entry's size.
pub const METADATA_TS_BYTES: usize = 8;
/// `len(KV_METADATA_VERSION) + METADATA_TS_BYTES` with the default version.
pub const PRELOAD_ENTRY_OVERHEAD: usize = KV_METADATA_VERSION.len() + METADATA_TS_BYTES;
/// Global preload budget `T` (1 MiB); 0 disables preload.
pub const PRELOAD_MAX_TOTAL_BYTES: u64 = 1_048_576;
/// Preload read attempts before the fetch fails.
pub const PRELOAD_MAX_ATTEMPTS: u32 = 5;
/// Reference manifest (§3.6): `maxBytes` of `[6,1]`, workflow history.
pub const REFERENCE_WORKFLOW_HISTORY_MAX_BYTES: u64 = 131_072;
/// Reference manifest (§3.6): `maxBytes` of `[2]`, connections.
pub const REFERENCE_CONNECTIONS_MAX_BYTES: u64 = 65_536;
/// Reference manifest (§3.6): `maxBytes` of `[5,1,2]`, queue messages.
pub const REFERENCE_QUEUE_MESSAGES_MAX_BYTES: u64 = 65_536;
/// Reference manifest (§3.6): `maxBytes` of `[8,1]`, database pages (partial).
pub const REFERENCE_DATABASE_PAGES_MAX_BYTES: u64 = 786_432;

/// The relations `spec/protocol.md` §10 requires, checked at start-up of the model. Returns the
/// first relation that does not hold.
pub fn check_relations(
    max_link_delay_ms: u64,
    max_step_delay_ms: u64,
    fence_margin_ms: u64,
    runner_ping_timeout_ms: u64,
    runner_lost_threshold_ms: u64,
    ping_interval_ms: u64,
) -> Result<(), &'static str> {
    if max_link_delay_ms + max_step_delay_ms >= fence_margin_ms {
        return Err("MAX_LINK_DELAY + MAX_STEP_DELAY < FENCE_MARGIN");
    }
    if runner_ping_timeout_ms >= runner_lost_threshold_ms {
        return Err("RUNNER_PING_TIMEOUT < RUNNER_LOST_THRESHOLD");
    }
    if ping_interval_ms >= runner_ping_timeout_ms {
        return Err("PING_INTERVAL < RUNNER_PING_TIMEOUT");
    }
    Ok(())
}

// The relations between constants that never vary are checked at compile time.
const _: () = assert!(EVENT_ACK_MAX_DELAY_MS < EVENT_RESEND_INTERVAL_MS);
const _: () = assert!(
    MAX_ACTOR_INPUT_BYTES + PRELOAD_MAX_TOTAL_BYTES as usize + 64 * 1024 <= MAX_FRAME_BYTES
);
const _: () = assert!(PRELOAD_ENTRY_OVERHEAD == 13);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_relations_hold() {
        assert_eq!(
            check_relations(
                MAX_LINK_DELAY_MS,
                MAX_STEP_DELAY_MS,
                FENCE_MARGIN_MS,
                RUNNER_PING_TIMEOUT_MS,
                RUNNER_LOST_THRESHOLD_MS,
                PING_INTERVAL_MS
            ),
            Ok(())
        );
    }

    #[test]
    fn broken_relations_are_named() {
        assert_eq!(
            check_relations(3_000, 3_000, FENCE_MARGIN_MS, 10_000, 15_000, 3_000),
            Err("MAX_LINK_DELAY + MAX_STEP_DELAY < FENCE_MARGIN")
        );
        assert_eq!(
            check_relations(1_000, 1_000, 5_000, 15_000, 15_000, 3_000),
            Err("RUNNER_PING_TIMEOUT < RUNNER_LOST_THRESHOLD")
        );
        assert_eq!(
            check_relations(1_000, 1_000, 5_000, 10_000, 15_000, 10_000),
            Err("PING_INTERVAL < RUNNER_PING_TIMEOUT")
        );
    }
}
