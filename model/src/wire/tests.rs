//! Tests of frames, embedded-version values, validators and strategies. Connect requests, close
//! reasons and identifiers are tested next to their code.
//!
//! Reference results come from outside the code under test: the crate's own `Versioned` API
//! (`serialize`, `deserialize`, `serialize_with_embedded_version`), byte strings written by hand
//! from the v8 schema, and variant lists copied from the schema.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use vbare::{Str, Versioned};

use super::strategies;
use super::*;
use crate::protocol::{self as p, versioned};

// ---- helpers ------------------------------------------------------------------------------------

fn codec() -> Codec {
    Codec::default()
}

/// Whether a decoded value holds a map of two or more entries. BARE decoders accept map pairs in
/// any order while the owned `BTreeMap` re-encodes them sorted, so such a value may legitimately
/// re-encode to different bytes of the same length. Nothing else in v8 has two encodings.
fn to_rivet_has_multi_entry_map(message: &p::ToRivet) -> bool {
    match message {
        p::ToRivet::ToRivetMetadata(metadata) => {
            metadata.prepopulate_actor_names.as_ref().is_some_and(|names| names.len() >= 2)
        }
        p::ToRivet::ToRivetTunnelMessage(tunnel) => match &tunnel.message_kind {
            p::ToRivetTunnelMessageKind::ToRivetResponseStart(start) => start.headers.len() >= 2,
            _ => false,
        },
        _ => false,
    }
}

fn to_envoy_tunnel_has_multi_entry_map(tunnel: &p::ToEnvoyTunnelMessage) -> bool {
    match &tunnel.message_kind {
        p::ToEnvoyTunnelMessageKind::ToEnvoyRequestStart(start) => start.headers.len() >= 2,
        p::ToEnvoyTunnelMessageKind::ToEnvoyWebSocketOpen(open) => open.headers.len() >= 2,
        _ => false,
    }
}

fn to_envoy_has_multi_entry_map(message: &p::ToEnvoy) -> bool {
    match message {
        p::ToEnvoy::ToEnvoyTunnelMessage(tunnel) => to_envoy_tunnel_has_multi_entry_map(tunnel),
        _ => false,
    }
}

/// A corruption of a byte string.
#[derive(Clone, Debug)]
enum Corruption {
    /// XOR the byte at `at % len` with a non-zero mask.
    Flip { at: usize, mask: u8 },
    /// Insert `byte` before position `at % (len + 1)`.
    Insert { at: usize, byte: u8 },
    /// Delete the byte at `at % len`.
    Delete { at: usize },
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Corruption::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Corruption::Insert { at, byte }),
        any::<usize>().prop_map(|at| Corruption::Delete { at }),
    ]
}

fn corrupt(bytes: &[u8], corruptions: &[Corruption]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for corruption in corruptions {
        match *corruption {
            Corruption::Flip { at, mask } if !out.is_empty() => {
                let at = at % out.len();
                out[at] ^= mask;
            }
            Corruption::Insert { at, byte } => {
                let at = at % (out.len() + 1);
                out.insert(at, byte);
            }
            Corruption::Delete { at } if !out.is_empty() => {
                let at = at % out.len();
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

/// Samples `strategy` until `names(value)` has covered `expected`, at most `budget` times.
fn assert_covers<T: std::fmt::Debug>(
    strategy: impl Strategy<Value = T>,
    name: impl Fn(&T) -> &'static str,
    expected: &[&'static str],
    budget: usize,
) {
    let mut runner = TestRunner::deterministic();
    let expected: BTreeSet<&str> = expected.iter().copied().collect();
    let mut seen = BTreeSet::new();
    for _ in 0..budget {
        let Ok(tree) = strategy.new_tree(&mut runner) else { continue };
        let value = tree.current();
        let n = name(&value);
        assert!(expected.contains(n), "unexpected variant {n}");
        seen.insert(n);
        if seen.len() == expected.len() {
            return;
        }
    }
    let missing: Vec<_> = expected.difference(&seen).collect();
    panic!("variants never generated in {budget} samples: {missing:?}");
}

/// Every `ToRivet` variant, copied from the v8 schema.
const TO_RIVET_VARIANTS: [&str; 15] = [
    "ToRivetMetadata",
    "ToRivetEvents",
    "ToRivetAckCommands",
    "ToRivetStopping",
    "ToRivetPong",
    "ToRivetKvRequest",
    "ToRivetTunnelMessage",
    "ToRivetSqliteGetPagesRequest",
    "ToRivetSqliteCommitRequest",
    "ToRivetSqliteCommitStageBeginRequest",
    "ToRivetSqliteCommitStageSegmentRequest",
    "ToRivetSqliteCommitFinalizeRequest",
    "ToRivetSqliteExecRequest",
    "ToRivetSqliteExecuteRequest",
    "ToRivetSqliteExecuteBatchRequest",
];

/// Every `ToEnvoy` variant, copied from the v8 schema.
const TO_ENVOY_VARIANTS: [&str; 14] = [
    "ToEnvoyInit",
    "ToEnvoyCommands",
    "ToEnvoyAckEvents",
    "ToEnvoyKvResponse",
    "ToEnvoyTunnelMessage",
    "ToEnvoyPing",
    "ToEnvoySqliteGetPagesResponse",
    "ToEnvoySqliteCommitResponse",
    "ToEnvoySqliteCommitStageBeginResponse",
    "ToEnvoySqliteCommitStageSegmentResponse",
    "ToEnvoySqliteCommitFinalizeResponse",
    "ToEnvoySqliteExecResponse",
    "ToEnvoySqliteExecuteResponse",
    "ToEnvoySqliteExecuteBatchResponse",
];

/// Every `ToEnvoyConn` variant, copied from the v8 schema.
const TO_ENVOY_CONN_VARIANTS: [&str; 5] = [
    "ToEnvoyConnPing",
    "ToEnvoyConnClose",
    "ToEnvoyCommands",
    "ToEnvoyAckEvents",
    "ToEnvoyTunnelMessage",
];

fn stored_command_name(command: &p::ActorCommandKeyData) -> &'static str {
    match command {
        p::ActorCommandKeyData::CommandStartActor(_) => "CommandStartActor",
        p::ActorCommandKeyData::CommandStopActor(_) => "CommandStopActor",
    }
}

fn kv_request_name(request: &p::KvRequestData) -> &'static str {
    match request {
        p::KvRequestData::KvGetRequest(_) => "KvGetRequest",
        p::KvRequestData::KvListRequest(_) => "KvListRequest",
        p::KvRequestData::KvPutRequest(_) => "KvPutRequest",
        p::KvRequestData::KvDeleteRequest(_) => "KvDeleteRequest",
        p::KvRequestData::KvDeleteRangeRequest(_) => "KvDeleteRangeRequest",
        p::KvRequestData::KvDropRequest => "KvDropRequest",
    }
}

fn kv_response_name(response: &p::KvResponseData) -> &'static str {
    match response {
        p::KvResponseData::KvErrorResponse(_) => "KvErrorResponse",
        p::KvResponseData::KvGetResponse(_) => "KvGetResponse",
        p::KvResponseData::KvListResponse(_) => "KvListResponse",
        p::KvResponseData::KvPutResponse => "KvPutResponse",
        p::KvResponseData::KvDeleteResponse => "KvDeleteResponse",
        p::KvResponseData::KvDropResponse => "KvDropResponse",
    }
}

fn to_rivet_tunnel_name(kind: &p::ToRivetTunnelMessageKind) -> &'static str {
    use p::ToRivetTunnelMessageKind as K;
    match kind {
        K::ToRivetResponseStart(_) => "ToRivetResponseStart",
        K::ToRivetResponseChunk(_) => "ToRivetResponseChunk",
        K::ToRivetResponseAbort(_) => "ToRivetResponseAbort",
        K::ToRivetRequestBodyWindowUpdate(_) => "ToRivetRequestBodyWindowUpdate",
        K::ToRivetRequestBodyCancel => "ToRivetRequestBodyCancel",
        K::ToRivetWebSocketOpen(_) => "ToRivetWebSocketOpen",
        K::ToRivetWebSocketMessage(_) => "ToRivetWebSocketMessage",
        K::ToRivetWebSocketMessageAck(_) => "ToRivetWebSocketMessageAck",
        K::ToRivetWebSocketClose(_) => "ToRivetWebSocketClose",
    }
}

fn to_envoy_tunnel_name(kind: &p::ToEnvoyTunnelMessageKind) -> &'static str {
    use p::ToEnvoyTunnelMessageKind as K;
    match kind {
        K::ToEnvoyRequestStart(_) => "ToEnvoyRequestStart",
        K::ToEnvoyRequestChunk(_) => "ToEnvoyRequestChunk",
        K::ToEnvoyRequestAbort(_) => "ToEnvoyRequestAbort",
        K::ToEnvoyRequestBodyCancel => "ToEnvoyRequestBodyCancel",
        K::ToEnvoyResponseBodyWindowUpdate(_) => "ToEnvoyResponseBodyWindowUpdate",
        K::ToEnvoyWebSocketOpen(_) => "ToEnvoyWebSocketOpen",
        K::ToEnvoyWebSocketMessage(_) => "ToEnvoyWebSocketMessage",
        K::ToEnvoyWebSocketClose(_) => "ToEnvoyWebSocketClose",
    }
}

fn checkpoint(actor_id: &'static str, generation: u32, index: i64) -> p::ActorCheckpoint {
    p::ActorCheckpoint { actor_id: Str::from(actor_id), generation, index }
}

fn running(actor_id: &'static str, generation: u32, index: i64) -> p::EventWrapper {
    p::EventWrapper {
        checkpoint: checkpoint(actor_id, generation, index),
        inner: p::Event::EventActorStateUpdate(p::EventActorStateUpdate {
            state: p::ActorState::ActorStateRunning,
        }),
    }
}

fn start_command() -> p::CommandStartActor {
    p::CommandStartActor {
        config: p::ActorConfig {
            name: Str::from("counter"),
            key: None,
            create_ts: 1_700_000_000_000,
            input: None,
        },
        hibernating_requests: Vec::new(),
        preloaded_kv: None,
    }
}

fn start(actor_id: &'static str, index: i64) -> p::CommandWrapper {
    p::CommandWrapper {
        checkpoint: checkpoint(actor_id, 0, index),
        inner: p::Command::CommandStartActor(start_command()),
    }
}

fn stop(actor_id: &'static str, index: i64) -> p::CommandWrapper {
    p::CommandWrapper {
        checkpoint: checkpoint(actor_id, 0, index),
        inner: p::Command::CommandStopActor(p::CommandStopActor {
            reason: p::StopActorReason::SleepIntent,
        }),
    }
}

fn metadata(names: &[(&'static str, &'static str)], metadata: Option<&'static str>) -> p::ToRivet {
    p::ToRivet::ToRivetMetadata(p::ToRivetMetadata {
        prepopulate_actor_names: if names.is_empty() {
            None
        } else {
            Some(
                names
                    .iter()
                    .map(|(name, json)| {
                        (Str::from(*name), p::ActorName { metadata: Str::from(*json) })
                    })
                    .collect(),
            )
        },
        metadata: metadata.map(Str::from),
    })
}

// ---- frames: round trips and byte compatibility -------------------------------------------------

proptest! {
    #[test]
    fn to_rivet_round_trips_and_matches_the_crate(message in strategies::to_rivet()) {
        let bytes = codec().encode_to_rivet(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Byte-compatible with the published API the real runner uses.
        let reference = versioned::ToRivet::serialize(&message, 8).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&bytes, &reference);
        prop_assert_eq!(codec().decode_to_rivet(&bytes), Ok(message.clone()));
        let by_crate = versioned::ToRivet::deserialize(&bytes, 8).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(by_crate, message);
    }

    #[test]
    fn to_envoy_round_trips_and_matches_the_crate(message in strategies::to_envoy()) {
        let bytes = codec().encode_to_envoy(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reference = versioned::ToEnvoy::serialize(&message, 8).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&bytes, &reference);
        prop_assert_eq!(codec().decode_to_envoy(&bytes), Ok(message.clone()));
        let by_crate = versioned::ToEnvoy::deserialize(&bytes, 8).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(by_crate, message);
    }

    // ---- truncation and trailing bytes ----

    #[test]
    fn every_truncation_and_extension_of_a_to_rivet_frame_fails(
        message in strategies::to_rivet(),
        extra in any::<u8>(),
    ) {
        let bytes = codec().encode_to_rivet(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for len in 0..bytes.len() {
            prop_assert!(codec().decode_to_rivet(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        let error = codec().decode_to_rivet(&longer).err();
        prop_assert_eq!(
            error.as_ref().and_then(FrameError::decode_failure).map(|f| (f.kind, f.offset)),
            Some((DecodeFailureKind::TrailingBytes, bytes.len())),
            "{:?}", error
        );
    }

    #[test]
    fn every_truncation_and_extension_of_a_to_envoy_frame_fails(
        message in strategies::to_envoy(),
        extra in any::<u8>(),
    ) {
        let bytes = codec().encode_to_envoy(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for len in 0..bytes.len() {
            prop_assert!(codec().decode_to_envoy(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        let error = codec().decode_to_envoy(&longer).err();
        prop_assert_eq!(
            error.as_ref().and_then(FrameError::decode_failure).map(|f| (f.kind, f.offset)),
            Some((DecodeFailureKind::TrailingBytes, bytes.len())),
            "{:?}", error
        );
    }

    // ---- corruption ----

    #[test]
    fn corrupted_to_rivet_frames_never_panic_and_decode_canonically(
        message in strategies::to_rivet(),
        corruptions in proptest::collection::vec(corruption(), 1..=3),
    ) {
        let bytes = codec().encode_to_rivet(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let corrupted = corrupt(&bytes, &corruptions);
        if let Ok(decoded) = codec().decode_to_rivet(&corrupted) {
            let again = codec().encode_to_rivet(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if again != corrupted {
                // Only map pair order may differ (see `to_rivet_has_multi_entry_map`).
                prop_assert!(to_rivet_has_multi_entry_map(&decoded), "non-canonical decode of {:?}", corrupted);
                prop_assert_eq!(again.len(), corrupted.len());
                prop_assert_eq!(codec().decode_to_rivet(&again), Ok(decoded));
            }
        }
    }

    #[test]
    fn corrupted_to_envoy_frames_never_panic_and_decode_canonically(
        message in strategies::to_envoy(),
        corruptions in proptest::collection::vec(corruption(), 1..=3),
    ) {
        let bytes = codec().encode_to_envoy(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let corrupted = corrupt(&bytes, &corruptions);
        if let Ok(decoded) = codec().decode_to_envoy(&corrupted) {
            let again = codec().encode_to_envoy(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if again != corrupted {
                prop_assert!(to_envoy_has_multi_entry_map(&decoded), "non-canonical decode of {:?}", corrupted);
                prop_assert_eq!(again.len(), corrupted.len());
                prop_assert_eq!(codec().decode_to_envoy(&again), Ok(decoded));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        // Whatever decodes re-encodes to the same bytes, up to map pair order.
        if let Ok(decoded) = codec().decode_to_rivet(&bytes) {
            let again = codec().encode_to_rivet(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again == bytes || to_rivet_has_multi_entry_map(&decoded));
        }
        if let Ok(decoded) = codec().decode_to_envoy(&bytes) {
            let again = codec().encode_to_envoy(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again == bytes || to_envoy_has_multi_entry_map(&decoded));
        }
        let _ = decode_stored_command(&bytes);
        let _ = decode_bus(&bytes);
    }
}

#[test]
fn swapped_map_pairs_decode_but_re_encode_sorted() {
    // The documented exception to canonical decoding, shown by hand: `prepopulateActorNames` with
    // keys "b" then "a". Layout: tag 0, optional 1, map count 2, then str "b", ActorName{"{}"},
    // str "a", ActorName{"{}"}, then optional 0 (no metadata).
    let swapped = [0, 1, 2, 1, b'b', 2, b'{', b'}', 1, b'a', 2, b'{', b'}', 0];
    let decoded = codec().decode_to_rivet(&swapped).expect("swapped map pairs decode");
    assert_eq!(decoded, metadata(&[("a", "{}"), ("b", "{}")], None));
    let sorted = [0, 1, 2, 1, b'a', 2, b'{', b'}', 1, b'b', 2, b'{', b'}', 0];
    assert_eq!(codec().encode_to_rivet(&decoded).as_deref(), Ok(&sorted[..]));
}

// ---- frames: hand-written undecodable bytes -----------------------------------------------------

fn failure_of(bytes: &[u8]) -> DecodeFailure {
    match codec().decode_to_rivet(bytes) {
        Err(FrameError::Malformed { message: FrameMessage::ToRivet, failure }) => failure,
        other => panic!("expected a malformed ToRivet frame for {bytes:?}, got {other:?}"),
    }
}

#[test]
fn empty_and_garbage_frames_are_errors() {
    assert_eq!(failure_of(&[]).kind, DecodeFailureKind::Truncated);
    assert!(codec().decode_to_envoy(&[]).is_err());
    // 15 is one past the last ToRivet tag (14), 14 past the last ToEnvoy tag (13).
    assert_eq!(failure_of(&[15]).kind, DecodeFailureKind::UnknownTag);
    assert_eq!(failure_of(&[15]).offset, 0);
    assert!(matches!(
        codec().decode_to_envoy(&[14]),
        Err(FrameError::Malformed {
            failure: DecodeFailure { kind: DecodeFailureKind::UnknownTag, .. },
            ..
        })
    ));
    assert!(codec().decode_to_rivet(b"hello, engine").is_err());
    assert!(codec().decode_to_envoy(&[0xFF; 32]).is_err());
}

#[test]
fn each_malformation_kind_is_reported() {
    // ToRivetStopping (tag 3) is a bare tag; one more byte is trailing.
    let trailing = failure_of(&[3, 0]);
    assert_eq!((trailing.kind, trailing.offset), (DecodeFailureKind::TrailingBytes, 1));

    // ToRivetPong (tag 4) needs an 8-byte i64.
    assert_eq!(failure_of(&[4, 1, 2, 3]).kind, DecodeFailureKind::Truncated);

    // Tag 3 written as a two-byte varint.
    assert_eq!(failure_of(&[0x83, 0x00]).kind, DecodeFailureKind::NonCanonicalVarint);

    // ToRivetMetadata: no names, metadata present, a 1-byte str holding 0xFF.
    let utf8 = failure_of(&[0, 0, 1, 1, 0xFF]);
    assert_eq!(utf8.kind, DecodeFailureKind::InvalidUtf8);
    assert!(utf8.path.contains("metadata"), "{utf8}");

    // ToRivetMetadata: optional tag 2 is not a BARE optional tag.
    assert_eq!(failure_of(&[0, 2]).kind, DecodeFailureKind::UnknownTag);

    // ToRivetMetadata with the name "a" twice.
    let duplicate = failure_of(&[0, 1, 2, 1, b'a', 2, b'{', b'}', 1, b'a', 2, b'{', b'}', 0]);
    assert_eq!(duplicate.kind, DecodeFailureKind::DuplicateMapKey);

    // ToRivetTunnelMessage (tag 6): MessageId (4 + 4 + 2 bytes), kind ToRivetWebSocketOpen (tag 5)
    // with canHibernate = 2.
    let bool_frame = [6, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 5, 2];
    assert_eq!(failure_of(&bool_frame).kind, DecodeFailureKind::InvalidBool);

    // ToRivetEvents claiming 200 events in a 3-byte frame.
    let claimed = failure_of(&[1, 200, 1]);
    assert!(
        matches!(
            claimed.kind,
            DecodeFailureKind::LengthExceedsInput | DecodeFailureKind::Truncated
        ),
        "{claimed}"
    );
}

#[test]
fn frame_errors_render_in_one_line_with_kind_offset_and_path() {
    let error = codec().decode_to_rivet(&[0, 0, 1, 1, 0xFF]).expect_err("invalid UTF-8");
    let detail = error.close_detail();
    assert!(!detail.contains('\n'));
    assert!(detail.starts_with("undecodable ToRivet frame: invalid UTF-8 at "), "{detail}");
    assert!(detail.contains("metadata"), "{detail}");
    assert!(detail.ends_with("(byte 4)"), "{detail}");
    let reason = CloseReason::InvalidPacket { detail };
    assert_eq!(CloseReason::parse(&reason.to_string()), Ok(reason));
}

#[test]
fn text_frames_are_undecodable() {
    assert_eq!(
        codec().decode_to_rivet_frame(DataFrame::Text("{\"hello\":1}")),
        Err(FrameError::TextFrame { len: 11 })
    );
    assert_eq!(
        codec().decode_to_envoy_frame(DataFrame::Text("")),
        Err(FrameError::TextFrame { len: 0 })
    );
    assert_eq!(
        FrameError::TextFrame { len: 3 }.close_detail(),
        "text frame of 3 bytes (protocol frames are binary)"
    );
    // The binary path is the plain decoder.
    let ping = p::ToEnvoy::ToEnvoyPing(p::ToEnvoyPing { ts: 7 });
    let bytes = codec().encode_to_envoy(&ping).expect("encodes");
    assert_eq!(codec().decode_to_envoy_frame(DataFrame::Binary(&bytes)), Ok(ping));
    let pong = p::ToRivet::ToRivetPong(p::ToRivetPong { ts: 7 });
    let bytes = codec().encode_to_rivet(&pong).expect("encodes");
    assert_eq!(codec().decode_to_rivet_frame(DataFrame::Binary(&bytes)), Ok(pong));
}

#[test]
fn oversized_frames_are_rejected_on_encode_and_decode() {
    let message = p::ToRivet::ToRivetPong(p::ToRivetPong { ts: -1 });
    // Tag byte plus an 8-byte i64.
    let exact = Codec::new(9);
    let bytes = exact.encode_to_rivet(&message).expect("a frame of exactly the limit is sent");
    assert_eq!(bytes.len(), 9);
    assert_eq!(exact.decode_to_rivet(&bytes), Ok(message.clone()));

    let small = Codec::new(8);
    assert_eq!(
        small.encode_to_rivet(&message),
        Err(FrameError::Oversized { message: FrameMessage::ToRivet, len: 9, max: 8 })
    );
    assert_eq!(
        small.decode_to_rivet(&bytes),
        Err(FrameError::Oversized { message: FrameMessage::ToRivet, len: 9, max: 8 })
    );
    // The size check comes before decoding: oversized garbage is reported as oversized.
    assert_eq!(
        small.decode_to_envoy(&[0xFF; 20]),
        Err(FrameError::Oversized { message: FrameMessage::ToEnvoy, len: 20, max: 8 })
    );

    let commands = p::ToEnvoy::ToEnvoyCommands(vec![start("actor-a", 0); 4]);
    let len = Codec::default().encode_to_envoy(&commands).expect("fits the default").len();
    let limited = Codec::new(len - 1);
    assert_eq!(
        limited.encode_to_envoy(&commands),
        Err(FrameError::Oversized { message: FrameMessage::ToEnvoy, len, max: len - 1 })
    );
    assert_eq!(Codec::default().max_frame_bytes, crate::constants::MAX_FRAME_BYTES);
}

// ---- embedded-version values --------------------------------------------------------------------

proptest! {
    #[test]
    fn stored_commands_round_trip_with_the_embedded_version(command in strategies::stored_command()) {
        let bytes = encode_stored_command(&command);
        prop_assert_eq!(&bytes[..2], &[8u8, 0][..]);
        let reference = versioned::ActorCommandKeyData::serialize_with_embedded_version(&command, 8)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&bytes, &reference);
        prop_assert_eq!(decode_stored_command(&bytes), Ok(command.clone()));
        let by_crate = versioned::ActorCommandKeyData::deserialize_with_embedded_version(&bytes)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(by_crate, command);
        for len in 0..bytes.len() {
            prop_assert!(decode_stored_command(&bytes[..len]).is_err());
        }
    }

    #[test]
    fn bus_payloads_round_trip_with_the_embedded_version(payload in strategies::to_envoy_conn()) {
        let bytes = encode_bus(&payload);
        prop_assert_eq!(&bytes[..2], &[8u8, 0][..]);
        let reference = versioned::ToEnvoyConn::serialize_with_embedded_version(&payload, 8)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&bytes, &reference);
        prop_assert_eq!(decode_bus(&bytes), Ok(payload.clone()));
        for len in 0..bytes.len() {
            prop_assert!(decode_bus(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(
            matches!(
                decode_bus(&longer),
                Err(EmbeddedValueError::Malformed { failure: DecodeFailure { kind: DecodeFailureKind::TrailingBytes, .. }, .. })
            ),
            "trailing byte accepted"
        );
    }

    #[test]
    fn commands_convert_to_and_from_their_stored_form(command in strategies::raw_command()) {
        let (checkpoint, stored) = command_to_stored(command.clone());
        prop_assert_eq!(&checkpoint, &command.checkpoint);
        prop_assert_eq!(stored_command_name(&stored), match &command.inner {
            p::Command::CommandStartActor(_) => "CommandStartActor",
            p::Command::CommandStopActor(_) => "CommandStopActor",
        });
        prop_assert_eq!(command_from_stored(checkpoint, stored), command);
    }

    #[test]
    fn dehydrated_commands_hold_no_bundle_and_no_hibernating_requests(command in strategies::stored_command()) {
        match (dehydrated(command.clone()), command) {
            (p::ActorCommandKeyData::CommandStartActor(bare), p::ActorCommandKeyData::CommandStartActor(full)) => {
                prop_assert_eq!(bare.preloaded_kv, None);
                prop_assert!(bare.hibernating_requests.is_empty());
                prop_assert_eq!(bare.config, full.config);
            }
            (p::ActorCommandKeyData::CommandStopActor(bare), p::ActorCommandKeyData::CommandStopActor(full)) => {
                prop_assert_eq!(bare, full);
            }
            (bare, full) => prop_assert!(false, "{:?} changed kind to {:?}", full, bare),
        }
    }
}

#[test]
fn stored_values_with_the_wrong_version_are_typed_internal_errors() {
    let stored =
        encode_stored_command(&p::ActorCommandKeyData::CommandStopActor(p::CommandStopActor {
            reason: p::StopActorReason::Lost,
        }));
    // Header 8 (little-endian), union tag 1 (stop), enum value 4 (LOST), from the schema.
    assert_eq!(stored, vec![8, 0, 1, 4]);
    for version in [0u16, 1, 7, 9, 0x0800, u16::MAX] {
        let mut bytes = stored.clone();
        bytes[..2].copy_from_slice(&version.to_le_bytes());
        assert_eq!(
            decode_stored_command(&bytes),
            Err(EmbeddedValueError::UnsupportedVersion {
                what: EmbeddedValue::StoredCommand,
                found: version,
                expected: 8
            })
        );
    }
    assert_eq!(
        decode_bus(&[8]),
        Err(EmbeddedValueError::MissingVersionHeader { what: EmbeddedValue::BusPayload, len: 1 })
    );
    assert_eq!(
        decode_stored_command(&[]),
        Err(EmbeddedValueError::MissingVersionHeader {
            what: EmbeddedValue::StoredCommand,
            len: 0
        })
    );
    // A bare frame body (no header) is not a stored value: [1, 4] reads as version 0x0401.
    assert!(matches!(
        decode_stored_command(&[1, 4]),
        Err(EmbeddedValueError::UnsupportedVersion { found: 0x0401, .. })
    ));
    // Unknown union tag 2 in the body; the offset counts the header.
    let error = decode_stored_command(&[8, 0, 2]).expect_err("tag 2 is not a command");
    assert_eq!(
        error,
        EmbeddedValueError::Malformed {
            what: EmbeddedValue::StoredCommand,
            failure: DecodeFailure {
                kind: DecodeFailureKind::UnknownTag,
                offset: 2,
                path: String::new()
            },
        }
    );
    assert_eq!(
        error.to_string(),
        "internal: stored command does not decode: unknown tag at the root (byte 2)"
    );
    // ToEnvoyConnClose is tag 1 with no body.
    assert_eq!(decode_bus(&[8, 0, 1]), Ok(p::ToEnvoyConn::ToEnvoyConnClose));
}

#[test]
fn dehydrated_strips_a_hydrated_start() {
    let mut hydrated = start_command();
    hydrated.preloaded_kv = Some(crate::protocol::preloaded_kv::empty_keyspace());
    hydrated.hibernating_requests =
        vec![p::HibernatingRequest { gateway_id: [1; 4], request_id: [2; 4] }];
    assert_eq!(
        dehydrated(p::ActorCommandKeyData::CommandStartActor(hydrated)),
        p::ActorCommandKeyData::CommandStartActor(start_command())
    );
}

// ---- validators ---------------------------------------------------------------------------------

proptest! {
    #[test]
    fn valid_to_rivet_frames_pass(message in strategies::valid_to_rivet()) {
        prop_assert_eq!(validate_to_rivet(&message), Ok(()));
    }

    #[test]
    fn valid_to_envoy_frames_pass(message in strategies::valid_to_envoy()) {
        prop_assert_eq!(validate_to_envoy(&message), Ok(()));
    }

    #[test]
    fn validators_agree_with_an_independent_check_of_checkpoints(message in strategies::to_envoy()) {
        // Reference: a command frame is valid iff it has 1..=32 commands and each has a parsable
        // id, a non-negative index, a start exactly at 0 and no stop at 0.
        if let p::ToEnvoy::ToEnvoyCommands(commands) = &message {
            let expected = !commands.is_empty()
                && commands.len() <= 32
                && commands.iter().all(|c| {
                    let id_ok = !c.checkpoint.actor_id.is_empty()
                        && c.checkpoint.actor_id.len() <= 64
                        && c.checkpoint.actor_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    let index_ok = match c.inner {
                        p::Command::CommandStartActor(_) => c.checkpoint.index == 0,
                        p::Command::CommandStopActor(_) => c.checkpoint.index > 0,
                    };
                    id_ok && index_ok
                });
            prop_assert_eq!(validate_to_envoy(&message).is_ok(), expected, "{:?}", validate_to_envoy(&message));
        }
    }

    #[test]
    fn validators_never_panic_on_raw_frames(to_rivet in strategies::to_rivet(), to_envoy in strategies::to_envoy()) {
        if let Err(violation) = validate_to_rivet(&to_rivet) {
            prop_assert!(!violation.close_detail().contains('\n'));
        }
        if let Err(violation) = validate_to_envoy(&to_envoy) {
            prop_assert!(!violation.close_detail().contains('\n'));
        }
    }
}

#[test]
fn negative_indices_are_violations() {
    let events = p::ToRivet::ToRivetEvents(vec![running("actor-a", 0, -1)]);
    assert_eq!(
        validate_to_rivet(&events),
        Err(ProtocolViolation::NegativeIndex {
            at: "ToRivetEvents[0].checkpoint.index".to_owned(),
            actor_id: "actor-a".to_owned(),
            index: -1
        })
    );
    let ack = p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
        last_command_checkpoints: vec![
            checkpoint("actor-a", 0, 0),
            checkpoint("actor-b", 1, i64::MIN),
        ],
    });
    assert_eq!(
        validate_to_rivet(&ack),
        Err(ProtocolViolation::NegativeIndex {
            at: "ToRivetAckCommands.lastCommandCheckpoints[1].index".to_owned(),
            actor_id: "actor-b".to_owned(),
            index: i64::MIN
        })
    );
    let ack_events = p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
        last_event_checkpoints: vec![checkpoint("actor-a", 0, -5)],
    });
    assert!(matches!(
        validate_to_envoy(&ack_events),
        Err(ProtocolViolation::NegativeIndex { index: -5, .. })
    ));
    let commands = p::ToEnvoy::ToEnvoyCommands(vec![stop("actor-a", -1)]);
    assert!(matches!(
        validate_to_envoy(&commands),
        Err(ProtocolViolation::NegativeIndex { index: -1, .. })
    ));
}

#[test]
fn unparsable_actor_ids_are_violations() {
    let events = p::ToRivet::ToRivetEvents(vec![running("actor a", 0, 0)]);
    assert_eq!(
        validate_to_rivet(&events),
        Err(ProtocolViolation::InvalidActorId {
            at: "ToRivetEvents[0].checkpoint.actorId".to_owned(),
            actor_id: "actor a".to_owned(),
            problem: IdentifierError::InvalidChar { ch: ' ', position: 5 },
        })
    );
    let kv = p::ToRivet::ToRivetKvRequest(p::ToRivetKvRequest {
        actor_id: Str::from(""),
        request_id: 1,
        data: p::KvRequestData::KvDropRequest,
    });
    assert_eq!(
        validate_to_rivet(&kv),
        Err(ProtocolViolation::InvalidActorId {
            at: "ToRivetKvRequest.actorId".to_owned(),
            actor_id: String::new(),
            problem: IdentifierError::TooShort { len: 0, min: 1 },
        })
    );
    let long: &'static str = Box::leak("a".repeat(65).into_boxed_str());
    let ack = p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
        last_command_checkpoints: vec![checkpoint(long, 0, 0)],
    });
    assert!(matches!(
        validate_to_rivet(&ack),
        Err(ProtocolViolation::InvalidActorId {
            problem: IdentifierError::TooLong { len: 65, max: 64 },
            ..
        })
    ));
    let commands = p::ToEnvoy::ToEnvoyCommands(vec![start("actor/a", 0)]);
    assert!(matches!(validate_to_envoy(&commands), Err(ProtocolViolation::InvalidActorId { .. })));
    let ack_events = p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents {
        last_event_checkpoints: vec![checkpoint("ä", 0, 0)],
    });
    assert!(matches!(
        validate_to_envoy(&ack_events),
        Err(ProtocolViolation::InvalidActorId { .. })
    ));
}

#[test]
fn metadata_must_be_json_objects() {
    assert_eq!(validate_to_rivet(&metadata(&[], None)), Ok(()));
    assert_eq!(
        validate_to_rivet(&metadata(&[("counter", "{\"preload\":{}}")], Some("{}"))),
        Ok(())
    );
    for (json, problem) in [
        ("[]", MetadataProblem::NotAnObject("array")),
        ("null", MetadataProblem::NotAnObject("null")),
        ("3", MetadataProblem::NotAnObject("number")),
        ("\"{}\"", MetadataProblem::NotAnObject("string")),
        ("true", MetadataProblem::NotAnObject("boolean")),
    ] {
        assert_eq!(
            validate_to_rivet(&metadata(&[], Some(json))),
            Err(ProtocolViolation::MetadataNotObject {
                at: "ToRivetMetadata.metadata".to_owned(),
                problem
            }),
            "{json}"
        );
    }
    assert!(matches!(
        validate_to_rivet(&metadata(&[], Some("{\"a\":"))),
        Err(ProtocolViolation::MetadataNotObject { problem: MetadataProblem::NotJson(_), .. })
    ));
    assert!(matches!(
        validate_to_rivet(&metadata(&[], Some(""))),
        Err(ProtocolViolation::MetadataNotObject { problem: MetadataProblem::NotJson(_), .. })
    ));
    assert_eq!(
        validate_to_rivet(&metadata(&[("good", "{}"), ("bad", "[1]")], Some("{}"))),
        Err(ProtocolViolation::MetadataNotObject {
            at: "ToRivetMetadata.prepopulateActorNames[\"bad\"].metadata".to_owned(),
            problem: MetadataProblem::NotAnObject("array"),
        })
    );
    // Deeply nested JSON is refused by serde_json's recursion limit, not by a stack overflow.
    let deep: &'static str = Box::leak(
        format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000)).into_boxed_str(),
    );
    assert!(matches!(
        validate_to_rivet(&metadata(&[], Some(deep))),
        Err(ProtocolViolation::MetadataNotObject { problem: MetadataProblem::NotJson(_), .. })
    ));
}

#[test]
fn event_frames_hold_1_to_128_events() {
    assert_eq!(
        validate_to_rivet(&p::ToRivet::ToRivetEvents(Vec::new())),
        Err(ProtocolViolation::NoEvents)
    );
    let full: Vec<_> = (0..128).map(|i| running("actor-a", 0, i)).collect();
    assert_eq!(validate_to_rivet(&p::ToRivet::ToRivetEvents(full.clone())), Ok(()));
    let mut over = full;
    over.push(running("actor-a", 0, 128));
    assert_eq!(
        validate_to_rivet(&p::ToRivet::ToRivetEvents(over)),
        Err(ProtocolViolation::TooManyEvents { count: 129, max: 128 })
    );
}

#[test]
fn events_of_one_actor_generation_must_ascend() {
    // Interleaved actors and generations are fine as long as each (A, g) ascends.
    let fine = vec![
        running("actor-a", 0, 3),
        running("actor-b", 0, 0),
        running("actor-a", 1, 0),
        running("actor-a", 0, 7),
        running("actor-b", 0, 1),
    ];
    assert_eq!(validate_to_rivet(&p::ToRivet::ToRivetEvents(fine)), Ok(()));

    let repeated =
        vec![running("actor-a", 0, 3), running("actor-b", 0, 0), running("actor-a", 0, 3)];
    assert_eq!(
        validate_to_rivet(&p::ToRivet::ToRivetEvents(repeated)),
        Err(ProtocolViolation::EventsOutOfOrder {
            at: "ToRivetEvents[2].checkpoint.index".to_owned(),
            actor_id: "actor-a".to_owned(),
            generation: 0,
            previous: 3,
            index: 3,
        })
    );
    let descending = vec![running("actor-a", 2, 5), running("actor-a", 2, 4)];
    assert!(matches!(
        validate_to_rivet(&p::ToRivet::ToRivetEvents(descending)),
        Err(ProtocolViolation::EventsOutOfOrder { previous: 5, index: 4, generation: 2, .. })
    ));
}

#[test]
fn command_frames_hold_1_to_32_commands() {
    assert_eq!(
        validate_to_envoy(&p::ToEnvoy::ToEnvoyCommands(Vec::new())),
        Err(ProtocolViolation::NoCommands)
    );
    let full = vec![start("actor-a", 0); 32];
    assert_eq!(validate_to_envoy(&p::ToEnvoy::ToEnvoyCommands(full.clone())), Ok(()));
    let mut over = full;
    over.push(stop("actor-a", 1));
    assert_eq!(
        validate_to_envoy(&p::ToEnvoy::ToEnvoyCommands(over)),
        Err(ProtocolViolation::TooManyCommands { count: 33, max: 32 })
    );
}

#[test]
fn stop_at_index_0_and_start_elsewhere_are_violations() {
    assert_eq!(
        validate_to_envoy(&p::ToEnvoy::ToEnvoyCommands(vec![
            start("actor-a", 0),
            stop("actor-b", 0)
        ])),
        Err(ProtocolViolation::StopAtIndexZero {
            at: "ToEnvoyCommands[1].inner".to_owned(),
            actor_id: "actor-b".to_owned(),
            generation: 0,
        })
    );
    assert_eq!(
        validate_to_envoy(&p::ToEnvoy::ToEnvoyCommands(vec![start("actor-a", 1)])),
        Err(ProtocolViolation::StartNotAtIndexZero {
            at: "ToEnvoyCommands[0].inner".to_owned(),
            actor_id: "actor-a".to_owned(),
            generation: 0,
            index: 1,
        })
    );
    // Out-of-order commands are the runner's business (it holds them), not a field rule.
    assert_eq!(
        validate_to_envoy(&p::ToEnvoy::ToEnvoyCommands(vec![
            stop("actor-a", 1),
            start("actor-a", 0)
        ])),
        Ok(())
    );
}

#[test]
fn out_of_scope_and_simple_frames_are_valid() {
    let sqlite = p::ToRivet::ToRivetSqliteExecRequest(p::ToRivetSqliteExecRequest {
        request_id: 1,
        data: p::SqliteExecRequest {
            namespace_id: Str::from("not an id!"),
            actor_id: Str::from(""),
            generation: 0,
            sql: Str::from("select 1"),
        },
    });
    assert_eq!(validate_to_rivet(&sqlite), Ok(()));
    assert_eq!(validate_to_rivet(&p::ToRivet::ToRivetStopping), Ok(()));
    let ack = p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands {
        last_command_checkpoints: Vec::new(),
    });
    assert_eq!(validate_to_rivet(&ack), Ok(()));
    let init = p::ToEnvoy::ToEnvoyInit(p::ToEnvoyInit {
        metadata: p::ProtocolMetadata {
            envoy_lost_threshold: 15_000,
            actor_stop_threshold: 30_000,
            max_response_payload_size: 1,
        },
    });
    assert_eq!(validate_to_envoy(&init), Ok(()));
}

#[test]
fn violations_render_as_close_details() {
    let violation = validate_to_envoy(&p::ToEnvoy::ToEnvoyCommands(vec![stop("actor-a", 0)]))
        .expect_err("stop at 0");
    assert_eq!(
        violation.close_detail(),
        "ToEnvoyCommands[0].inner: stop command at index 0 for (actor-a, 0)"
    );
}

// ---- strategies reach every variant -------------------------------------------------------------

const COVERAGE_BUDGET: usize = 20_000;

#[test]
fn strategies_generate_every_to_rivet_variant() {
    assert_covers(strategies::to_rivet(), to_rivet_kind, &TO_RIVET_VARIANTS, COVERAGE_BUDGET);
    assert_covers(strategies::valid_to_rivet(), to_rivet_kind, &TO_RIVET_VARIANTS, COVERAGE_BUDGET);
}

#[test]
fn strategies_generate_every_to_envoy_variant() {
    assert_covers(strategies::to_envoy(), to_envoy_kind, &TO_ENVOY_VARIANTS, COVERAGE_BUDGET);
    assert_covers(strategies::valid_to_envoy(), to_envoy_kind, &TO_ENVOY_VARIANTS, COVERAGE_BUDGET);
}

#[test]
fn strategies_generate_every_bus_payload_and_stored_command_variant() {
    assert_covers(
        strategies::to_envoy_conn(),
        to_envoy_conn_kind,
        &TO_ENVOY_CONN_VARIANTS,
        COVERAGE_BUDGET,
    );
    assert_covers(
        strategies::stored_command(),
        stored_command_name,
        &["CommandStartActor", "CommandStopActor"],
        COVERAGE_BUDGET,
    );
}

#[test]
fn strategies_generate_every_nested_union_variant() {
    assert_covers(
        strategies::kv_request(),
        kv_request_name,
        &[
            "KvGetRequest",
            "KvListRequest",
            "KvPutRequest",
            "KvDeleteRequest",
            "KvDeleteRangeRequest",
            "KvDropRequest",
        ],
        COVERAGE_BUDGET,
    );
    assert_covers(
        strategies::kv_response(),
        kv_response_name,
        &[
            "KvErrorResponse",
            "KvGetResponse",
            "KvListResponse",
            "KvPutResponse",
            "KvDeleteResponse",
            "KvDropResponse",
        ],
        COVERAGE_BUDGET,
    );
    assert_covers(
        strategies::to_rivet_tunnel_kind(),
        to_rivet_tunnel_name,
        &[
            "ToRivetResponseStart",
            "ToRivetResponseChunk",
            "ToRivetResponseAbort",
            "ToRivetRequestBodyWindowUpdate",
            "ToRivetRequestBodyCancel",
            "ToRivetWebSocketOpen",
            "ToRivetWebSocketMessage",
            "ToRivetWebSocketMessageAck",
            "ToRivetWebSocketClose",
        ],
        COVERAGE_BUDGET,
    );
    assert_covers(
        strategies::to_envoy_tunnel_kind(),
        to_envoy_tunnel_name,
        &[
            "ToEnvoyRequestStart",
            "ToEnvoyRequestChunk",
            "ToEnvoyRequestAbort",
            "ToEnvoyRequestBodyCancel",
            "ToEnvoyResponseBodyWindowUpdate",
            "ToEnvoyWebSocketOpen",
            "ToEnvoyWebSocketMessage",
            "ToEnvoyWebSocketClose",
        ],
        COVERAGE_BUDGET,
    );
}

#[test]
fn raw_strategies_generate_violations_of_every_checked_kind() {
    // The raw strategies must be able to produce invalid frames, or the validator properties
    // above would only ever see valid input.
    let mut runner = TestRunner::deterministic();
    let mut kinds = BTreeSet::new();
    let rivet = strategies::to_rivet();
    let envoy = strategies::to_envoy();
    for _ in 0..COVERAGE_BUDGET {
        if let Ok(tree) = rivet.new_tree(&mut runner) {
            if let Err(violation) = validate_to_rivet(&tree.current()) {
                kinds.insert(violation_kind(&violation));
            }
        }
        if let Ok(tree) = envoy.new_tree(&mut runner) {
            if let Err(violation) = validate_to_envoy(&tree.current()) {
                kinds.insert(violation_kind(&violation));
            }
        }
    }
    // Too-many-events/commands need more than MAX_LIST elements and are covered by unit tests.
    let expected: BTreeSet<&str> = [
        "NegativeIndex",
        "InvalidActorId",
        "MetadataNotObject",
        "NoEvents",
        "EventsOutOfOrder",
        "NoCommands",
        "StopAtIndexZero",
        "StartNotAtIndexZero",
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, expected);
}

fn violation_kind(violation: &ProtocolViolation) -> &'static str {
    match violation {
        ProtocolViolation::NegativeIndex { .. } => "NegativeIndex",
        ProtocolViolation::InvalidActorId { .. } => "InvalidActorId",
        ProtocolViolation::MetadataNotObject { .. } => "MetadataNotObject",
        ProtocolViolation::NoEvents => "NoEvents",
        ProtocolViolation::TooManyEvents { .. } => "TooManyEvents",
        ProtocolViolation::EventsOutOfOrder { .. } => "EventsOutOfOrder",
        ProtocolViolation::NoCommands => "NoCommands",
        ProtocolViolation::TooManyCommands { .. } => "TooManyCommands",
        ProtocolViolation::StopAtIndexZero { .. } => "StopAtIndexZero",
        ProtocolViolation::StartNotAtIndexZero { .. } => "StartNotAtIndexZero",
    }
}
