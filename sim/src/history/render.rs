//! One compact, human-readable line per history entry.
//!
//! Conventions: checkpoints are `actor:generation:index`; runners `namespace/envoy_key`; short
//! byte strings (keys, small values) are `0x…` hex; long ones are `<len>B#<hash>` (keys keep their
//! first bytes: `0x0601…300B#<hash>`); frames are `frame <conn> <r>e|e>r> <sent|recv> <runner>
//! <len>B #<bytes hash> <kind> …`; bundles are `bundle(e=<entries> b=<bytes> gk=<requested
//! get-keys> pf=<requested prefixes> #<hash>)`. Facts without a dedicated form are written as
//! `<fact> field=value …` from their serde form, fields in name order.

use pegsim_model::fact::{Fact, StartupRecord};
use pegsim_model::protocol::{
    ActorIntent, ActorState, Command, CommandWrapper, Event, EventWrapper, KvListQuery,
    KvRequestData, KvResponseData, PreloadedKv, StopActorReason, StopCode, ToEnvoy, ToRivet,
};
use pegsim_model::store::Mutation;
use serde_json::Value;

use crate::run::{Decoded, Dir, Entry, TimedEntry};
use crate::seed::Fnv64;

/// Bodies longer than this many characters are cut and end with the hash of the whole body.
pub const MAX_BODY_CHARS: usize = 600;
/// Byte strings up to this length are written out in hex.
const SHORT_BYTES: usize = 24;
/// Bytes of a long key kept in hex before its length and hash.
const KEY_HEAD_BYTES: usize = 8;

/// The line of one entry: `{at_ms:>9} {node:<9} {body}`.
pub fn render(e: &TimedEntry) -> String {
    format!("{:>9} {:<9} {}", e.at_ms, escape(&e.node), render_body(&e.entry))
}

/// The body of one entry's line (control characters escaped, length capped).
pub fn render_body(entry: &Entry) -> String {
    let raw = match entry {
        Entry::Fact(f) => fact(f),
        Entry::Frame { conn, runner, dir, received, len, bytes_hash, decoded } => {
            let arrow = match dir {
                Dir::ToEngine => "r>e",
                Dir::ToRunner => "e>r",
            };
            let how = if *received { "recv" } else { "sent" };
            let runner = runner.as_ref().map_or("-".to_string(), |r| r.to_string());
            format!(
                "frame {conn} {arrow} {how} {runner} {len}B #{bytes_hash:016x} {}",
                decoded_frame(decoded)
            )
        }
        Entry::Link { conn, runner, event } => {
            let runner = runner.as_ref().map_or("-".to_string(), |r| r.to_string());
            format!("link {conn} {runner} {event}")
        }
        Entry::Fault { class, detail } => format!("fault {class} {detail}"),
        Entry::Node { node, event } => format!("node {node} {event}"),
        Entry::Phase { phase } => format!("phase {phase}"),
        Entry::Workload { action } => format!("workload {action}"),
    };
    cap(escape(&raw))
}

fn hash12(bytes: &[u8]) -> String {
    format!("{:012x}", Fnv64::hash(bytes) >> 16)
}

/// A value: hex when short, else `<len>B#<hash>`.
fn value_repr(b: &[u8]) -> String {
    if b.len() <= SHORT_BYTES {
        format!("0x{}", hex(b))
    } else {
        format!("{}B#{}", b.len(), hash12(b))
    }
}

/// A key: hex when short, else its first bytes, length and hash.
fn key_repr(b: &[u8]) -> String {
    if b.len() <= SHORT_BYTES {
        format!("0x{}", hex(b))
    } else {
        let head = b.get(..KEY_HEAD_BYTES).unwrap_or(b);
        format!("0x{}…{}B#{}", hex(head), b.len(), hash12(b))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn keys_repr<K: AsRef<[u8]>>(keys: &[K]) -> String {
    list(keys.iter().map(|k| key_repr(k.as_ref())))
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

fn cp(actor: &str, generation: u32, index: i64) -> String {
    format!("{actor}:{generation}:{index}")
}

/// Escape control characters (and, so that escaping stays one-to-one, backslashes) so a line
/// never breaks.
fn escape(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Cut a body longer than [`MAX_BODY_CHARS`], ending it with the count of cut characters and the
/// hash of the whole body (so any change still changes the line).
fn cap(body: String) -> String {
    let count = body.chars().count();
    if count <= MAX_BODY_CHARS {
        return body;
    }
    let keep = MAX_BODY_CHARS - 48;
    let head: String = body.chars().take(keep).collect();
    format!("{head}…(+{} chars #{})", count - keep, hash12(body.as_bytes()))
}

fn stop_code(c: &StopCode) -> &'static str {
    match c {
        StopCode::Ok => "ok",
        StopCode::Error => "error",
    }
}

fn stop_reason(r: &StopActorReason) -> &'static str {
    match r {
        StopActorReason::SleepIntent => "sleep_intent",
        StopActorReason::StopIntent => "stop_intent",
        StopActorReason::Destroy => "destroy",
        StopActorReason::GoingAway => "going_away",
        StopActorReason::Lost => "lost",
    }
}

/// An event: `intent:sleep`, `intent:stop`, `running`, `stopped:ok`, `stopped:error("msg")`,
/// `alarm:<ts>`, `alarm:none`.
pub(crate) fn event(e: &Event) -> String {
    match e {
        Event::EventActorIntent(i) => match i.intent {
            ActorIntent::ActorIntentSleep => "intent:sleep".to_string(),
            ActorIntent::ActorIntentStop => "intent:stop".to_string(),
        },
        Event::EventActorStateUpdate(u) => match &u.state {
            ActorState::ActorStateRunning => "running".to_string(),
            ActorState::ActorStateStopped(s) => match &s.message {
                Some(m) => format!("stopped:{}({:?})", stop_code(&s.code), m.as_str()),
                None => format!("stopped:{}", stop_code(&s.code)),
            },
        },
        Event::EventActorSetAlarm(a) => match a.alarm_ts {
            Some(ts) => format!("alarm:{ts}"),
            None => "alarm:none".to_string(),
        },
    }
}

fn feed(h: &mut Fnv64, bytes: &[u8]) {
    h.write(&(bytes.len() as u64).to_le_bytes());
    h.write(bytes);
}

/// A preload bundle as entry count, key+value bytes, requested counts and a hash of everything.
pub(crate) fn bundle(b: &PreloadedKv) -> String {
    let mut h = Fnv64::new();
    let mut bytes = 0usize;
    for e in &b.entries {
        feed(&mut h, &e.key);
        feed(&mut h, &e.value);
        feed(&mut h, &e.metadata.version);
        h.write(&e.metadata.update_ts.to_le_bytes());
        bytes += e.key.len() + e.value.len();
    }
    h.write(b"|");
    for k in &b.requested_get_keys {
        feed(&mut h, k);
    }
    h.write(b"|");
    for p in &b.requested_prefixes {
        feed(&mut h, p);
    }
    format!(
        "bundle(e={} b={} gk={} pf={} #{:012x})",
        b.entries.len(),
        bytes,
        b.requested_get_keys.len(),
        b.requested_prefixes.len(),
        h.finish() >> 16
    )
}

fn command(c: &CommandWrapper) -> String {
    let at = cp(c.checkpoint.actor_id.as_str(), c.checkpoint.generation, c.checkpoint.index);
    match &c.inner {
        Command::CommandStartActor(s) => {
            let input = s.config.input.as_ref().map_or("none".to_string(), |i| value_repr(i));
            let bundle = s.preloaded_kv.as_ref().map_or("bundle=none".to_string(), bundle);
            let hib = if s.hibernating_requests.is_empty() {
                String::new()
            } else {
                format!(" hibernating={}", s.hibernating_requests.len())
            };
            format!("{at} start name={} input={input}{hib} {bundle}", s.config.name.as_str())
        }
        Command::CommandStopActor(s) => format!("{at} stop:{}", stop_reason(&s.reason)),
    }
}

fn event_wrapper(e: &EventWrapper) -> String {
    let at = cp(e.checkpoint.actor_id.as_str(), e.checkpoint.generation, e.checkpoint.index);
    format!("{at}={}", event(&e.inner))
}

fn kv_request(data: &KvRequestData) -> String {
    match data {
        KvRequestData::KvGetRequest(g) => format!("get {}", keys_repr(&g.keys)),
        KvRequestData::KvListRequest(l) => {
            let query = match &l.query {
                KvListQuery::KvListAllQuery => "all".to_string(),
                KvListQuery::KvListRangeQuery(q) => format!(
                    "range {}..{}{}",
                    key_repr(&q.start),
                    key_repr(&q.end),
                    if q.exclusive { " exclusive" } else { "" }
                ),
                KvListQuery::KvListPrefixQuery(q) => format!("prefix {}", key_repr(&q.key)),
            };
            let reverse = if l.reverse == Some(true) { " reverse" } else { "" };
            let limit = l.limit.map_or(String::new(), |n| format!(" limit={n}"));
            format!("list {query}{reverse}{limit}")
        }
        KvRequestData::KvPutRequest(p) => format!(
            "put {}",
            list(p.keys.iter().zip(p.values.iter().map(Some).chain(std::iter::repeat(None))).map(
                |(k, v)| format!(
                    "{}={}",
                    key_repr(k),
                    v.map_or("?".to_string(), |v| value_repr(v))
                )
            ))
        ),
        KvRequestData::KvDeleteRequest(d) => format!("delete {}", keys_repr(&d.keys)),
        KvRequestData::KvDeleteRangeRequest(r) => {
            format!("delete_range {}..{}", key_repr(&r.start), key_repr(&r.end))
        }
        KvRequestData::KvDropRequest => "drop".to_string(),
    }
}

fn kv_entries_hash<K: AsRef<[u8]>, V: AsRef<[u8]>>(keys: &[K], values: &[V]) -> String {
    let mut h = Fnv64::new();
    for k in keys {
        feed(&mut h, k.as_ref());
    }
    for v in values {
        feed(&mut h, v.as_ref());
    }
    format!("{:012x}", h.finish() >> 16)
}

fn kv_response(data: &KvResponseData) -> String {
    match data {
        KvResponseData::KvErrorResponse(e) => format!("error {:?}", e.message.as_str()),
        KvResponseData::KvGetResponse(g) => format!(
            "get n={} {} #{}",
            g.keys.len(),
            keys_repr(&g.keys),
            kv_entries_hash(&g.keys, &g.values)
        ),
        KvResponseData::KvListResponse(l) => {
            format!("list n={} #{}", l.keys.len(), kv_entries_hash(&l.keys, &l.values))
        }
        KvResponseData::KvPutResponse => "put_ok".to_string(),
        KvResponseData::KvDeleteResponse => "delete_ok".to_string(),
        KvResponseData::KvDropResponse => "drop_ok".to_string(),
    }
}

fn to_rivet(m: &ToRivet) -> String {
    match m {
        ToRivet::ToRivetMetadata(md) => {
            let names = md.prepopulate_actor_names.as_ref().map_or("none".to_string(), |names| {
                list(names.iter().map(|(n, a)| {
                    format!("{}#{}", n.as_str(), hash12(a.metadata.as_str().as_bytes()))
                }))
            });
            let meta = md.metadata.as_ref().map_or("none".to_string(), |j| {
                format!("{}B#{}", j.len(), hash12(j.as_str().as_bytes()))
            });
            format!("metadata names={names} meta={meta}")
        }
        ToRivet::ToRivetEvents(evs) => {
            format!("events n={} {}", evs.len(), list(evs.iter().map(event_wrapper)))
        }
        ToRivet::ToRivetAckCommands(a) => format!(
            "ack_commands {}",
            list(a.last_command_checkpoints.iter().map(|c| cp(
                c.actor_id.as_str(),
                c.generation,
                c.index
            )))
        ),
        ToRivet::ToRivetStopping => "stopping".to_string(),
        ToRivet::ToRivetPong(p) => format!("pong ts={}", p.ts),
        ToRivet::ToRivetKvRequest(r) => {
            format!(
                "kv_request {} id={} {}",
                r.actor_id.as_str(),
                r.request_id,
                kv_request(&r.data)
            )
        }
        ToRivet::ToRivetTunnelMessage(_) => "tunnel_message".to_string(),
        ToRivet::ToRivetSqliteGetPagesRequest(_) => "sqlite_get_pages_request".to_string(),
        ToRivet::ToRivetSqliteCommitRequest(_) => "sqlite_commit_request".to_string(),
        ToRivet::ToRivetSqliteCommitStageBeginRequest(_) => {
            "sqlite_commit_stage_begin_request".to_string()
        }
        ToRivet::ToRivetSqliteCommitStageSegmentRequest(_) => {
            "sqlite_commit_stage_segment_request".to_string()
        }
        ToRivet::ToRivetSqliteCommitFinalizeRequest(_) => {
            "sqlite_commit_finalize_request".to_string()
        }
        ToRivet::ToRivetSqliteExecRequest(_) => "sqlite_exec_request".to_string(),
        ToRivet::ToRivetSqliteExecuteRequest(_) => "sqlite_execute_request".to_string(),
        ToRivet::ToRivetSqliteExecuteBatchRequest(_) => "sqlite_execute_batch_request".to_string(),
    }
}

fn to_envoy(m: &ToEnvoy) -> String {
    match m {
        ToEnvoy::ToEnvoyInit(_) => "init".to_string(),
        ToEnvoy::ToEnvoyCommands(cmds) => {
            format!("commands n={} {}", cmds.len(), list(cmds.iter().map(command)))
        }
        ToEnvoy::ToEnvoyAckEvents(a) => format!(
            "ack_events {}",
            list(a.last_event_checkpoints.iter().map(|c| cp(
                c.actor_id.as_str(),
                c.generation,
                c.index
            )))
        ),
        ToEnvoy::ToEnvoyKvResponse(r) => {
            format!("kv_response id={} {}", r.request_id, kv_response(&r.data))
        }
        ToEnvoy::ToEnvoyTunnelMessage(_) => "tunnel_message".to_string(),
        ToEnvoy::ToEnvoyPing(p) => format!("ping ts={}", p.ts),
        ToEnvoy::ToEnvoySqliteGetPagesResponse(_) => "sqlite_get_pages_response".to_string(),
        ToEnvoy::ToEnvoySqliteCommitResponse(_) => "sqlite_commit_response".to_string(),
        ToEnvoy::ToEnvoySqliteCommitStageBeginResponse(_) => {
            "sqlite_commit_stage_begin_response".to_string()
        }
        ToEnvoy::ToEnvoySqliteCommitStageSegmentResponse(_) => {
            "sqlite_commit_stage_segment_response".to_string()
        }
        ToEnvoy::ToEnvoySqliteCommitFinalizeResponse(_) => {
            "sqlite_commit_finalize_response".to_string()
        }
        ToEnvoy::ToEnvoySqliteExecResponse(_) => "sqlite_exec_response".to_string(),
        ToEnvoy::ToEnvoySqliteExecuteResponse(_) => "sqlite_execute_response".to_string(),
        ToEnvoy::ToEnvoySqliteExecuteBatchResponse(_) => {
            "sqlite_execute_batch_response".to_string()
        }
    }
}

fn decoded_frame(d: &Decoded) -> String {
    match d {
        Decoded::ToRivet(m) => to_rivet(m),
        Decoded::ToEnvoy(m) => to_envoy(m),
        Decoded::Undecodable(e) => format!("undecodable: {e}"),
    }
}

fn mutation(m: &Mutation) -> String {
    match m {
        Mutation::Set { key, value } => format!("set {}={}", key_repr(key), value_repr(value)),
        Mutation::Clear { key } => format!("clear {}", key_repr(key)),
        Mutation::ClearRange { range } => format!(
            "clear_range {}..{}",
            key_repr(&range.start),
            range.end.as_ref().map_or("end".to_string(), |e| key_repr(e))
        ),
        Mutation::AtomicAdd { key, delta } => format!("add {} {delta:+}", key_repr(key)),
        Mutation::SetVersionstampedKey { prefix, suffix, value } => {
            format!("set_vs_key {}+vs+{}={}", key_repr(prefix), key_repr(suffix), value_repr(value))
        }
        Mutation::SetVersionstampedValue { key, value, offset } => {
            format!("set_vs_value {}={}@{offset}", key_repr(key), value_repr(value))
        }
    }
}

/// The snake_case serde name of a unit enum value (its `Debug` form if it has none).
fn serde_name<T: serde::Serialize + std::fmt::Debug>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => s,
        _ => format!("{t:?}"),
    }
}

fn startup_record(r: &StartupRecord) -> String {
    let mut reads = Fnv64::new();
    for (what, result) in &r.reads {
        feed(&mut reads, what.as_bytes());
        feed(&mut reads, result.as_bytes());
    }
    let mut writes = Fnv64::new();
    for (keys, values) in &r.writes {
        writes.write(b"|");
        for k in keys {
            feed(&mut writes, k);
        }
        for v in values {
            feed(&mut writes, v);
        }
    }
    format!(
        "new={} counter={} reads={}#{:012x} writes={}#{:012x}",
        r.new_actor,
        r.counter,
        r.reads.len(),
        reads.finish() >> 16,
        r.writes.len(),
        writes.finish() >> 16
    )
}

fn fact(f: &Fact) -> String {
    match f {
        Fact::Commit { label, version, applied } => format!(
            "commit {} v={version} {}",
            serde_name(label),
            list(applied.iter().map(mutation))
        ),
        Fact::PreloadFetched {
            runner,
            conn,
            actor,
            generation,
            read_version,
            budget,
            manifest_json,
            bundle: b,
            attempts,
            failed,
        } => format!(
            "preload_fetched {runner} {conn} {actor}:{generation} v={} T={budget} attempts={attempts} failed={failed} manifest={} {}",
            read_version.map_or("-".to_string(), |v| v.to_string()),
            manifest_json
                .as_ref()
                .map_or("none".to_string(), |m| format!("{}B#{}", m.len(), hash12(m.as_bytes()))),
            b.as_ref().map_or("bundle=none".to_string(), bundle),
        ),
        Fact::StartupObserved { runner, actor, generation, had_bundle, live_reads, record } => {
            format!(
                "startup_observed {runner} {actor}:{generation} had_bundle={had_bundle} live_reads={live_reads} {}",
                startup_record(record)
            )
        }
        Fact::EventEmit { runner, actor, generation, index, event: e } => {
            format!("event_emit {runner} {}={}", cp(actor, *generation, *index), event(e))
        }
        Fact::EventClassified { actor, runner, generation, index, class, event: e } => format!(
            "event_classified {runner} {} {} {}",
            cp(actor, *generation, *index),
            serde_name(class),
            event(e)
        ),
        Fact::CommandsSent { runner, conn, replay, checkpoints } => format!(
            "commands_sent {runner} {conn} replay={replay} {}",
            list(checkpoints.iter().map(|(a, g, i)| cp(a, *g, *i)))
        ),
        other => generic_fact(other),
    }
}

/// `<fact> field=value …` from the fact's serde form.
fn generic_fact(f: &Fact) -> String {
    let value = match serde_json::to_value(f) {
        Ok(v) => v,
        Err(e) => return format!("unrenderable_fact {e}"),
    };
    let Value::Object(mut fields) = value else {
        return compact(&value);
    };
    let name = match fields.remove("fact") {
        Some(Value::String(s)) => s,
        _ => "fact".to_string(),
    };
    let mut out = name;
    for (k, v) in &fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        out.push_str(&compact(v));
    }
    out
}

/// A JSON value, compactly: bare words unquoted, byte arrays as hex or `len+hash`, runner ids
/// as `namespace/envoy_key`, one-key objects (enum variants) as `variant(…)`.
fn compact(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let bare =
                !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "-_./:@#+".contains(c));
            if bare {
                s.clone()
            } else {
                format!("{s:?}")
            }
        }
        Value::Array(items) => {
            let bytes: Option<Vec<u8>> =
                items.iter().map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok())).collect();
            match bytes {
                Some(b) if !b.is_empty() => value_repr(&b),
                _ => list(items.iter().map(compact)),
            }
        }
        Value::Object(m) => {
            if let (2, Some(Value::String(ns)), Some(Value::String(key))) =
                (m.len(), m.get("namespace"), m.get("envoy_key"))
            {
                return format!("{ns}/{key}");
            }
            if m.len() == 1 {
                if let Some((k, inner)) = m.iter().next() {
                    return format!("{k}({})", compact(inner));
                }
            }
            format!(
                "{{{}}}",
                m.iter().map(|(k, v)| format!("{k}={}", compact(v))).collect::<Vec<_>>().join(" ")
            )
        }
    }
}
