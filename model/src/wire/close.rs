//! WebSocket close reasons (`spec/protocol.md` §2.1, §2.2, §2.6, §6.7): the exact reason strings,
//! their close codes, and how the runner reacts to each one the engine sends.
//!
//! A reason string is `<group>.<code>`, optionally followed by `#<detail>` for the reasons that
//! carry one (the invalid-packet and invalid-request reasons). [`CloseReason`]'s `Display` gives
//! the exact string and [`CloseReason::parse`] reads it back.
//!
//! Choices where the spec is silent:
//! - **Close codes.** The spec fixes 1011 for invalid packets and 1000 for a normal close and for
//!   `envoy.shutdown`. The others follow the same rule, as the real engine renders its errors:
//!   every engine error reason is sent with 1011 (internal error / unexpected condition),
//!   `ws.going_away` with 1001 (going away) and `ws.closed` with 1000 (normal). The runner's
//!   `envoy.invalid_packet` is 1011, its `envoy.timed_out` 1011, its `envoy.shutdown` 1000.
//! - **`envoy.timed_out`.** The spec makes the runner close on its own in two cases with no named
//!   reason: no `ToEnvoyPing` for `RUNNER_PING_TIMEOUT` (§6.3) and a KV request unanswered for
//!   `KV_REQUEST_TIMEOUT` (§4.1). The model uses `envoy.timed_out` for both.
//! - **Details.** A reason that carries a detail may be written without one
//!   (`ws.invalid_initial_packet`, as §2.3 step 6 writes it); its detail is then empty and
//!   `Display` omits the `#`. A reason that carries none but is followed by `#…` is an error, so an
//!   unexpected string is never half-understood.
//! - **Frame limit.** A WebSocket close frame holds at most 123 bytes of reason
//!   ([`MAX_CLOSE_REASON_BYTES`]). `Display` is exact; [`CloseReason::to_close_frame_reason`]
//!   shortens a long detail at a char boundary so the frame is legal.
//! - **Eviction.** Its reaction class is [`RunnerReaction::Fatal`]. That it applies only on the
//!   runner's *current* connection (an abandoned one is ignored, §2.6) is the runner's state.
//!
//! Must not touch: when a connection closes (engine and runner state machines).

use std::fmt;

/// WebSocket close code 1000, normal closure (RFC 6455 §7.4.1).
pub const CLOSE_CODE_NORMAL: u16 = 1000;
/// WebSocket close code 1001, going away (RFC 6455 §7.4.1).
pub const CLOSE_CODE_GOING_AWAY: u16 = 1001;
/// WebSocket close code 1011, internal error / unexpected condition (RFC 6455 §7.4.1).
pub const CLOSE_CODE_INTERNAL_ERROR: u16 = 1011;
/// Most bytes of reason text a close frame can hold: 125 bytes of control payload minus the
/// 2-byte code (RFC 6455 §5.5).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Separator between a reason and its detail.
const DETAIL_SEPARATOR: char = '#';

/// Every reason a connection of the model is closed with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloseReason {
    /// `ws.eviction`: a newer connection of the runner registered (§6.2).
    Eviction,
    /// `ws.going_away`: the edge node is shutting down.
    GoingAway,
    /// `ws.timed_out`: no pong, a liveness write refused because the runner expired, or the live
    /// buffer overflowed.
    TimedOut,
    /// `ws.timed_out_waiting_for_init`: no `ToRivetMetadata` within `INIT_TIMEOUT`.
    TimedOutWaitingForInit,
    /// `ws.invalid_initial_packet#<detail>`: the first runner frame is undecodable, breaks a field
    /// rule, or is not `ToRivetMetadata`.
    InvalidInitialPacket { detail: String },
    /// `ws.invalid_packet#<detail>`: a later runner frame is undecodable or breaks a field rule.
    InvalidPacket { detail: String },
    /// `ws.invalid_request#<detail>`: the connect request breaks a rule of §2.2.
    InvalidRequest { detail: String },
    /// `ws.namespace_not_found`: the connect request names no existing namespace.
    NamespaceNotFound,
    /// `ws.no_runner_config`: the pool is not configured in the namespace.
    NoRunnerConfig,
    /// `ws.closed`: normal close by the engine, including a retire (`ToEnvoyConnClose`).
    Closed,
    /// `envoy.invalid_packet#<detail>`: the runner received an undecodable or invalid frame.
    EnvoyInvalidPacket { detail: String },
    /// `envoy.shutdown`: the runner finished its graceful drain (§6.7).
    EnvoyShutdown,
    /// `envoy.timed_out`: the runner saw no ping for `RUNNER_PING_TIMEOUT`, or a KV request stayed
    /// unanswered for `KV_REQUEST_TIMEOUT` (model choice, see the module comment).
    EnvoyTimedOut,
}

/// Which side sends a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloseSender {
    Engine,
    Runner,
}

/// How the runner reacts when the engine closes its connection with a reason (§2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunnerReaction {
    /// Kill every instance at once, do not reconnect, exit (eviction on the current connection).
    Fatal,
    /// Reconnect at once; the first attempt has no backoff.
    ReconnectNow,
    /// Reconnect with the usual exponential backoff.
    ReconnectBackoff,
    /// Reconnect after the maximum backoff, `RECONNECT_MAX_MS`.
    ReconnectMaxBackoff,
}

/// A reason string that is not one of [`CloseReason`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReasonError {
    /// The part before `#` names no known reason.
    #[error("unknown close reason {reason:?}")]
    Unknown { reason: String },
    /// A reason that carries no detail is followed by `#…`.
    #[error("close reason {reason:?} carries no detail, but {detail:?} follows it")]
    UnexpectedDetail { reason: String, detail: String },
}

impl CloseReason {
    /// The reason's name: the part before any `#<detail>`.
    pub fn name(&self) -> &'static str {
        match self {
            CloseReason::Eviction => "ws.eviction",
            CloseReason::GoingAway => "ws.going_away",
            CloseReason::TimedOut => "ws.timed_out",
            CloseReason::TimedOutWaitingForInit => "ws.timed_out_waiting_for_init",
            CloseReason::InvalidInitialPacket { .. } => "ws.invalid_initial_packet",
            CloseReason::InvalidPacket { .. } => "ws.invalid_packet",
            CloseReason::InvalidRequest { .. } => "ws.invalid_request",
            CloseReason::NamespaceNotFound => "ws.namespace_not_found",
            CloseReason::NoRunnerConfig => "ws.no_runner_config",
            CloseReason::Closed => "ws.closed",
            CloseReason::EnvoyInvalidPacket { .. } => "envoy.invalid_packet",
            CloseReason::EnvoyShutdown => "envoy.shutdown",
            CloseReason::EnvoyTimedOut => "envoy.timed_out",
        }
    }

    /// The detail, for the reasons that carry one (possibly empty).
    pub fn detail(&self) -> Option<&str> {
        match self {
            CloseReason::InvalidInitialPacket { detail }
            | CloseReason::InvalidPacket { detail }
            | CloseReason::InvalidRequest { detail }
            | CloseReason::EnvoyInvalidPacket { detail } => Some(detail),
            _ => None,
        }
    }

    /// The WebSocket close code sent with this reason (see the module comment).
    pub fn code(&self) -> u16 {
        match self {
            CloseReason::GoingAway => CLOSE_CODE_GOING_AWAY,
            CloseReason::Closed | CloseReason::EnvoyShutdown => CLOSE_CODE_NORMAL,
            CloseReason::Eviction
            | CloseReason::TimedOut
            | CloseReason::TimedOutWaitingForInit
            | CloseReason::InvalidInitialPacket { .. }
            | CloseReason::InvalidPacket { .. }
            | CloseReason::InvalidRequest { .. }
            | CloseReason::NamespaceNotFound
            | CloseReason::NoRunnerConfig
            | CloseReason::EnvoyInvalidPacket { .. }
            | CloseReason::EnvoyTimedOut => CLOSE_CODE_INTERNAL_ERROR,
        }
    }

    /// Who sends this reason: `ws.*` the engine, `envoy.*` the runner.
    pub fn sender(&self) -> CloseSender {
        match self {
            CloseReason::EnvoyInvalidPacket { .. }
            | CloseReason::EnvoyShutdown
            | CloseReason::EnvoyTimedOut => CloseSender::Runner,
            _ => CloseSender::Engine,
        }
    }

    /// The runner's reaction to this reason from the engine (§2.6); `None` for the runner's own
    /// reasons. After a runner-sent `envoy.invalid_packet` or `envoy.timed_out` the runner
    /// reconnects with backoff, and after `envoy.shutdown` it exits; that is its own decision.
    pub fn runner_reaction(&self) -> Option<RunnerReaction> {
        match self {
            CloseReason::Eviction => Some(RunnerReaction::Fatal),
            CloseReason::GoingAway => Some(RunnerReaction::ReconnectNow),
            CloseReason::TimedOut
            | CloseReason::TimedOutWaitingForInit
            | CloseReason::InvalidInitialPacket { .. }
            | CloseReason::InvalidPacket { .. }
            | CloseReason::Closed => Some(RunnerReaction::ReconnectBackoff),
            CloseReason::InvalidRequest { .. }
            | CloseReason::NamespaceNotFound
            | CloseReason::NoRunnerConfig => Some(RunnerReaction::ReconnectMaxBackoff),
            CloseReason::EnvoyInvalidPacket { .. }
            | CloseReason::EnvoyShutdown
            | CloseReason::EnvoyTimedOut => None,
        }
    }

    /// Parses an exact reason string (the inverse of `Display`).
    pub fn parse(reason: &str) -> Result<CloseReason, CloseReasonError> {
        let (name, detail) = match reason.split_once(DETAIL_SEPARATOR) {
            Some((name, detail)) => (name, Some(detail)),
            None => (reason, None),
        };
        let owned_detail = || detail.unwrap_or_default().to_owned();
        let without_detail = |value: CloseReason| match detail {
            None => Ok(value),
            Some(detail) => Err(CloseReasonError::UnexpectedDetail {
                reason: name.to_owned(),
                detail: detail.to_owned(),
            }),
        };
        match name {
            "ws.eviction" => without_detail(CloseReason::Eviction),
            "ws.going_away" => without_detail(CloseReason::GoingAway),
            "ws.timed_out" => without_detail(CloseReason::TimedOut),
            "ws.timed_out_waiting_for_init" => without_detail(CloseReason::TimedOutWaitingForInit),
            "ws.invalid_initial_packet" => {
                Ok(CloseReason::InvalidInitialPacket { detail: owned_detail() })
            }
            "ws.invalid_packet" => Ok(CloseReason::InvalidPacket { detail: owned_detail() }),
            "ws.invalid_request" => Ok(CloseReason::InvalidRequest { detail: owned_detail() }),
            "ws.namespace_not_found" => without_detail(CloseReason::NamespaceNotFound),
            "ws.no_runner_config" => without_detail(CloseReason::NoRunnerConfig),
            "ws.closed" => without_detail(CloseReason::Closed),
            "envoy.invalid_packet" => {
                Ok(CloseReason::EnvoyInvalidPacket { detail: owned_detail() })
            }
            "envoy.shutdown" => without_detail(CloseReason::EnvoyShutdown),
            "envoy.timed_out" => without_detail(CloseReason::EnvoyTimedOut),
            _ => Err(CloseReasonError::Unknown { reason: reason.to_owned() }),
        }
    }

    /// The reason as it fits in a close frame: the exact string when it is at most
    /// [`MAX_CLOSE_REASON_BYTES`] bytes, otherwise the detail cut at a char boundary so the whole
    /// string fits. Names are short, so only a detail is ever shortened.
    pub fn to_close_frame_reason(&self) -> String {
        let full = self.to_string();
        if full.len() <= MAX_CLOSE_REASON_BYTES {
            return full;
        }
        let mut end = MAX_CLOSE_REASON_BYTES;
        while !full.is_char_boundary(end) {
            end -= 1;
        }
        full[..end].to_owned()
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self.detail() {
            Some(detail) if !detail.is_empty() => write!(f, "{DETAIL_SEPARATOR}{detail}"),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for CloseReason {
    type Err = CloseReasonError;

    fn from_str(reason: &str) -> Result<Self, Self::Err> {
        CloseReason::parse(reason)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every reason, with the exact string the spec writes, its sender, code and reaction.
    fn table() -> Vec<(CloseReason, &'static str, CloseSender, u16, Option<RunnerReaction>)> {
        use CloseSender::{Engine, Runner};
        use RunnerReaction::*;
        let d = || "bad frame".to_owned();
        vec![
            (CloseReason::Eviction, "ws.eviction", Engine, 1011, Some(Fatal)),
            (CloseReason::GoingAway, "ws.going_away", Engine, 1001, Some(ReconnectNow)),
            (CloseReason::TimedOut, "ws.timed_out", Engine, 1011, Some(ReconnectBackoff)),
            (
                CloseReason::TimedOutWaitingForInit,
                "ws.timed_out_waiting_for_init",
                Engine,
                1011,
                Some(ReconnectBackoff),
            ),
            (
                CloseReason::InvalidInitialPacket { detail: d() },
                "ws.invalid_initial_packet#bad frame",
                Engine,
                1011,
                Some(ReconnectBackoff),
            ),
            (
                CloseReason::InvalidPacket { detail: d() },
                "ws.invalid_packet#bad frame",
                Engine,
                1011,
                Some(ReconnectBackoff),
            ),
            (
                CloseReason::InvalidRequest { detail: d() },
                "ws.invalid_request#bad frame",
                Engine,
                1011,
                Some(ReconnectMaxBackoff),
            ),
            (
                CloseReason::NamespaceNotFound,
                "ws.namespace_not_found",
                Engine,
                1011,
                Some(ReconnectMaxBackoff),
            ),
            (
                CloseReason::NoRunnerConfig,
                "ws.no_runner_config",
                Engine,
                1011,
                Some(ReconnectMaxBackoff),
            ),
            (CloseReason::Closed, "ws.closed", Engine, 1000, Some(ReconnectBackoff)),
            (
                CloseReason::EnvoyInvalidPacket { detail: d() },
                "envoy.invalid_packet#bad frame",
                Runner,
                1011,
                None,
            ),
            (CloseReason::EnvoyShutdown, "envoy.shutdown", Runner, 1000, None),
            (CloseReason::EnvoyTimedOut, "envoy.timed_out", Runner, 1011, None),
        ]
    }

    #[test]
    fn every_reason_has_its_exact_string_code_sender_and_reaction() {
        for (reason, text, sender, code, reaction) in table() {
            assert_eq!(reason.to_string(), text);
            assert_eq!(CloseReason::parse(text), Ok(reason.clone()), "{text}");
            assert_eq!(text.parse::<CloseReason>(), Ok(reason.clone()), "{text}");
            assert_eq!(reason.sender(), sender, "{text}");
            assert_eq!(reason.code(), code, "{text}");
            assert_eq!(reason.runner_reaction(), reaction, "{text}");
        }
    }

    #[test]
    fn spec_codes_for_invalid_packets_and_normal_closes() {
        // §2.1: the engine closes an invalid packet with 1011; §6.7: `envoy.shutdown` is 1000.
        assert_eq!(CloseReason::InvalidPacket { detail: String::new() }.code(), 1011);
        assert_eq!(CloseReason::InvalidInitialPacket { detail: String::new() }.code(), 1011);
        assert_eq!(CloseReason::EnvoyShutdown.code(), 1000);
        assert_eq!(CloseReason::Closed.code(), 1000);
    }

    #[test]
    fn detail_reasons_parse_without_a_detail() {
        assert_eq!(
            CloseReason::parse("ws.invalid_initial_packet"),
            Ok(CloseReason::InvalidInitialPacket { detail: String::new() })
        );
        assert_eq!(
            CloseReason::InvalidInitialPacket { detail: String::new() }.to_string(),
            "ws.invalid_initial_packet"
        );
        // The detail is everything after the first '#', '#' included.
        assert_eq!(
            CloseReason::parse("ws.invalid_packet#a#b"),
            Ok(CloseReason::InvalidPacket { detail: "a#b".to_owned() })
        );
    }

    #[test]
    fn unknown_reasons_and_unexpected_details_are_typed_errors() {
        for text in ["", "ws.", "ws.evicted", "WS.EVICTION", "envoy.invalid_request", "eviction"] {
            assert_eq!(
                CloseReason::parse(text),
                Err(CloseReasonError::Unknown { reason: text.to_owned() }),
                "{text:?}"
            );
        }
        assert_eq!(
            CloseReason::parse("ws.eviction#x"),
            Err(CloseReasonError::UnexpectedDetail {
                reason: "ws.eviction".to_owned(),
                detail: "x".to_owned()
            })
        );
        assert!(matches!(
            CloseReason::parse("ws.closed#"),
            Err(CloseReasonError::UnexpectedDetail { .. })
        ));
    }

    #[test]
    fn close_frame_reason_is_cut_at_a_char_boundary() {
        let short = CloseReason::InvalidPacket { detail: "short".to_owned() };
        assert_eq!(short.to_close_frame_reason(), "ws.invalid_packet#short");

        // 'é' is two bytes; with an odd prefix the cut must step back one byte.
        let long = CloseReason::InvalidPacket { detail: "é".repeat(100) };
        let cut = long.to_close_frame_reason();
        assert!(cut.len() <= MAX_CLOSE_REASON_BYTES);
        assert!(cut.len() >= MAX_CLOSE_REASON_BYTES - 1);
        assert!(long.to_string().starts_with(&cut));
        // "ws.invalid_packet#" is 18 bytes, then 52 'é' = 104 bytes: 122 bytes.
        assert_eq!(cut.len(), 122);
    }

    proptest! {
        #[test]
        fn detail_reasons_round_trip_any_detail(detail in "(?s).{0,40}", which in 0usize..4) {
            let reason = match which {
                0 => CloseReason::InvalidInitialPacket { detail },
                1 => CloseReason::InvalidPacket { detail },
                2 => CloseReason::InvalidRequest { detail },
                _ => CloseReason::EnvoyInvalidPacket { detail },
            };
            prop_assert_eq!(CloseReason::parse(&reason.to_string()), Ok(reason.clone()));
            let framed = reason.to_close_frame_reason();
            prop_assert!(framed.len() <= MAX_CLOSE_REASON_BYTES);
            prop_assert!(reason.to_string().starts_with(&framed));
        }

        #[test]
        fn parsing_any_string_never_panics(text in "(?s).{0,40}") {
            if let Ok(reason) = CloseReason::parse(&text) {
                // Whatever parses prints back to the same string, except a bare trailing '#'.
                let printed = reason.to_string();
                let with_hash = format!("{}#", printed);
                prop_assert!(printed == text || with_hash == text);
            }
        }
    }
}
