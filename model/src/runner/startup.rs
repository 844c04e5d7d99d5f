//! Actor startup (`spec/preload.md` §6): the startup of the model actor runtime as a **pure,
//! resumable program** ([`Startup`]), the runner's driver that answers it from the start's
//! `PreloadMap` and goes live only where the map cannot answer ([`StartupDriver`]), and the
//! oracle run that answers every read live from a snapshot (`oracle_run`, §6.3).
//!
//! Owns: the order and meaning of the startup reads and writes, the observation record
//! (`fact::StartupRecord`) and its rendering, and the translation of lookups into live KV requests
//! (paging with `kv::first_page` / `next_page` / `page_is_last`). Must not touch: request ids,
//! connections or timeouts (the runner client sends what the driver asks for and feeds back what
//! came of it), the bundle's construction (`preload`), or the application after startup
//! (`app.rs`).
//!
//! The program ([`Startup::next`] tells what it needs, `feed_*` gives it the answer):
//! 1. `get [1]`: a value is an *existing* actor (its state decodes, or the start fails); absent
//!    is a *new* actor.
//! 2. Existing actors only: complete listings of `[2]` (connections) and `[5,1,2]` (messages).
//! 3. `get [3]`; if absent, the token of [`crate::runner::app::inspector_token`] is staged.
//! 4. `get [5,1,1]`; if absent, fresh queue metadata is staged.
//! 5. `get [6]` and a complete listing of `[6,1]`.
//! 6. Existing actors: `page [8,1] ++ u32be(i)` for every `i < min(state.pages, MAX_PAGES)`.
//! 7. New actors: the initial state from the input.
//! 8. **Deviation from §6.2 step 8, required by this project:** every start increments the
//!    persisted `counter` and stages `[1]`, so the put is never empty: a new actor's put holds
//!    `[1]` plus `[3]` and `[5,1,1]`; an existing actor's holds `[1]` plus whichever of `[3]`,
//!    `[5,1,1]` were absent. One `KvPutRequest`, keys ascending. A failed put fails the start.
//! 9. After the put: the wake hook re-reads `[1]` (through the map, so write-through, §5.5, is
//!    what answers it in a bundle run) and the program is done.
//!
//! The observation record lists every logical read with its result (`absent`, `hit <digest>`,
//! `<n> entries <digest>`), the new/existing decision, the counter after the increment and the
//! put. Digests are [`crate::runner::app::digest`]s: exact hex up to 16 bytes, otherwise length
//! plus FNV-1a. Only the number of live reads differs between a bundle run and the oracle run.
//!
//! Driver choices where the spec is silent: a `Cached` listing is never used (§6.2), the map's
//! `Hit`/`Absent`/`Complete` always are; a read whose request ended with its connection
//! (unknown outcome) is sent again (reads are idempotent); a KV error, a timeout or a response
//! that does not answer the request fails the start.

use crate::fact::StartupRecord;
use crate::kv::{first_page, next_page, page_is_last};
use crate::preload::{Listing, Lookup, Manifest, PreloadMap, Snapshot};
use crate::protocol::{KvGetRequest, KvPutRequest, KvRequestData, KvResponseData, PreloadedKv};
use crate::records::KvEntryRecord;

use super::app::{
    digest, inspector_token, page_key, ActorState, ALARM_KEY, CONNECTIONS_PREFIX,
    FRESH_QUEUE_METADATA, HISTORY_PREFIX, MAX_PAGES, QUEUE_MESSAGES_PREFIX, QUEUE_METADATA_KEY,
    STATE_KEY, TOKEN_KEY,
};

/// What the startup program needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// A point read: feed the value with [`Startup::feed_value`].
    Get(Vec<u8>),
    /// A complete listing of the prefix: feed it with [`Startup::feed_list`].
    CompleteList(Vec<u8>),
    /// A database page read (a point read answered from the cache when possible): feed it with
    /// [`Startup::feed_value`].
    Page(Vec<u8>),
    /// Commit these writes in one put: feed the outcome with [`Startup::feed_put`].
    Put(Vec<Vec<u8>>, Vec<Vec<u8>>),
    /// Startup finished with this record.
    Done(StartupRecord),
    /// Startup failed.
    Failed(StartupFailure),
}

/// Why a startup failed (the instance then stops with `Stopped{ERROR}`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartupFailure {
    /// `[1]` holds something the runtime did not write.
    #[error("startup: actor state [1] does not decode: {0}")]
    CorruptState(String),
    /// The put was rejected, failed or has an unknown outcome.
    #[error("startup: the put failed: {0}")]
    PutFailed(String),
    /// A live read failed or was answered with something that does not answer it.
    #[error("startup: live read {what} failed: {detail}")]
    ReadFailed { what: String, detail: String },
    /// The program was fed an answer of the wrong kind (a caller bug).
    #[error("startup: fed {got} while it needed {needed}")]
    UnexpectedFeed { needed: String, got: &'static str },
}

/// Where the program is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    State,
    Connections,
    Messages,
    Token,
    QueueMetadata,
    Alarm,
    History,
    Page(u32),
    Commit,
    WakeState,
    Finished,
    Failed(StartupFailure),
}

/// The startup program of one instance (see the module comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Startup {
    actor: String,
    generation: u32,
    input: Option<Vec<u8>>,
    step: Step,
    record: StartupRecord,
    /// The decoded state of an existing actor.
    existing: Option<ActorState>,
    /// Writes staged for the put, `(key, value)`, ascending by key when committed.
    staged: Vec<(Vec<u8>, Vec<u8>)>,
    /// The state the put writes.
    written: Option<ActorState>,
}

impl Startup {
    /// The startup of instance `(actor, generation)` created with `input`. The token stream is
    /// seeded by `(actor, generation)` only.
    pub fn new(actor: &str, generation: u32, input: Option<&[u8]>) -> Self {
        Startup {
            actor: actor.to_owned(),
            generation,
            input: input.map(<[u8]>::to_vec),
            step: Step::State,
            record: StartupRecord::default(),
            existing: None,
            staged: Vec::new(),
            written: None,
        }
    }

    /// What the program needs now. Calling it again without feeding returns the same need.
    pub fn next(&self) -> Need {
        match &self.step {
            Step::State | Step::WakeState => Need::Get(STATE_KEY.to_vec()),
            Step::Connections => Need::CompleteList(CONNECTIONS_PREFIX.to_vec()),
            Step::Messages => Need::CompleteList(QUEUE_MESSAGES_PREFIX.to_vec()),
            Step::Token => Need::Get(TOKEN_KEY.to_vec()),
            Step::QueueMetadata => Need::Get(QUEUE_METADATA_KEY.to_vec()),
            Step::Alarm => Need::Get(ALARM_KEY.to_vec()),
            Step::History => Need::CompleteList(HISTORY_PREFIX.to_vec()),
            Step::Page(page) => Need::Page(page_key(*page)),
            Step::Commit => {
                let (keys, values) = self.staged.iter().cloned().unzip();
                Need::Put(keys, values)
            }
            Step::Finished => Need::Done(self.record.clone()),
            Step::Failed(failure) => Need::Failed(failure.clone()),
        }
    }

    /// The state the startup wrote (after a successful put).
    pub fn written_state(&self) -> Option<&ActorState> {
        match self.step {
            Step::WakeState | Step::Finished => self.written.as_ref(),
            _ => None,
        }
    }

    /// The answer to a [`Need::Get`] or [`Need::Page`]: the value, or `None` for absent.
    pub fn feed_value(&mut self, value: Option<Vec<u8>>) {
        let what = match self.next() {
            Need::Get(key) => format!("get {}", render_key(&key)),
            Need::Page(key) => format!("page {}", render_key(&key)),
            other => return self.unexpected(&other, "a value"),
        };
        self.record.reads.push((what, render_value(value.as_deref())));
        match self.step.clone() {
            Step::State => match value {
                Some(bytes) => match ActorState::decode(&bytes) {
                    Ok(state) => {
                        self.existing = Some(state);
                        self.step = Step::Connections;
                    }
                    Err(e) => self.step = Step::Failed(StartupFailure::CorruptState(e.to_string())),
                },
                None => {
                    self.record.new_actor = true;
                    self.step = Step::Token;
                }
            },
            Step::Token => {
                if value.is_none() {
                    self.staged
                        .push((TOKEN_KEY.to_vec(), inspector_token(&self.actor, self.generation)));
                }
                self.step = Step::QueueMetadata;
            }
            Step::QueueMetadata => {
                if value.is_none() {
                    self.staged.push((QUEUE_METADATA_KEY.to_vec(), FRESH_QUEUE_METADATA.to_vec()));
                }
                self.step = Step::Alarm;
            }
            Step::Alarm => self.step = Step::History,
            Step::Page(page) => self.after_page(page.saturating_add(1)),
            Step::WakeState => self.step = Step::Finished,
            _ => {}
        }
    }

    /// The answer to a [`Need::CompleteList`]: every entry under the prefix, ascending.
    pub fn feed_list(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) {
        let prefix = match self.next() {
            Need::CompleteList(prefix) => prefix,
            other => return self.unexpected(&other, "a listing"),
        };
        self.record.reads.push((format!("list {}", render_key(&prefix)), render_listing(&entries)));
        match self.step {
            Step::Connections => self.step = Step::Messages,
            Step::Messages => self.step = Step::Token,
            Step::History => self.after_page(0),
            _ => {}
        }
    }

    /// The outcome of the [`Need::Put`]: `Ok` when it committed, `Err(reason)` otherwise.
    pub fn feed_put(&mut self, outcome: Result<(), String>) {
        let (keys, values) = match self.next() {
            Need::Put(keys, values) => (keys, values),
            other => return self.unexpected(&other, "a put outcome"),
        };
        match outcome {
            Ok(()) => {
                self.record.writes.push((keys, values));
                self.step = Step::WakeState;
            }
            Err(reason) => self.step = Step::Failed(StartupFailure::PutFailed(reason)),
        }
    }

    /// Next page to read from `page`, or the commit when every page was read.
    fn after_page(&mut self, page: u32) {
        let pages = self.existing.as_ref().map_or(0, |s| s.pages.min(MAX_PAGES));
        if page < pages {
            self.step = Step::Page(page);
            return;
        }
        // Steps 7 and 8: the state to write, counter incremented.
        let mut state =
            self.existing.clone().unwrap_or_else(|| ActorState::initial(self.input.as_deref()));
        state.counter = state.counter.saturating_add(1);
        self.record.counter = state.counter;
        self.staged.push((STATE_KEY.to_vec(), state.encode()));
        self.staged.sort();
        self.written = Some(state);
        self.step = Step::Commit;
    }

    fn unexpected(&mut self, needed: &Need, got: &'static str) {
        if matches!(self.step, Step::Failed(_) | Step::Finished) {
            return;
        }
        self.step = Step::Failed(StartupFailure::UnexpectedFeed {
            needed: format!("{needed:?}").chars().take(80).collect(),
            got,
        });
    }
}

/// `[a,b,c]` in decimal.
fn render_key(key: &[u8]) -> String {
    let items: Vec<String> = key.iter().map(u8::to_string).collect();
    format!("[{}]", items.join(","))
}

fn render_value(value: Option<&[u8]>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(v) => format!("hit {}", digest(v)),
    }
}

fn render_listing(entries: &[(Vec<u8>, Vec<u8>)]) -> String {
    let mut flat = Vec::new();
    for (k, v) in entries {
        flat.extend_from_slice(&(k.len() as u32).to_be_bytes());
        flat.extend_from_slice(k);
        flat.extend_from_slice(&(v.len() as u32).to_be_bytes());
        flat.extend_from_slice(v);
    }
    format!("{} entries {}", entries.len(), digest(&flat))
}

// ---- the bundle run -----------------------------------------------------------------------

/// What became of a live request the driver asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveResult {
    /// The engine answered.
    Response(KvResponseData),
    /// The request was sent on a connection that ended before an answer: it may or may not have
    /// run.
    Unknown,
    /// It failed without running (never sent in time, timed out, could not be encoded).
    Failed(String),
}

/// What the driver wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverStep {
    /// Send this KV request and feed its outcome to [`StartupDriver::on_result`].
    Live(KvRequestData),
    /// Startup finished: the record, how many live reads it took, and the state it wrote.
    Done { record: StartupRecord, live_reads: u32, state: ActorState },
    /// Startup failed.
    Failed(StartupFailure),
}

/// The live operation the driver waits on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Waiting {
    Get { key: Vec<u8>, request: KvRequestData },
    List { prefix: Vec<u8>, entries: Vec<(Vec<u8>, Vec<u8>)>, request: KvRequestData },
    Put { keys: Vec<Vec<u8>>, values: Vec<Vec<u8>>, request: KvRequestData },
}

/// Runs a [`Startup`] against the start's [`PreloadMap`]: `Hit`, `Absent` and `Complete`
/// answers come from the map, everything else goes live, one request at a time. The map is
/// discarded with the driver.
#[derive(Clone, Debug)]
pub struct StartupDriver {
    program: Startup,
    map: PreloadMap,
    waiting: Option<Waiting>,
    live_reads: u32,
    page_limit: u64,
}

impl StartupDriver {
    /// A driver for the startup of `(actor, generation)`, with the start's bundle and the
    /// runner's own manifest for the actor's name, listing live in pages of `page_limit`.
    pub fn new(
        program: Startup,
        bundle: Option<&PreloadedKv>,
        manifest: Option<&Manifest>,
        page_limit: u64,
    ) -> Self {
        StartupDriver {
            program,
            map: PreloadMap::new(bundle, manifest),
            waiting: None,
            live_reads: 0,
            page_limit: page_limit.max(1),
        }
    }

    /// Whether the start carried a bundle.
    pub fn had_bundle(&self) -> bool {
        self.map.has_bundle()
    }

    /// Live reads sent so far.
    pub fn live_reads(&self) -> u32 {
        self.live_reads
    }

    /// Run until the program needs a live request, finishes or fails.
    pub fn start(&mut self) -> DriverStep {
        self.advance()
    }

    /// Feed the outcome of the request last returned in [`DriverStep::Live`].
    pub fn on_result(&mut self, result: LiveResult) -> DriverStep {
        let Some(waiting) = self.waiting.take() else {
            return self.advance();
        };
        match waiting {
            Waiting::Get { key, request } => match result {
                LiveResult::Response(KvResponseData::KvGetResponse(response)) => {
                    let mut value = None;
                    for (k, v) in response.keys.iter().zip(&response.values) {
                        if k.as_ref() == key.as_slice() {
                            value = Some(v.to_vec());
                        } else {
                            return self.read_failed(&key, "get response lists another key");
                        }
                    }
                    self.program.feed_value(value);
                    self.advance()
                }
                LiveResult::Unknown => self.resend_read(Waiting::Get { key, request }),
                other => self.read_failed(&key, &describe(&other)),
            },
            Waiting::List { prefix, mut entries, request } => match result {
                LiveResult::Response(KvResponseData::KvListResponse(response)) => {
                    let received = response.keys.len();
                    for (k, v) in response.keys.iter().zip(&response.values) {
                        let ascending = entries.last().is_none_or(|(last, _)| last < &k.to_vec());
                        if !k.starts_with(&prefix) || !ascending {
                            return self
                                .read_failed(&prefix, "list response out of order or range");
                        }
                        entries.push((k.to_vec(), v.to_vec()));
                    }
                    if page_is_last(received, self.page_limit) {
                        self.program.feed_list(entries);
                        return self.advance();
                    }
                    let last = entries.last().map(|(k, _)| k.clone()).unwrap_or_default();
                    let request =
                        KvRequestData::KvListRequest(next_page(&prefix, &last, self.page_limit));
                    self.live_reads = self.live_reads.saturating_add(1);
                    self.waiting =
                        Some(Waiting::List { prefix, entries, request: request.clone() });
                    DriverStep::Live(request)
                }
                LiveResult::Unknown => self.resend_read(Waiting::List { prefix, entries, request }),
                other => self.read_failed(&prefix, &describe(&other)),
            },
            Waiting::Put { keys, values, .. } => {
                match result {
                    LiveResult::Response(KvResponseData::KvPutResponse) => {
                        // Write-through (§5.5): the put succeeded, so later lookups see it.
                        if self.map.apply_put(&keys, &values).is_err() {
                            self.program.feed_put(Err("put keys and values differ".into()));
                        } else {
                            self.program.feed_put(Ok(()));
                        }
                    }
                    other => self.program.feed_put(Err(describe(&other))),
                }
                self.advance()
            }
        }
    }

    fn resend_read(&mut self, waiting: Waiting) -> DriverStep {
        let request = match &waiting {
            Waiting::Get { request, .. } | Waiting::List { request, .. } => request.clone(),
            Waiting::Put { request, .. } => request.clone(),
        };
        self.live_reads = self.live_reads.saturating_add(1);
        self.waiting = Some(waiting);
        DriverStep::Live(request)
    }

    fn read_failed(&mut self, key: &[u8], detail: &str) -> DriverStep {
        DriverStep::Failed(StartupFailure::ReadFailed {
            what: render_key(key),
            detail: detail.to_owned(),
        })
    }

    fn advance(&mut self) -> DriverStep {
        loop {
            match self.program.next() {
                Need::Get(key) | Need::Page(key) => match self.map.get(&key) {
                    Lookup::Hit(value) => self.program.feed_value(Some(value)),
                    Lookup::Absent => self.program.feed_value(None),
                    Lookup::NotCovered => {
                        let request = KvRequestData::KvGetRequest(KvGetRequest {
                            keys: vec![key.clone().into()],
                        });
                        self.live_reads = self.live_reads.saturating_add(1);
                        self.waiting = Some(Waiting::Get { key, request: request.clone() });
                        return DriverStep::Live(request);
                    }
                },
                Need::CompleteList(prefix) => match self.map.list_prefix(&prefix) {
                    Listing::Complete(entries) => self.program.feed_list(entries),
                    Listing::Cached(_) | Listing::NotCovered => {
                        let request =
                            KvRequestData::KvListRequest(first_page(&prefix, self.page_limit));
                        self.live_reads = self.live_reads.saturating_add(1);
                        self.waiting = Some(Waiting::List {
                            prefix,
                            entries: Vec::new(),
                            request: request.clone(),
                        });
                        return DriverStep::Live(request);
                    }
                },
                Need::Put(keys, values) => {
                    let request = KvRequestData::KvPutRequest(KvPutRequest {
                        keys: keys.iter().map(|k| k.clone().into()).collect(),
                        values: values.iter().map(|v| v.clone().into()).collect(),
                    });
                    self.waiting = Some(Waiting::Put { keys, values, request: request.clone() });
                    return DriverStep::Live(request);
                }
                Need::Done(record) => {
                    let state = self.program.written_state().cloned().unwrap_or_else(|| {
                        // Unreachable: `Done` follows a successful put, which sets the state.
                        ActorState::initial(None)
                    });
                    return DriverStep::Done { record, live_reads: self.live_reads, state };
                }
                Need::Failed(failure) => return DriverStep::Failed(failure),
            }
        }
    }
}

fn describe(result: &LiveResult) -> String {
    match result {
        LiveResult::Response(KvResponseData::KvErrorResponse(e)) => e.message.to_string(),
        LiveResult::Response(other) => format!("unexpected response {}", response_kind(other)),
        LiveResult::Unknown => "unknown outcome (connection ended)".to_owned(),
        LiveResult::Failed(reason) => reason.clone(),
    }
}

/// The schema name of a KV response.
pub fn response_kind(response: &KvResponseData) -> &'static str {
    match response {
        KvResponseData::KvErrorResponse(_) => "KvErrorResponse",
        KvResponseData::KvGetResponse(_) => "KvGetResponse",
        KvResponseData::KvListResponse(_) => "KvListResponse",
        KvResponseData::KvPutResponse => "KvPutResponse",
        KvResponseData::KvDeleteResponse => "KvDeleteResponse",
        KvResponseData::KvDropResponse => "KvDropResponse",
    }
}

// ---- the oracle run -----------------------------------------------------------------------

/// A read or write of the oracle run, answered live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OracleRead<'a> {
    /// The value of a key.
    Get(&'a [u8]),
    /// Every entry whose key starts with the prefix, ascending.
    List(&'a [u8]),
    /// Apply this put (the program's own write).
    Put(&'a [Vec<u8>], &'a [Vec<u8>]),
}

/// The answer to an [`OracleRead`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OracleAnswer {
    Value(Option<Vec<u8>>),
    Entries(Vec<(Vec<u8>, Vec<u8>)>),
    Written,
}

/// The oracle run of §6.3 with every read and write answered by `kv`: the same program as the
/// bundle run, no map.
pub fn oracle_run_with(
    kv: &mut dyn FnMut(OracleRead<'_>) -> OracleAnswer,
    actor: &str,
    generation: u32,
    input: Option<&[u8]>,
) -> Result<StartupRecord, StartupFailure> {
    let mut program = Startup::new(actor, generation, input);
    loop {
        match program.next() {
            Need::Get(key) | Need::Page(key) => match kv(OracleRead::Get(&key)) {
                OracleAnswer::Value(v) => program.feed_value(v),
                _ => program.feed_list(Vec::new()),
            },
            Need::CompleteList(prefix) => match kv(OracleRead::List(&prefix)) {
                OracleAnswer::Entries(entries) => program.feed_list(entries),
                _ => program.feed_value(None),
            },
            Need::Put(keys, values) => match kv(OracleRead::Put(&keys, &values)) {
                OracleAnswer::Written => program.feed_put(Ok(())),
                _ => program.feed_put(Err("the oracle's store refused the put".into())),
            },
            Need::Done(record) => return Ok(record),
            Need::Failed(failure) => return Err(failure),
        }
    }
}

/// The oracle run over `S@V`: reads answered from `snapshot`, with the program's own writes
/// applied to a copy of it as they commit.
pub fn oracle_run(
    snapshot: &Snapshot,
    actor: &str,
    generation: u32,
    input: Option<&[u8]>,
) -> Result<StartupRecord, StartupFailure> {
    let mut live = snapshot.clone();
    let mut kv = |read: OracleRead<'_>| match read {
        OracleRead::Get(key) => OracleAnswer::Value(live.get(key).map(|r| r.value.clone())),
        OracleRead::List(prefix) => OracleAnswer::Entries(
            live.with_prefix(prefix).map(|(k, r)| (k.clone(), r.value.clone())).collect(),
        ),
        OracleRead::Put(keys, values) => {
            for (k, v) in keys.iter().zip(values) {
                live.insert(
                    k.clone(),
                    KvEntryRecord { value: v.clone(), version: Vec::new(), update_ts: 0 },
                );
            }
            OracleAnswer::Written
        }
    };
    oracle_run_with(&mut kv, actor, generation, input)
}
