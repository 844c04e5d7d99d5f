//! Configuration of the model: the protocol's timing and size parameters (defaults from
//! `constants`, which scenarios may vary) and the engine's deployment (namespaces, pools, preload
//! budget, KV limits). Passed by value into the components that need it; nothing is global.

use std::collections::{BTreeMap, BTreeSet};

use crate::constants::*;
use crate::kv::KvConfig;

/// Timing and size parameters of `spec/protocol.md` §10. `Default` is the spec.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Timing {
    pub init_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub ping_jitter_ms: u64,
    pub ping_timeout_ms: u64,
    pub runner_ping_timeout_ms: u64,
    pub runner_lost_threshold_ms: u64,
    pub fence_margin_ms: u64,
    pub lost_check_interval_ms: u64,
    pub max_step_delay_ms: u64,
    pub actor_start_threshold_ms: u64,
    pub actor_stop_threshold_ms: u64,
    pub stop_grace_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_jitter_ms: u64,
    pub backoff_max_exponent: u32,
    pub retry_reset_ms: u64,
    pub restart_pending_timeout_ms: u64,
    pub pending_recheck_interval_ms: u64,
    pub drain_batch: usize,
    pub event_ack_batch_size: i64,
    pub event_ack_max_delay_ms: u64,
    pub event_resend_interval_ms: u64,
    pub events_frame_max: usize,
    pub demux_batch_max: usize,
    pub demux_idle_timeout_ms: u64,
    pub demux_flush_timeout_ms: u64,
    pub wf_signal_batch: usize,
    pub replay_page_keys: usize,
    pub frame_max_commands: usize,
    pub frame_target_bytes: usize,
    pub max_frame_bytes: usize,
    pub live_buffer_max: usize,
    pub kv_request_timeout_ms: u64,
    pub reconnect_base_ms: u64,
    pub reconnect_max_ms: u64,
    pub runner_shutdown_timeout_ms: u64,
    pub retire_grace_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            init_timeout_ms: INIT_TIMEOUT_MS,
            ping_interval_ms: PING_INTERVAL_MS,
            ping_jitter_ms: PING_JITTER_MS,
            ping_timeout_ms: PING_TIMEOUT_MS,
            runner_ping_timeout_ms: RUNNER_PING_TIMEOUT_MS,
            runner_lost_threshold_ms: RUNNER_LOST_THRESHOLD_MS,
            fence_margin_ms: FENCE_MARGIN_MS,
            lost_check_interval_ms: LOST_CHECK_INTERVAL_MS,
            max_step_delay_ms: MAX_STEP_DELAY_MS,
            actor_start_threshold_ms: ACTOR_START_THRESHOLD_MS,
            actor_stop_threshold_ms: ACTOR_STOP_THRESHOLD_MS,
            stop_grace_ms: STOP_GRACE_MS,
            backoff_base_ms: BACKOFF_BASE_MS,
            backoff_jitter_ms: BACKOFF_JITTER_MS,
            backoff_max_exponent: BACKOFF_MAX_EXPONENT,
            retry_reset_ms: RETRY_RESET_MS,
            restart_pending_timeout_ms: RESTART_PENDING_TIMEOUT_MS,
            pending_recheck_interval_ms: PENDING_RECHECK_INTERVAL_MS,
            drain_batch: DRAIN_BATCH,
            event_ack_batch_size: EVENT_ACK_BATCH_SIZE,
            event_ack_max_delay_ms: EVENT_ACK_MAX_DELAY_MS,
            event_resend_interval_ms: EVENT_RESEND_INTERVAL_MS,
            events_frame_max: EVENTS_FRAME_MAX,
            demux_batch_max: DEMUX_BATCH_MAX,
            demux_idle_timeout_ms: DEMUX_IDLE_TIMEOUT_MS,
            demux_flush_timeout_ms: DEMUX_FLUSH_TIMEOUT_MS,
            wf_signal_batch: WF_SIGNAL_BATCH,
            replay_page_keys: REPLAY_PAGE_KEYS,
            frame_max_commands: FRAME_MAX_COMMANDS,
            frame_target_bytes: FRAME_TARGET_BYTES,
            max_frame_bytes: MAX_FRAME_BYTES,
            live_buffer_max: LIVE_BUFFER_MAX,
            kv_request_timeout_ms: KV_REQUEST_TIMEOUT_MS,
            reconnect_base_ms: RECONNECT_BASE_MS,
            reconnect_max_ms: RECONNECT_MAX_MS,
            runner_shutdown_timeout_ms: RUNNER_SHUTDOWN_TIMEOUT_MS,
            retire_grace_ms: RETIRE_GRACE_MS,
        }
    }
}

impl Timing {
    /// The relations of `spec/protocol.md` §10 that involve values a scenario may change.
    pub fn check(&self) -> Result<(), &'static str> {
        check_relations(
            MAX_LINK_DELAY_MS,
            self.max_step_delay_ms,
            self.fence_margin_ms,
            self.runner_ping_timeout_ms,
            self.runner_lost_threshold_ms,
            self.ping_interval_ms,
        )?;
        if self.event_ack_max_delay_ms >= self.event_resend_interval_ms {
            return Err("EVENT_ACK_MAX_DELAY < EVENT_RESEND_INTERVAL");
        }
        // A start command with the largest input and a full bundle must fit one frame.
        if MAX_ACTOR_INPUT_BYTES + PRELOAD_MAX_TOTAL_BYTES as usize + 64 * 1024
            > self.max_frame_bytes
        {
            return Err(
                "MAX_ACTOR_INPUT_BYTES + PRELOAD_MAX_TOTAL_BYTES + 64 KiB <= MAX_FRAME_BYTES",
            );
        }
        if self.replay_page_keys == 0 || self.frame_max_commands == 0 || self.events_frame_max == 0
        {
            return Err("page and frame sizes must be at least 1");
        }
        Ok(())
    }
}

/// The engine's deployment: which namespaces and pools exist, and its preload and KV settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Namespace name -> the pools configured in it (`spec/protocol.md` §2.2).
    pub namespaces: BTreeMap<String, BTreeSet<String>>,
    /// Global preload budget `T` (`spec/preload.md` §3.4); 0 disables preload.
    pub preload_budget: u64,
    /// Preload read attempts before a fetch fails.
    pub preload_max_attempts: u32,
    pub kv: KvConfig,
    pub timing: Timing,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let mut namespaces = BTreeMap::new();
        namespaces.insert("default".to_string(), BTreeSet::from(["default".to_string()]));
        EngineConfig {
            namespaces,
            preload_budget: PRELOAD_MAX_TOTAL_BYTES,
            preload_max_attempts: PRELOAD_MAX_ATTEMPTS,
            kv: KvConfig::default(),
            timing: Timing::default(),
        }
    }
}
