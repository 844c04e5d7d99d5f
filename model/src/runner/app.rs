//! The simulated actor application (`spec/preload.md` §6.1): the key layout of the model actor
//! runtime, the format of its persisted state `[1]`, the workload's actions on a running
//! instance ([`AppAction`], [`AppKey`]) and what each action does ([`RunningApp::apply`]): which
//! events it emits and which KV requests it makes, with deterministic values.
//!
//! Owns: the layout constants, [`ActorState`] and its JSON encoding, [`AppKey`], [`AppAction`],
//! [`AppConfig`], [`RunningApp`], the value pattern ([`write_value`]) and the inspector token
//! stream ([`inspector_token`]). Must not touch: connections, request ids, event numbering or
//! command handling (the runner client in `runner/mod.rs` turns [`AppEffect`]s into frames), and
//! the startup program (`startup.rs`, which only reads the layout and the state format from here).
//!
//! **State `[1]`** is the UTF-8 JSON object (fields in this order)
//! `{"initialized":true,"counter":N,"pages":P,"input":D}`:
//! - `initialized`: always `true` in a state the runtime wrote (§6.1's flag); a state without it,
//!   or with `false`, does not decode and fails the start;
//! - `counter`: the persisted start counter; every start increments it and writes `[1]` (the
//!   project's deviation from §6.2 step 8, see `startup.rs`), so a new actor's first start writes
//!   `1`;
//! - `pages`: the number of database pages `[8,1] ++ u32be(i)` for `i in 0..pages` the actor may
//!   hold (a page written beyond the count raises it; deleted pages leave holes);
//! - `input`: the digest ([`digest`]) of `CommandStartActor.config.input` the state was created
//!   from, or `null` without input.
//!
//! Choices where the spec and the brief leave room (each is what a user of the real runtime
//! would expect):
//! - **Values** are deterministic: [`write_value`] fills the value with a pattern derived from the
//!   key, the generation and the instance's write sequence number, so a checker can recompute
//!   them from the frames.
//! - **`SetAlarm(t)`** emits `EventActorSetAlarm{t}` and also persists the alarm under `[6]` (a put
//!   of `t` as 8 bytes big-endian, or a delete of `[6]` for `None`), so the startup's `get [6]`
//!   reads something real and the key `[6]`, a prefix of the history keys `[6,1,…]`, exists.
//! - **`Delete`, `DeleteRange`** address [`AppKey`]s, whose prefixes all sort after `[1]`, so
//!   they never remove the state. A range is `[start, end)` as the KV API defines it.
//! - **`Drop`** sends a real `KvDropRequest` and right behind it a put restoring `[1]` (with
//!   `pages = 0`), so the net effect removes every key other than `[1]`. The two are separate
//!   requests (the KV API has no "drop all but"), so an instance that dies between them leaves an
//!   empty keyspace and its next start takes the new-actor path (`spec/preload.md` §9, "emptied
//!   by drop").
//! - **Pages** are at most [`MAX_PAGES`]: a `Write` of a page at or beyond it does nothing.
//! - The in-memory page count is raised when the write is issued, not when it is acknowledged:
//!   the engine runs one actor's requests in arrival order, so a later write's `[1]` must already
//!   count the pages of earlier, still unanswered writes.

use serde::{Deserialize, Serialize};

use crate::constants::LIST_DEFAULT_LIMIT;
use crate::env::{Entropy, SplitMix};
use crate::protocol::{
    ActorIntent, Event, EventActorIntent, EventActorSetAlarm, KvDeleteRangeRequest,
    KvDeleteRequest, KvPutRequest, KvRequestData,
};

/// `[1]`: the actor state.
pub const STATE_KEY: &[u8] = &[1];
/// `[2] ++ conn_id`: one entry per connection.
pub const CONNECTIONS_PREFIX: &[u8] = &[2];
/// `[3]`: the inspector token.
pub const TOKEN_KEY: &[u8] = &[3];
/// `[4] ++ k`: user KV.
pub const USER_PREFIX: &[u8] = &[4];
/// `[5,1,1]`: queue metadata.
pub const QUEUE_METADATA_KEY: &[u8] = &[5, 1, 1];
/// `[5,1,2] ++ u64be`: queue messages.
pub const QUEUE_MESSAGES_PREFIX: &[u8] = &[5, 1, 2];
/// `[6]`: the last scheduled alarm.
pub const ALARM_KEY: &[u8] = &[6];
/// `[6,1] ++ k`: workflow history.
pub const HISTORY_PREFIX: &[u8] = &[6, 1];
/// `[8,1] ++ u32be(page)`: database pages (the partial, cached prefix).
pub const PAGES_PREFIX: &[u8] = &[8, 1];
/// Most database pages an actor holds: a write to a page at or beyond it is ignored, and a
/// startup reads at most this many pages, whatever `[1]` says (so a state from elsewhere cannot
/// make a startup read billions of pages).
pub const MAX_PAGES: u32 = 4_096;
/// Queue metadata written by a start that finds none.
pub const FRESH_QUEUE_METADATA: &[u8] = br#"{"size":0,"next_id":0}"#;

/// Configuration of the simulated application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppConfig {
    /// The `limit` of each page of a complete live listing (`spec/preload.md` §1.6). Default
    /// `LIST_DEFAULT_LIMIT`; scenarios lower it to exercise paging.
    pub list_page_limit: u64,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig { list_page_limit: LIST_DEFAULT_LIMIT }
    }
}

/// The persisted actor state `[1]` (see the module comment for the format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorState {
    /// Always `true` in a state the runtime wrote.
    pub initialized: bool,
    /// The persisted start counter.
    pub counter: u64,
    /// Number of database pages the actor may hold.
    pub pages: u32,
    /// Digest of the creation input, `None` without input.
    pub input: Option<String>,
}

/// `[1]` does not hold a state the runtime wrote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not the JSON object of the module comment.
    #[error("actor state is not the runtime's JSON object: {0}")]
    NotJson(String),
    /// `initialized` is `false`.
    #[error("actor state has initialized = false")]
    NotInitialized,
}

impl ActorState {
    /// The initial state of a new actor built from its creation input (§6.2 step 7), before the
    /// start's increment: counter 0, no pages.
    pub fn initial(input: Option<&[u8]>) -> Self {
        ActorState { initialized: true, counter: 0, pages: 0, input: input.map(digest) }
    }

    /// The JSON bytes stored under `[1]`.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing a struct of booleans, integers and strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decode `[1]`.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let state: ActorState =
            serde_json::from_slice(bytes).map_err(|e| StateError::NotJson(e.to_string()))?;
        if !state.initialized {
            return Err(StateError::NotInitialized);
        }
        Ok(state)
    }
}

/// A key of the application's data, mapped onto the prefixes of §6.1 ([`AppKey::to_raw`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AppKey {
    /// `[2] ++ u16be(id)`.
    Connection(u16),
    /// `[5,1,2] ++ u64be(id)`.
    Message(u64),
    /// `[6,1] ++ k`.
    History(Vec<u8>),
    /// `[8,1] ++ u32be(page)`.
    Page(u32),
    /// `[4] ++ k`.
    User(Vec<u8>),
}

impl AppKey {
    /// The raw KV key.
    pub fn to_raw(&self) -> Vec<u8> {
        match self {
            AppKey::Connection(id) => [CONNECTIONS_PREFIX, &id.to_be_bytes()].concat(),
            AppKey::Message(id) => [QUEUE_MESSAGES_PREFIX, &id.to_be_bytes()].concat(),
            AppKey::History(k) => [HISTORY_PREFIX, k].concat(),
            AppKey::Page(page) => page_key(*page),
            AppKey::User(k) => [USER_PREFIX, k].concat(),
        }
    }
}

/// The key of database page `page`: `[8,1] ++ u32be(page)`.
pub fn page_key(page: u32) -> Vec<u8> {
    [PAGES_PREFIX, &page.to_be_bytes()].concat()
}

/// What the workload driver asks a live instance to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppAction {
    /// Ask to sleep: `Intent Sleep`.
    Sleep,
    /// Ask to stop for good: `Intent Stop`.
    Stop,
    /// Crash: the instance terminates with `Stopped{ERROR}` once its KV requests resolved.
    Crash,
    /// Change the alarm (event, and `[6]` persisted).
    SetAlarm(Option<i64>),
    /// One put of `key` with a deterministic value of `value_len` bytes (a page at or beyond
    /// [`MAX_PAGES`] is ignored).
    Write { key: AppKey, value_len: usize },
    /// One delete of `key`.
    Delete(AppKey),
    /// One delete-range `[start, end)`.
    DeleteRange(AppKey, AppKey),
    /// Remove every key but `[1]` (drop, then restore `[1]`).
    Drop,
}

/// One effect of an action, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppEffect {
    /// Emit this event.
    Emit(Event),
    /// Make this KV request.
    Kv(KvRequestData),
    /// Terminate with `Stopped{ERROR}` once every KV request resolved.
    Crash,
}

/// The in-memory side of a running instance: its state as last written and its write sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningApp {
    generation: u32,
    state: ActorState,
    write_seq: u64,
}

impl RunningApp {
    /// The application of instance `(_, generation)` after a startup that wrote `state`.
    pub fn new(generation: u32, state: ActorState) -> Self {
        RunningApp { generation, state, write_seq: 0 }
    }

    /// The state as last written (or issued).
    pub fn state(&self) -> &ActorState {
        &self.state
    }

    /// The effects of `action`, in order (see the module comment).
    pub fn apply(&mut self, action: &AppAction) -> Vec<AppEffect> {
        match action {
            AppAction::Sleep => vec![AppEffect::Emit(intent(ActorIntent::ActorIntentSleep))],
            AppAction::Stop => vec![AppEffect::Emit(intent(ActorIntent::ActorIntentStop))],
            AppAction::Crash => vec![AppEffect::Crash],
            AppAction::SetAlarm(alarm_ts) => {
                let event = Event::EventActorSetAlarm(EventActorSetAlarm { alarm_ts: *alarm_ts });
                let kv = match alarm_ts {
                    Some(ts) => put(vec![(ALARM_KEY.to_vec(), ts.to_be_bytes().to_vec())]),
                    None => KvRequestData::KvDeleteRequest(KvDeleteRequest {
                        keys: vec![ALARM_KEY.to_vec().into()],
                    }),
                };
                vec![AppEffect::Emit(event), AppEffect::Kv(kv)]
            }
            AppAction::Write { key, value_len } => {
                let raw = key.to_raw();
                self.write_seq = self.write_seq.saturating_add(1);
                let value = write_value(&raw, self.generation, self.write_seq, *value_len);
                let mut pairs = vec![(raw, value)];
                if let AppKey::Page(page) = key {
                    if *page >= MAX_PAGES {
                        return Vec::new();
                    }
                    if *page >= self.state.pages {
                        self.state.pages = page.saturating_add(1);
                        pairs.push((STATE_KEY.to_vec(), self.state.encode()));
                    }
                }
                pairs.sort();
                vec![AppEffect::Kv(put(pairs))]
            }
            AppAction::Delete(key) => {
                vec![AppEffect::Kv(KvRequestData::KvDeleteRequest(KvDeleteRequest {
                    keys: vec![key.to_raw().into()],
                }))]
            }
            AppAction::DeleteRange(start, end) => {
                vec![AppEffect::Kv(KvRequestData::KvDeleteRangeRequest(KvDeleteRangeRequest {
                    start: start.to_raw().into(),
                    end: end.to_raw().into(),
                }))]
            }
            AppAction::Drop => {
                self.state.pages = 0;
                vec![
                    AppEffect::Kv(KvRequestData::KvDropRequest),
                    AppEffect::Kv(put(vec![(STATE_KEY.to_vec(), self.state.encode())])),
                ]
            }
        }
    }
}

fn intent(intent: ActorIntent) -> Event {
    Event::EventActorIntent(EventActorIntent { intent })
}

fn put(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> KvRequestData {
    let (keys, values): (Vec<_>, Vec<_>) =
        pairs.into_iter().map(|(k, v)| (k.into(), v.into())).unzip();
    KvRequestData::KvPutRequest(KvPutRequest { keys, values })
}

/// The deterministic value of the `seq`-th write (from 1) of instance generation `generation` to
/// `key`, `len` bytes: an 8-byte header `u32be(generation) ++ u32be(seq)` (truncated to `len`),
/// then bytes `(fnv1a64(key) + seq + i) mod 256`.
pub fn write_value(key: &[u8], generation: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut header = generation.to_be_bytes().to_vec();
    header.extend_from_slice(&(seq as u32).to_be_bytes());
    let base = fnv1a64(key).wrapping_add(seq);
    (0..len)
        .map(|i| match header.get(i) {
            Some(b) => *b,
            None => base.wrapping_add(i as u64) as u8,
        })
        .collect()
}

/// FNV-1a, 64 bits: a stable digest for records and seeds (never for safety).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A short, stable rendering of bytes for observation records: the bytes in hex when at most
/// 16, otherwise `len N fnv <hash>`.
pub fn digest(bytes: &[u8]) -> String {
    if bytes.len() <= 16 {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("x{hex}")
    } else {
        format!("len {} fnv {:016x}", bytes.len(), fnv1a64(bytes))
    }
}

/// The inspector token of instance `(actor, generation)` (`spec/preload.md` §6.2 step 3): 32 hex
/// characters drawn from a [`SplitMix`] stream seeded by a hash of the actor id and the generation
/// only, so an oracle run reproduces it.
pub fn inspector_token(actor: &str, generation: u32) -> Vec<u8> {
    let mut seed_input = actor.as_bytes().to_vec();
    seed_input.push(0xFF);
    seed_input.extend_from_slice(&generation.to_be_bytes());
    let mut stream = SplitMix(fnv1a64(&seed_input));
    let (a, b) = (stream.next_u64(), stream.next_u64());
    format!("{a:016x}{b:016x}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(keys: &[vbare::Bytes]) -> Vec<Vec<u8>> {
        keys.iter().map(|k| k.to_vec()).collect()
    }

    #[test]
    fn app_keys_map_onto_the_layout_and_sort_after_the_state() {
        assert_eq!(AppKey::Connection(0x0102).to_raw(), vec![2, 1, 2]);
        assert_eq!(AppKey::Message(7).to_raw(), vec![5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(AppKey::History(vec![9, 0]).to_raw(), vec![6, 1, 9, 0]);
        assert_eq!(AppKey::Page(3).to_raw(), vec![8, 1, 0, 0, 0, 3]);
        assert_eq!(AppKey::User(vec![]).to_raw(), vec![4]);
        for key in [AppKey::Connection(0), AppKey::History(vec![]), AppKey::User(vec![0])] {
            assert!(key.to_raw().as_slice() > STATE_KEY);
        }
    }

    #[test]
    fn state_round_trips_and_rejects_foreign_bytes() {
        let state = ActorState { initialized: true, counter: 4, pages: 2, input: None };
        assert_eq!(
            String::from_utf8(state.encode()).unwrap(),
            r#"{"initialized":true,"counter":4,"pages":2,"input":null}"#
        );
        assert_eq!(ActorState::decode(&state.encode()), Ok(state));
        assert!(matches!(ActorState::decode(b"\x00"), Err(StateError::NotJson(_))));
        assert_eq!(
            ActorState::decode(br#"{"initialized":false,"counter":1,"pages":0,"input":null}"#),
            Err(StateError::NotInitialized)
        );
    }

    #[test]
    fn write_values_are_deterministic_patterns() {
        let v = write_value(&[4, 1], 2, 3, 12);
        assert_eq!(&v[..8], &[0, 0, 0, 2, 0, 0, 0, 3]);
        let base = fnv1a64(&[4, 1]).wrapping_add(3);
        assert_eq!(v[8], base.wrapping_add(8) as u8);
        assert_eq!(write_value(&[4, 1], 2, 3, 3), vec![0, 0, 0]);
        assert!(write_value(&[4, 1], 2, 3, 0).is_empty());
    }

    #[test]
    fn token_depends_only_on_actor_and_generation() {
        let t = inspector_token("a1", 0);
        assert_eq!(t.len(), 32);
        assert_eq!(t, inspector_token("a1", 0));
        assert_ne!(t, inspector_token("a1", 1));
        assert_ne!(t, inspector_token("a2", 0));
    }

    #[test]
    fn a_page_beyond_the_count_rewrites_the_state_in_the_same_put() {
        let mut app = RunningApp::new(1, ActorState::initial(None));
        let effects = app.apply(&AppAction::Write { key: AppKey::Page(2), value_len: 4 });
        let [AppEffect::Kv(KvRequestData::KvPutRequest(put))] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(raw(&put.keys), vec![vec![1u8], page_key(2)]);
        let written = ActorState::decode(&put.values[0]).unwrap();
        assert_eq!(written.pages, 3);
        // A page inside the count is a plain put.
        let effects = app.apply(&AppAction::Write { key: AppKey::Page(0), value_len: 4 });
        let [AppEffect::Kv(KvRequestData::KvPutRequest(put))] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(raw(&put.keys), vec![page_key(0)]);
    }

    #[test]
    fn pages_at_or_beyond_the_maximum_are_not_written() {
        let mut app = RunningApp::new(0, ActorState::initial(None));
        assert!(app
            .apply(&AppAction::Write { key: AppKey::Page(MAX_PAGES), value_len: 1 })
            .is_empty());
        assert_eq!(app.state().pages, 0);
        assert_eq!(
            app.apply(&AppAction::Write { key: AppKey::Page(MAX_PAGES - 1), value_len: 1 }).len(),
            1
        );
        assert_eq!(app.state().pages, MAX_PAGES);
    }

    #[test]
    fn drop_is_a_drop_then_a_put_of_the_state() {
        let mut app =
            RunningApp::new(1, ActorState { initialized: true, counter: 2, pages: 5, input: None });
        let effects = app.apply(&AppAction::Drop);
        assert_eq!(effects[0], AppEffect::Kv(KvRequestData::KvDropRequest));
        let AppEffect::Kv(KvRequestData::KvPutRequest(put)) = &effects[1] else { panic!() };
        assert_eq!(raw(&put.keys), vec![vec![1u8]]);
        assert_eq!(ActorState::decode(&put.values[0]).unwrap().pages, 0);
    }

    #[test]
    fn alarms_emit_an_event_and_persist_under_six() {
        let mut app = RunningApp::new(0, ActorState::initial(None));
        let effects = app.apply(&AppAction::SetAlarm(Some(258)));
        assert_eq!(
            effects[0],
            AppEffect::Emit(Event::EventActorSetAlarm(EventActorSetAlarm { alarm_ts: Some(258) }))
        );
        let AppEffect::Kv(KvRequestData::KvPutRequest(put)) = &effects[1] else { panic!() };
        assert_eq!(put.values[0].to_vec(), 258i64.to_be_bytes().to_vec());
        let effects = app.apply(&AppAction::SetAlarm(None));
        assert!(matches!(effects[1], AppEffect::Kv(KvRequestData::KvDeleteRequest(_))));
    }
}
