//! Proptest strategies for every wire value of envoy protocol v8: every variant of `ToRivet`,
//! `ToEnvoy`, `ToEnvoyConn` and `ActorCommandKeyData`, nested unions included (KV, tunnel, SQLite).
//! Compiled for tests and, for other crates, behind the feature `strategies`.
//!
//! Two families:
//! - **raw** strategies (`to_rivet`, `to_envoy`, `raw_checkpoint`, `raw_command`, …) produce any
//!   value the schema can encode, including ones that break the field rules of `validate`
//!   (negative indices, bad actor ids, metadata that is not a JSON object, empty event lists);
//! - **valid** strategies (`valid_to_rivet`, `valid_to_envoy`, `checkpoint`, `event`, `command`,
//!   `connect_request`, …) produce only values that pass `validate` (and `ConnectRequest::parse`).
//!
//! Sizes stay small so that cases are fast: lists hold at most [`MAX_LIST`] elements, byte
//! strings at most [`MAX_BYTES`] bytes, text at most 8 chars.
//!
//! Must not touch: model state; these are pure generators.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use vbare::{Bytes, Str};

use crate::protocol as p;
use crate::wire::connect::ConnectRequest;

/// Most elements of any generated list or map.
pub const MAX_LIST: usize = 4;
/// Most bytes of any generated `data`.
pub const MAX_BYTES: usize = 16;

// ---- primitives -------------------------------------------------------------------------------

/// Any short text (any Unicode scalar values).
pub fn text() -> BoxedStrategy<Str> {
    "(?s).{0,8}".prop_map(Str::from).boxed()
}

/// Any short byte string.
pub fn bytes() -> BoxedStrategy<Bytes> {
    vec(any::<u8>(), 0..=MAX_BYTES).prop_map(Bytes::from).boxed()
}

fn list<T: std::fmt::Debug + 'static>(element: BoxedStrategy<T>) -> BoxedStrategy<Vec<T>> {
    vec(element, 0..=MAX_LIST).boxed()
}

fn headers() -> BoxedStrategy<BTreeMap<Str, Str>> {
    btree_map(text(), text(), 0..=MAX_LIST).boxed()
}

/// A valid actor id: mostly from a small pool (so that frames repeat actors), otherwise 1..=12 or
/// exactly 64 identifier chars.
pub fn actor_id() -> BoxedStrategy<Str> {
    prop_oneof![
        3 => prop_oneof![Just("actor-a"), Just("actor-b"), Just("c")].prop_map(Str::from),
        2 => "[A-Za-z0-9_-]{1,12}".prop_map(Str::from),
        1 => "[A-Za-z0-9_-]{64}".prop_map(Str::from),
    ]
    .boxed()
}

/// Any actor id string, valid or not.
pub fn raw_actor_id() -> BoxedStrategy<Str> {
    prop_oneof![2 => actor_id(), 1 => text()].boxed()
}

fn generation() -> BoxedStrategy<u32> {
    prop_oneof![3 => 0u32..=2, 1 => any::<u32>()].boxed()
}

/// A non-negative index, small or spread up to `i64::MAX / 2` (so ascending fix-ups never
/// overflow).
fn index() -> BoxedStrategy<i64> {
    prop_oneof![3 => 0i64..=8, 1 => 0i64..=i64::MAX / 2].boxed()
}

fn gateway_id() -> BoxedStrategy<[u8; 4]> {
    any::<[u8; 4]>().boxed()
}

/// A JSON object as text: a few keys with scalar or nested-object values.
pub fn json_object() -> BoxedStrategy<Str> {
    let scalar = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        "(?s).{0,6}".prop_map(serde_json::Value::String),
    ];
    let value = scalar.prop_recursive(2, 8, MAX_LIST as u32, |inner| {
        btree_map("[a-z]{0,4}", inner, 0..=MAX_LIST)
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect()))
    });
    btree_map("(?s).{0,6}", value, 0..=MAX_LIST)
        .prop_map(|map| {
            let object = serde_json::Value::Object(map.into_iter().collect());
            Str::from(object.to_string())
        })
        .boxed()
}

/// Any metadata text: a JSON object, another JSON value, or not JSON at all.
pub fn raw_json() -> BoxedStrategy<Str> {
    prop_oneof![
        2 => json_object(),
        1 => prop_oneof![Just("[]"), Just("null"), Just("1"), Just("\"s\""), Just("{")].prop_map(Str::from),
        1 => text(),
    ]
    .boxed()
}

// ---- checkpoints, events ----------------------------------------------------------------------

/// A valid checkpoint: valid actor id, any generation, index `>= 0`.
pub fn checkpoint() -> BoxedStrategy<p::ActorCheckpoint> {
    (actor_id(), generation(), index())
        .prop_map(|(actor_id, generation, index)| p::ActorCheckpoint {
            actor_id,
            generation,
            index,
        })
        .boxed()
}

/// Any checkpoint: any actor id text, any generation, any index (negative included).
pub fn raw_checkpoint() -> BoxedStrategy<p::ActorCheckpoint> {
    (raw_actor_id(), generation(), prop_oneof![index(), any::<i64>()])
        .prop_map(|(actor_id, generation, index)| p::ActorCheckpoint {
            actor_id,
            generation,
            index,
        })
        .boxed()
}

/// Any event body (every variant of `Event`, `ActorIntent`, `ActorState`, `StopCode`).
pub fn event_body() -> BoxedStrategy<p::Event> {
    let intent =
        prop_oneof![Just(p::ActorIntent::ActorIntentSleep), Just(p::ActorIntent::ActorIntentStop)];
    let stop_code = prop_oneof![Just(p::StopCode::Ok), Just(p::StopCode::Error)];
    let state = prop_oneof![
        Just(p::ActorState::ActorStateRunning),
        (stop_code, option::of(text())).prop_map(|(code, message)| {
            p::ActorState::ActorStateStopped(p::ActorStateStopped { code, message })
        }),
    ];
    prop_oneof![
        intent.prop_map(|intent| p::Event::EventActorIntent(p::EventActorIntent { intent })),
        state.prop_map(|state| p::Event::EventActorStateUpdate(p::EventActorStateUpdate { state })),
        option::of(any::<i64>())
            .prop_map(|alarm_ts| p::Event::EventActorSetAlarm(p::EventActorSetAlarm { alarm_ts })),
    ]
    .boxed()
}

/// An event with a valid checkpoint.
pub fn event() -> BoxedStrategy<p::EventWrapper> {
    (checkpoint(), event_body())
        .prop_map(|(checkpoint, inner)| p::EventWrapper { checkpoint, inner })
        .boxed()
}

/// An event with any checkpoint.
pub fn raw_event() -> BoxedStrategy<p::EventWrapper> {
    (raw_checkpoint(), event_body())
        .prop_map(|(checkpoint, inner)| p::EventWrapper { checkpoint, inner })
        .boxed()
}

/// Makes the events of each `(A, g)` strictly ascending in frame order, raising indices where
/// needed (indices are at most `i64::MAX / 2`, so this cannot overflow).
fn ascending_per_actor(mut events: Vec<p::EventWrapper>) -> Vec<p::EventWrapper> {
    let mut last: BTreeMap<(Str, u32), i64> = BTreeMap::new();
    for event in &mut events {
        let key = (event.checkpoint.actor_id.clone(), event.checkpoint.generation);
        if let Some(&previous) = last.get(&key) {
            if event.checkpoint.index <= previous {
                event.checkpoint.index = previous.saturating_add(1);
            }
        }
        last.insert(key, event.checkpoint.index);
    }
    events
}

// ---- KV -----------------------------------------------------------------------------------------

fn kv_metadata() -> BoxedStrategy<p::KvMetadata> {
    (bytes(), any::<i64>())
        .prop_map(|(version, update_ts)| p::KvMetadata { version, update_ts })
        .boxed()
}

/// Any KV request (every variant of `KvRequestData` and `KvListQuery`).
pub fn kv_request() -> BoxedStrategy<p::KvRequestData> {
    let query = prop_oneof![
        Just(p::KvListQuery::KvListAllQuery),
        (bytes(), bytes(), any::<bool>()).prop_map(|(start, end, exclusive)| {
            p::KvListQuery::KvListRangeQuery(p::KvListRangeQuery { start, end, exclusive })
        }),
        bytes().prop_map(|key| p::KvListQuery::KvListPrefixQuery(p::KvListPrefixQuery { key })),
    ];
    prop_oneof![
        list(bytes()).prop_map(|keys| p::KvRequestData::KvGetRequest(p::KvGetRequest { keys })),
        (query, option::of(any::<bool>()), option::of(any::<u64>())).prop_map(
            |(query, reverse, limit)| {
                p::KvRequestData::KvListRequest(p::KvListRequest { query, reverse, limit })
            }
        ),
        (list(bytes()), list(bytes())).prop_map(|(keys, values)| {
            p::KvRequestData::KvPutRequest(p::KvPutRequest { keys, values })
        }),
        list(bytes())
            .prop_map(|keys| p::KvRequestData::KvDeleteRequest(p::KvDeleteRequest { keys })),
        (bytes(), bytes()).prop_map(|(start, end)| {
            p::KvRequestData::KvDeleteRangeRequest(p::KvDeleteRangeRequest { start, end })
        }),
        Just(p::KvRequestData::KvDropRequest),
    ]
    .boxed()
}

/// Any KV response (every variant of `KvResponseData`).
pub fn kv_response() -> BoxedStrategy<p::KvResponseData> {
    let listing = (list(bytes()), list(bytes()), list(kv_metadata()));
    let listing2 = (list(bytes()), list(bytes()), list(kv_metadata()));
    prop_oneof![
        text()
            .prop_map(|message| p::KvResponseData::KvErrorResponse(p::KvErrorResponse { message })),
        listing.prop_map(|(keys, values, metadata)| {
            p::KvResponseData::KvGetResponse(p::KvGetResponse { keys, values, metadata })
        }),
        listing2.prop_map(|(keys, values, metadata)| {
            p::KvResponseData::KvListResponse(p::KvListResponse { keys, values, metadata })
        }),
        Just(p::KvResponseData::KvPutResponse),
        Just(p::KvResponseData::KvDeleteResponse),
        Just(p::KvResponseData::KvDropResponse),
    ]
    .boxed()
}

/// Any preload bundle.
pub fn preloaded_kv() -> BoxedStrategy<p::PreloadedKv> {
    let entry = (bytes(), bytes(), kv_metadata())
        .prop_map(|(key, value, metadata)| p::PreloadedKvEntry { key, value, metadata })
        .boxed();
    (list(entry), list(bytes()), list(bytes()))
        .prop_map(|(entries, requested_get_keys, requested_prefixes)| p::PreloadedKv {
            entries,
            requested_get_keys,
            requested_prefixes,
        })
        .boxed()
}

// ---- commands -----------------------------------------------------------------------------------

fn actor_config() -> BoxedStrategy<p::ActorConfig> {
    (text(), option::of(text()), any::<i64>(), option::of(bytes()))
        .prop_map(|(name, key, create_ts, input)| p::ActorConfig { name, key, create_ts, input })
        .boxed()
}

fn hibernating_request() -> BoxedStrategy<p::HibernatingRequest> {
    (gateway_id(), gateway_id())
        .prop_map(|(gateway_id, request_id)| p::HibernatingRequest { gateway_id, request_id })
        .boxed()
}

/// Any start command (hydrated or not).
pub fn start_actor() -> BoxedStrategy<p::CommandStartActor> {
    (actor_config(), list(hibernating_request()), option::of(preloaded_kv()))
        .prop_map(|(config, hibernating_requests, preloaded_kv)| p::CommandStartActor {
            config,
            hibernating_requests,
            preloaded_kv,
        })
        .boxed()
}

/// Any stop command (every `StopActorReason`).
pub fn stop_actor() -> BoxedStrategy<p::CommandStopActor> {
    prop_oneof![
        Just(p::StopActorReason::SleepIntent),
        Just(p::StopActorReason::StopIntent),
        Just(p::StopActorReason::Destroy),
        Just(p::StopActorReason::GoingAway),
        Just(p::StopActorReason::Lost),
    ]
    .prop_map(|reason| p::CommandStopActor { reason })
    .boxed()
}

/// Any stored command (both variants of `ActorCommandKeyData`).
pub fn stored_command() -> BoxedStrategy<p::ActorCommandKeyData> {
    prop_oneof![
        start_actor().prop_map(p::ActorCommandKeyData::CommandStartActor),
        stop_actor().prop_map(p::ActorCommandKeyData::CommandStopActor),
    ]
    .boxed()
}

/// A command as the spec allows it (§3.1): a start at index 0 or a stop at index 1, with a valid
/// actor id.
pub fn command() -> BoxedStrategy<p::CommandWrapper> {
    let at = |index: i64| {
        (actor_id(), generation()).prop_map(move |(actor_id, generation)| p::ActorCheckpoint {
            actor_id,
            generation,
            index,
        })
    };
    prop_oneof![
        (at(0), start_actor()).prop_map(|(checkpoint, start)| p::CommandWrapper {
            checkpoint,
            inner: p::Command::CommandStartActor(start),
        }),
        (at(1), stop_actor()).prop_map(|(checkpoint, stop)| p::CommandWrapper {
            checkpoint,
            inner: p::Command::CommandStopActor(stop),
        }),
    ]
    .boxed()
}

/// Any command: any checkpoint with either kind.
pub fn raw_command() -> BoxedStrategy<p::CommandWrapper> {
    let inner = prop_oneof![
        start_actor().prop_map(p::Command::CommandStartActor),
        stop_actor().prop_map(p::Command::CommandStopActor),
    ];
    (raw_checkpoint(), inner)
        .prop_map(|(checkpoint, inner)| p::CommandWrapper { checkpoint, inner })
        .boxed()
}

// ---- tunnel -------------------------------------------------------------------------------------

fn message_id() -> BoxedStrategy<p::MessageId> {
    (gateway_id(), gateway_id(), any::<u16>())
        .prop_map(|(gateway_id, request_id, message_index)| p::MessageId {
            gateway_id,
            request_id,
            message_index,
        })
        .boxed()
}

fn abort_reason() -> BoxedStrategy<p::HttpStreamAbortReason> {
    let kind = prop_oneof![
        Just(p::HttpStreamAbortReasonKind::Unknown),
        Just(p::HttpStreamAbortReasonKind::Cancelled),
        Just(p::HttpStreamAbortReasonKind::HandlerError),
        Just(p::HttpStreamAbortReasonKind::InternalError),
    ];
    (kind, option::of(text()))
        .prop_map(|(kind, detail)| p::HttpStreamAbortReason { kind, detail })
        .boxed()
}

/// Any runner-to-gateway tunnel message kind (all 9 variants).
pub fn to_rivet_tunnel_kind() -> BoxedStrategy<p::ToRivetTunnelMessageKind> {
    use p::ToRivetTunnelMessageKind as K;
    prop_oneof![
        (any::<u16>(), headers(), option::of(bytes()), any::<bool>()).prop_map(
            |(status, headers, body, stream)| {
                K::ToRivetResponseStart(p::ToRivetResponseStart { status, headers, body, stream })
            }
        ),
        (bytes(), any::<bool>()).prop_map(|(body, finish)| K::ToRivetResponseChunk(
            p::ToRivetResponseChunk { body, finish }
        )),
        abort_reason()
            .prop_map(|reason| K::ToRivetResponseAbort(p::ToRivetResponseAbort { reason })),
        any::<u64>().prop_map(|consumed_bytes| {
            K::ToRivetRequestBodyWindowUpdate(p::ToRivetRequestBodyWindowUpdate { consumed_bytes })
        }),
        Just(K::ToRivetRequestBodyCancel),
        any::<bool>().prop_map(|can_hibernate| K::ToRivetWebSocketOpen(p::ToRivetWebSocketOpen {
            can_hibernate
        })),
        (bytes(), any::<bool>()).prop_map(|(data, binary)| {
            K::ToRivetWebSocketMessage(p::ToRivetWebSocketMessage { data, binary })
        }),
        any::<u16>().prop_map(|index| K::ToRivetWebSocketMessageAck(
            p::ToRivetWebSocketMessageAck { index }
        )),
        (option::of(any::<u16>()), option::of(text()), any::<bool>()).prop_map(
            |(code, reason, hibernate)| {
                K::ToRivetWebSocketClose(p::ToRivetWebSocketClose { code, reason, hibernate })
            }
        ),
    ]
    .boxed()
}

/// Any gateway-to-runner tunnel message kind (all 8 variants).
pub fn to_envoy_tunnel_kind() -> BoxedStrategy<p::ToEnvoyTunnelMessageKind> {
    use p::ToEnvoyTunnelMessageKind as K;
    let request_start = (
        raw_actor_id(),
        option::of(any::<u32>()),
        text(),
        text(),
        headers(),
        option::of(bytes()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(actor_id, actor_generation, method, path, headers, body, stream, response_stream)| {
                K::ToEnvoyRequestStart(p::ToEnvoyRequestStart {
                    actor_id,
                    actor_generation,
                    method,
                    path,
                    headers,
                    body,
                    stream,
                    response_stream,
                })
            },
        );
    prop_oneof![
        request_start,
        (bytes(), any::<bool>()).prop_map(|(body, finish)| K::ToEnvoyRequestChunk(
            p::ToEnvoyRequestChunk { body, finish }
        )),
        (option::of(raw_actor_id()), option::of(any::<u32>()), abort_reason()).prop_map(
            |(actor_id, actor_generation, reason)| {
                K::ToEnvoyRequestAbort(p::ToEnvoyRequestAbort {
                    actor_id,
                    actor_generation,
                    reason,
                })
            }
        ),
        Just(K::ToEnvoyRequestBodyCancel),
        any::<u64>().prop_map(|consumed_bytes| {
            K::ToEnvoyResponseBodyWindowUpdate(p::ToEnvoyResponseBodyWindowUpdate {
                consumed_bytes,
            })
        }),
        (raw_actor_id(), option::of(any::<u32>()), text(), headers()).prop_map(
            |(actor_id, actor_generation, path, headers)| {
                K::ToEnvoyWebSocketOpen(p::ToEnvoyWebSocketOpen {
                    actor_id,
                    actor_generation,
                    path,
                    headers,
                })
            }
        ),
        (bytes(), any::<bool>()).prop_map(|(data, binary)| {
            K::ToEnvoyWebSocketMessage(p::ToEnvoyWebSocketMessage { data, binary })
        }),
        (option::of(any::<u16>()), option::of(text())).prop_map(|(code, reason)| {
            K::ToEnvoyWebSocketClose(p::ToEnvoyWebSocketClose { code, reason })
        }),
    ]
    .boxed()
}

fn to_rivet_tunnel() -> BoxedStrategy<p::ToRivetTunnelMessage> {
    (message_id(), to_rivet_tunnel_kind())
        .prop_map(|(message_id, message_kind)| p::ToRivetTunnelMessage { message_id, message_kind })
        .boxed()
}

fn to_envoy_tunnel() -> BoxedStrategy<p::ToEnvoyTunnelMessage> {
    (message_id(), to_envoy_tunnel_kind())
        .prop_map(|(message_id, message_kind)| p::ToEnvoyTunnelMessage { message_id, message_kind })
        .boxed()
}

// ---- SQLite -------------------------------------------------------------------------------------

fn sqlite_error() -> BoxedStrategy<p::SqliteErrorResponse> {
    (text(), text(), text())
        .prop_map(|(group, code, message)| p::SqliteErrorResponse { group, code, message })
        .boxed()
}

fn dirty_page() -> BoxedStrategy<p::SqliteDirtyPage> {
    (any::<u32>(), bytes()).prop_map(|(pgno, bytes)| p::SqliteDirtyPage { pgno, bytes }).boxed()
}

fn bind_param() -> BoxedStrategy<p::SqliteBindParam> {
    use p::SqliteBindParam as V;
    prop_oneof![
        Just(V::SqliteValueNull),
        any::<i64>().prop_map(|value| V::SqliteValueInteger(p::SqliteValueInteger { value })),
        any::<[u8; 8]>().prop_map(|value| V::SqliteValueFloat(p::SqliteValueFloat { value })),
        text().prop_map(|value| V::SqliteValueText(p::SqliteValueText { value })),
        bytes().prop_map(|value| V::SqliteValueBlob(p::SqliteValueBlob { value })),
    ]
    .boxed()
}

fn column_value() -> BoxedStrategy<p::SqliteColumnValue> {
    use p::SqliteColumnValue as V;
    prop_oneof![
        Just(V::SqliteValueNull),
        any::<i64>().prop_map(|value| V::SqliteValueInteger(p::SqliteValueInteger { value })),
        any::<[u8; 8]>().prop_map(|value| V::SqliteValueFloat(p::SqliteValueFloat { value })),
        text().prop_map(|value| V::SqliteValueText(p::SqliteValueText { value })),
        bytes().prop_map(|value| V::SqliteValueBlob(p::SqliteValueBlob { value })),
    ]
    .boxed()
}

fn rows() -> BoxedStrategy<Vec<Vec<p::SqliteColumnValue>>> {
    vec(vec(column_value(), 0..=3), 0..=3).boxed()
}

fn execute_result() -> BoxedStrategy<p::SqliteExecuteResult> {
    (list(text()), rows(), any::<i64>(), option::of(any::<i64>()))
        .prop_map(|(columns, rows, changes, last_insert_row_id)| p::SqliteExecuteResult {
            columns,
            rows,
            changes,
            last_insert_row_id,
        })
        .boxed()
}

fn opt_u64() -> BoxedStrategy<Option<u64>> {
    option::of(any::<u64>()).boxed()
}

fn to_rivet_sqlite() -> BoxedStrategy<p::ToRivet> {
    use p::ToRivet as R;
    let get_pages = (raw_actor_id(), list(any::<u32>().boxed()), opt_u64(), opt_u64()).prop_map(
        |(actor_id, pgnos, expected_generation, expected_head_txid)| p::SqliteGetPagesRequest {
            actor_id,
            pgnos,
            expected_generation,
            expected_head_txid,
        },
    );
    let commit =
        (raw_actor_id(), list(dirty_page()), any::<u32>(), any::<i64>(), opt_u64(), opt_u64())
            .prop_map(
                |(
                    actor_id,
                    dirty_pages,
                    db_size_pages,
                    now_ms,
                    expected_generation,
                    expected_head_txid,
                )| {
                    p::SqliteCommitRequest {
                        actor_id,
                        dirty_pages,
                        db_size_pages,
                        now_ms,
                        expected_generation,
                        expected_head_txid,
                    }
                },
            );
    let stage_begin = (raw_actor_id(), opt_u64(), opt_u64()).prop_map(
        |(actor_id, expected_generation, expected_head_txid)| p::SqliteCommitStageBeginRequest {
            actor_id,
            expected_generation,
            expected_head_txid,
        },
    );
    let stage_segment = (raw_actor_id(), opt_u64(), any::<u64>(), any::<u32>(), list(dirty_page()))
        .prop_map(|(actor_id, expected_generation, txid, first_pgno, dirty_pages)| {
            p::SqliteCommitStageSegmentRequest {
                actor_id,
                expected_generation,
                txid,
                first_pgno,
                dirty_pages,
            }
        });
    let finalize = (
        raw_actor_id(),
        opt_u64(),
        any::<u64>(),
        any::<u32>(),
        any::<i64>(),
        list(any::<u32>().boxed()),
    )
        .prop_map(
            |(
                actor_id,
                expected_generation,
                txid,
                new_db_size_pages,
                now_ms,
                segment_first_pgnos,
            )| {
                p::SqliteCommitFinalizeRequest {
                    actor_id,
                    expected_generation,
                    txid,
                    new_db_size_pages,
                    now_ms,
                    segment_first_pgnos,
                }
            },
        );
    let exec = (raw_actor_id(), raw_actor_id(), any::<u64>(), text()).prop_map(
        |(namespace_id, actor_id, generation, sql)| p::SqliteExecRequest {
            namespace_id,
            actor_id,
            generation,
            sql,
        },
    );
    let execute =
        (raw_actor_id(), raw_actor_id(), any::<u64>(), text(), option::of(list(bind_param())))
            .prop_map(|(namespace_id, actor_id, generation, sql, params)| {
                p::SqliteExecuteRequest { namespace_id, actor_id, generation, sql, params }
            });
    let statement = (text(), option::of(list(bind_param())))
        .prop_map(|(sql, params)| p::SqliteBatchStatement { sql, params })
        .boxed();
    let batch = (raw_actor_id(), raw_actor_id(), any::<u64>(), list(statement)).prop_map(
        |(namespace_id, actor_id, generation, statements)| p::SqliteExecuteBatchRequest {
            namespace_id,
            actor_id,
            generation,
            statements,
        },
    );
    let id = any::<u32>;
    prop_oneof![
        (id(), get_pages).prop_map(|(request_id, data)| {
            R::ToRivetSqliteGetPagesRequest(p::ToRivetSqliteGetPagesRequest { request_id, data })
        }),
        (id(), commit).prop_map(|(request_id, data)| {
            R::ToRivetSqliteCommitRequest(p::ToRivetSqliteCommitRequest { request_id, data })
        }),
        (id(), stage_begin).prop_map(|(request_id, data)| {
            R::ToRivetSqliteCommitStageBeginRequest(p::ToRivetSqliteCommitStageBeginRequest {
                request_id,
                data,
            })
        }),
        (id(), stage_segment).prop_map(|(request_id, data)| {
            R::ToRivetSqliteCommitStageSegmentRequest(p::ToRivetSqliteCommitStageSegmentRequest {
                request_id,
                data,
            })
        }),
        (id(), finalize).prop_map(|(request_id, data)| {
            R::ToRivetSqliteCommitFinalizeRequest(p::ToRivetSqliteCommitFinalizeRequest {
                request_id,
                data,
            })
        }),
        (id(), exec).prop_map(|(request_id, data)| {
            R::ToRivetSqliteExecRequest(p::ToRivetSqliteExecRequest { request_id, data })
        }),
        (id(), execute).prop_map(|(request_id, data)| {
            R::ToRivetSqliteExecuteRequest(p::ToRivetSqliteExecuteRequest { request_id, data })
        }),
        (id(), batch).prop_map(|(request_id, data)| {
            R::ToRivetSqliteExecuteBatchRequest(p::ToRivetSqliteExecuteBatchRequest {
                request_id,
                data,
            })
        }),
    ]
    .boxed()
}

fn to_envoy_sqlite() -> BoxedStrategy<p::ToEnvoy> {
    use p::ToEnvoy as E;
    let head = || option::of(any::<u64>());
    let get_pages = prop_oneof![
        (
            list(
                (any::<u32>(), option::of(bytes()))
                    .prop_map(|(pgno, bytes)| p::SqliteFetchedPage { pgno, bytes })
                    .boxed()
            ),
            head()
        )
            .prop_map(|(pages, head_txid)| {
                p::SqliteGetPagesResponse::SqliteGetPagesOk(p::SqliteGetPagesOk {
                    pages,
                    head_txid,
                })
            }),
        sqlite_error().prop_map(p::SqliteGetPagesResponse::SqliteErrorResponse),
    ];
    let commit = prop_oneof![
        head().prop_map(|head_txid| {
            p::SqliteCommitResponse::SqliteCommitOk(p::SqliteCommitOk { head_txid })
        }),
        sqlite_error().prop_map(p::SqliteCommitResponse::SqliteErrorResponse),
    ];
    let stage_begin = prop_oneof![
        any::<u64>().prop_map(|txid| {
            p::SqliteCommitStageBeginResponse::SqliteCommitStageBeginOk(
                p::SqliteCommitStageBeginOk { txid },
            )
        }),
        sqlite_error().prop_map(p::SqliteCommitStageBeginResponse::SqliteErrorResponse),
    ];
    let stage_segment = prop_oneof![
        any::<u64>().prop_map(|staged_bytes| {
            p::SqliteCommitStageSegmentResponse::SqliteCommitStageSegmentOk(
                p::SqliteCommitStageSegmentOk { staged_bytes },
            )
        }),
        sqlite_error().prop_map(p::SqliteCommitStageSegmentResponse::SqliteErrorResponse),
    ];
    let finalize = prop_oneof![
        head().prop_map(|head_txid| {
            p::SqliteCommitFinalizeResponse::SqliteCommitFinalizeOk(p::SqliteCommitFinalizeOk {
                head_txid,
            })
        }),
        sqlite_error().prop_map(p::SqliteCommitFinalizeResponse::SqliteErrorResponse),
    ];
    let exec = prop_oneof![
        (list(text()), rows()).prop_map(|(columns, rows)| {
            p::SqliteExecResponse::SqliteExecOk(p::SqliteExecOk {
                result: p::SqliteQueryResult { columns, rows },
            })
        }),
        sqlite_error().prop_map(p::SqliteExecResponse::SqliteErrorResponse),
    ];
    let execute = prop_oneof![
        execute_result().prop_map(|result| {
            p::SqliteExecuteResponse::SqliteExecuteOk(p::SqliteExecuteOk { result })
        }),
        sqlite_error().prop_map(p::SqliteExecuteResponse::SqliteErrorResponse),
    ];
    let batch = prop_oneof![
        list(execute_result()).prop_map(|results| {
            p::SqliteExecuteBatchResponse::SqliteExecuteBatchOk(p::SqliteExecuteBatchOk { results })
        }),
        sqlite_error().prop_map(p::SqliteExecuteBatchResponse::SqliteErrorResponse),
    ];
    let id = any::<u32>;
    prop_oneof![
        (id(), get_pages).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteGetPagesResponse(p::ToEnvoySqliteGetPagesResponse { request_id, data })
        }),
        (id(), commit).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteCommitResponse(p::ToEnvoySqliteCommitResponse { request_id, data })
        }),
        (id(), stage_begin).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteCommitStageBeginResponse(p::ToEnvoySqliteCommitStageBeginResponse {
                request_id,
                data,
            })
        }),
        (id(), stage_segment).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteCommitStageSegmentResponse(p::ToEnvoySqliteCommitStageSegmentResponse {
                request_id,
                data,
            })
        }),
        (id(), finalize).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteCommitFinalizeResponse(p::ToEnvoySqliteCommitFinalizeResponse {
                request_id,
                data,
            })
        }),
        (id(), exec).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteExecResponse(p::ToEnvoySqliteExecResponse { request_id, data })
        }),
        (id(), execute).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteExecuteResponse(p::ToEnvoySqliteExecuteResponse { request_id, data })
        }),
        (id(), batch).prop_map(|(request_id, data)| {
            E::ToEnvoySqliteExecuteBatchResponse(p::ToEnvoySqliteExecuteBatchResponse {
                request_id,
                data,
            })
        }),
    ]
    .boxed()
}

// ---- top-level messages -------------------------------------------------------------------------

fn protocol_metadata() -> BoxedStrategy<p::ProtocolMetadata> {
    (any::<i64>(), any::<i64>(), any::<u64>())
        .prop_map(|(envoy_lost_threshold, actor_stop_threshold, max_response_payload_size)| {
            p::ProtocolMetadata {
                envoy_lost_threshold,
                actor_stop_threshold,
                max_response_payload_size,
            }
        })
        .boxed()
}

fn metadata_frame(json: fn() -> BoxedStrategy<Str>) -> BoxedStrategy<p::ToRivet> {
    let names =
        btree_map(text(), json().prop_map(|metadata| p::ActorName { metadata }), 0..=MAX_LIST);
    (option::of(names), option::of(json()))
        .prop_map(|(prepopulate_actor_names, metadata)| {
            p::ToRivet::ToRivetMetadata(p::ToRivetMetadata { prepopulate_actor_names, metadata })
        })
        .boxed()
}

/// The `ToRivet` variants that have no field rules (stopping, pong, tunnel, SQLite).
fn to_rivet_unchecked() -> BoxedStrategy<p::ToRivet> {
    prop_oneof![
        1 => Just(p::ToRivet::ToRivetStopping),
        1 => any::<i64>().prop_map(|ts| p::ToRivet::ToRivetPong(p::ToRivetPong { ts })),
        1 => to_rivet_tunnel().prop_map(p::ToRivet::ToRivetTunnelMessage),
        8 => to_rivet_sqlite(),
    ]
    .boxed()
}

/// Any `ToRivet` the schema can encode (all 15 variants), valid or not.
pub fn to_rivet() -> BoxedStrategy<p::ToRivet> {
    prop_oneof![
        1 => metadata_frame(raw_json),
        1 => vec(raw_event(), 0..=MAX_LIST).prop_map(p::ToRivet::ToRivetEvents),
        1 => list(raw_checkpoint()).prop_map(|last_command_checkpoints| {
            p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands { last_command_checkpoints })
        }),
        1 => (raw_actor_id(), any::<u32>(), kv_request()).prop_map(|(actor_id, request_id, data)| {
            p::ToRivet::ToRivetKvRequest(p::ToRivetKvRequest { actor_id, request_id, data })
        }),
        11 => to_rivet_unchecked(),
    ]
    .boxed()
}

/// A `ToRivet` that passes `validate_to_rivet` (all 15 variants).
pub fn valid_to_rivet() -> BoxedStrategy<p::ToRivet> {
    prop_oneof![
        1 => metadata_frame(json_object),
        1 => vec(event(), 1..=MAX_LIST).prop_map(|events| p::ToRivet::ToRivetEvents(ascending_per_actor(events))),
        1 => list(checkpoint()).prop_map(|last_command_checkpoints| {
            p::ToRivet::ToRivetAckCommands(p::ToRivetAckCommands { last_command_checkpoints })
        }),
        1 => (actor_id(), any::<u32>(), kv_request()).prop_map(|(actor_id, request_id, data)| {
            p::ToRivet::ToRivetKvRequest(p::ToRivetKvRequest { actor_id, request_id, data })
        }),
        11 => to_rivet_unchecked(),
    ]
    .boxed()
}

/// The `ToEnvoy` variants that have no field rules (init, KV response, tunnel, ping, SQLite).
fn to_envoy_unchecked() -> BoxedStrategy<p::ToEnvoy> {
    prop_oneof![
        1 => protocol_metadata().prop_map(|metadata| p::ToEnvoy::ToEnvoyInit(p::ToEnvoyInit { metadata })),
        1 => (any::<u32>(), kv_response()).prop_map(|(request_id, data)| {
            p::ToEnvoy::ToEnvoyKvResponse(p::ToEnvoyKvResponse { request_id, data })
        }),
        1 => to_envoy_tunnel().prop_map(p::ToEnvoy::ToEnvoyTunnelMessage),
        1 => any::<i64>().prop_map(|ts| p::ToEnvoy::ToEnvoyPing(p::ToEnvoyPing { ts })),
        8 => to_envoy_sqlite(),
    ]
    .boxed()
}

/// Any `ToEnvoy` the schema can encode (all 14 variants), valid or not.
pub fn to_envoy() -> BoxedStrategy<p::ToEnvoy> {
    prop_oneof![
        1 => vec(raw_command(), 0..=MAX_LIST).prop_map(p::ToEnvoy::ToEnvoyCommands),
        1 => list(raw_checkpoint()).prop_map(|last_event_checkpoints| {
            p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents { last_event_checkpoints })
        }),
        12 => to_envoy_unchecked(),
    ]
    .boxed()
}

/// A `ToEnvoy` that passes `validate_to_envoy` (all 14 variants).
pub fn valid_to_envoy() -> BoxedStrategy<p::ToEnvoy> {
    prop_oneof![
        1 => vec(command(), 1..=MAX_LIST).prop_map(p::ToEnvoy::ToEnvoyCommands),
        1 => list(checkpoint()).prop_map(|last_event_checkpoints| {
            p::ToEnvoy::ToEnvoyAckEvents(p::ToEnvoyAckEvents { last_event_checkpoints })
        }),
        12 => to_envoy_unchecked(),
    ]
    .boxed()
}

/// Any bus payload (all 5 variants of `ToEnvoyConn`).
pub fn to_envoy_conn() -> BoxedStrategy<p::ToEnvoyConn> {
    prop_oneof![
        (gateway_id(), gateway_id(), any::<i64>()).prop_map(|(gateway_id, request_id, ts)| {
            p::ToEnvoyConn::ToEnvoyConnPing(p::ToEnvoyConnPing { gateway_id, request_id, ts })
        }),
        Just(p::ToEnvoyConn::ToEnvoyConnClose),
        vec(raw_command(), 0..=MAX_LIST).prop_map(p::ToEnvoyConn::ToEnvoyCommands),
        list(raw_checkpoint()).prop_map(|last_event_checkpoints| {
            p::ToEnvoyConn::ToEnvoyAckEvents(p::ToEnvoyAckEvents { last_event_checkpoints })
        }),
        to_envoy_tunnel().prop_map(p::ToEnvoyConn::ToEnvoyTunnelMessage),
    ]
    .boxed()
}

// ---- connect requests ---------------------------------------------------------------------------

/// A connect request that `ConnectRequest::parse` accepts: any non-empty namespace, a pool name of
/// 1..=128 chars, an envoy key of 3..=128 identifier chars (UUIDs included), optional slots >= 1.
pub fn connect_request() -> BoxedStrategy<ConnectRequest> {
    let envoy_key = prop_oneof![
        "[A-Za-z0-9_-]{3,16}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[A-Za-z0-9_-]{128}",
    ];
    let pool_name = prop_oneof!["(?s).{1,12}", "(?s).{128}"];
    ("(?s).{1,12}", pool_name, envoy_key, any::<u32>(), option::of(1u32..=u32::MAX))
        .prop_map(|(namespace, pool_name, envoy_key, version, slots)| ConnectRequest {
            protocol_version: crate::constants::PROTOCOL_VERSION,
            namespace,
            pool_name,
            envoy_key,
            version,
            slots,
        })
        .boxed()
}
