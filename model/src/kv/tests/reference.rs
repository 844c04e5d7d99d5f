//! Property test: random sequences of every KV operation, on two actors, with injected commit
//! faults, a lowered quota and changing metadata versions, compared with a reference keyspace
//! written here from the text of `spec/preload.md` §1 (a `BTreeMap` of key to value and
//! metadata, filtered with plain predicates; no store ranges, no `strinc`).

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use rivet_envoy_protocol::{
    KvDeleteRangeRequest, KvDeleteRequest, KvGetRequest, KvGetResponse, KvListPrefixQuery,
    KvListQuery, KvListRangeQuery, KvListRequest, KvListResponse, KvMetadata, KvPutRequest,
    KvRequestData, KvResponseData,
};
use vbare::Bytes;

use super::{b, World, ACTOR};
use crate::constants::{LIST_DEFAULT_LIMIT, MAX_STORAGE_SIZE};
use crate::kv::{AttemptFailure, KvError};
use crate::store::CommitFault;

const OTHER_ACTOR: &str = "actor-10";
const VERSIONS: [&[u8]; 3] = [b"2.3.7", b"", b"10.200.3000-rc.1"];

#[derive(Clone, Debug)]
enum Query {
    All,
    Range { start: Vec<u8>, end: Vec<u8>, exclusive: bool },
    Prefix(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Op {
    Get(Vec<Vec<u8>>),
    List { query: Query, reverse: Option<bool>, limit: Option<u64> },
    Put(Vec<(Vec<u8>, Vec<u8>)>),
    Delete(Vec<Vec<u8>>),
    DeleteRange(Vec<u8>, Vec<u8>),
    Drop,
}

#[derive(Clone, Debug)]
struct Step {
    actor: usize,
    op: Op,
    fault: Option<CommitFault>,
    version: usize,
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(0x00u8),
        4 => Just(0xFF),
        2 => Just(0x01),
        2 => Just(0xFE),
        2 => Just(6),
        1 => any::<u8>(),
    ]
}

/// Keys biased to share prefixes and to hold `0x00` / `0xFF` anywhere, plus the empty key.
fn key() -> impl Strategy<Value = Vec<u8>> {
    let stems: Vec<Vec<u8>> =
        vec![vec![6], vec![6, 1], vec![0xFF], vec![0xFF, 0xFF], vec![0], vec![0, 0xFF]];
    prop_oneof![
        1 => Just(Vec::new()),
        3 => vec(byte(), 1..4),
        4 => (select(stems), vec(byte(), 0..3)).prop_map(|(s, t)| [s, t].concat()),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![1 => Just(Vec::new()), 3 => vec(any::<u8>(), 0..6)]
}

fn query() -> impl Strategy<Value = Query> {
    prop_oneof![
        1 => Just(Query::All),
        2 => (key(), key(), any::<bool>())
            .prop_map(|(start, end, exclusive)| Query::Range { start, end, exclusive }),
        3 => key().prop_map(Query::Prefix),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let reverse = select(vec![None, Some(false), Some(true)]);
    let limit = prop_oneof![Just(None), Just(Some(0u64)), (1u64..6).prop_map(Some)];
    prop_oneof![
        2 => vec(key(), 0..5).prop_map(Op::Get),
        3 => (query(), reverse, limit).prop_map(|(query, reverse, limit)| Op::List { query, reverse, limit }),
        4 => vec((key(), value()), 0..6).prop_map(Op::Put),
        2 => vec(key(), 0..5).prop_map(Op::Delete),
        1 => (key(), key()).prop_map(|(s, e)| Op::DeleteRange(s, e)),
        1 => Just(Op::Drop),
    ]
}

fn fault() -> impl Strategy<Value = Option<CommitFault>> {
    prop_oneof![
        10 => Just(None),
        1 => Just(Some(CommitFault::Conflict)),
        1 => Just(Some(CommitFault::Unknown { applied: false })),
        1 => Just(Some(CommitFault::Unknown { applied: true })),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (0usize..2, op(), fault(), 0..VERSIONS.len()).prop_map(|(actor, op, fault, version)| Step {
        actor,
        op,
        fault,
        version,
    })
}

fn request(op: &Op) -> KvRequestData {
    let bs = |ks: &[Vec<u8>]| ks.iter().map(|k| b(k)).collect::<Vec<Bytes>>();
    match op {
        Op::Get(keys) => KvRequestData::KvGetRequest(KvGetRequest { keys: bs(keys) }),
        Op::List { query, reverse, limit } => {
            let query = match query {
                Query::All => KvListQuery::KvListAllQuery,
                Query::Range { start, end, exclusive } => {
                    KvListQuery::KvListRangeQuery(KvListRangeQuery {
                        start: b(start),
                        end: b(end),
                        exclusive: *exclusive,
                    })
                }
                Query::Prefix(p) => KvListQuery::KvListPrefixQuery(KvListPrefixQuery { key: b(p) }),
            };
            KvRequestData::KvListRequest(KvListRequest { query, reverse: *reverse, limit: *limit })
        }
        Op::Put(pairs) => KvRequestData::KvPutRequest(KvPutRequest {
            keys: pairs.iter().map(|(k, _)| b(k)).collect(),
            values: pairs.iter().map(|(_, v)| b(v)).collect(),
        }),
        Op::Delete(keys) => KvRequestData::KvDeleteRequest(KvDeleteRequest { keys: bs(keys) }),
        Op::DeleteRange(s, e) => {
            KvRequestData::KvDeleteRangeRequest(KvDeleteRangeRequest { start: b(s), end: b(e) })
        }
        Op::Drop => KvRequestData::KvDropRequest,
    }
}

/// Reference metadata: `(version, update_ts)`.
type Meta = (Vec<u8>, i64);
/// Reference entry: (value, metadata).
type Entry = (Vec<u8>, Meta);
/// Reference keyspace: key -> entry.
type Keyspace = BTreeMap<Vec<u8>, Entry>;

/// `usage(S) = sum over stored entries of (len(k) + 2 + len(v))` (§1.3).
fn usage(s: &Keyspace) -> u64 {
    s.iter().map(|(k, (v, _))| (k.len() + 2 + v.len()) as u64).sum()
}

/// `starts_with(K, P)` of §0, spelled out.
fn starts_with(k: &[u8], p: &[u8]) -> bool {
    k.len() >= p.len() && (0..p.len()).all(|i| k[i] == p[i])
}

fn selects(query: &Query, k: &[u8]) -> bool {
    match query {
        Query::All => true,
        Query::Range { start, end, exclusive: true } => start.as_slice() <= k && k < end.as_slice(),
        Query::Range { start, end, exclusive: false } => {
            start.as_slice() <= k && k <= end.as_slice()
        }
        Query::Prefix(p) => starts_with(k, p),
    }
}

fn meta(m: &Meta) -> KvMetadata {
    KvMetadata { version: b(&m.0), update_ts: m.1 }
}

/// What the reference says one request does: the success response, whether it changes the
/// keyspace (a new commit), and the keyspace after it; or the typed rejection.
enum Expected {
    Accepted { response: KvResponseData, mutates: bool, after: Keyspace },
    Rejected(KvError),
}

fn reference(s: &Keyspace, op: &Op, quota: u64, version: &[u8], wall: i64) -> Expected {
    match op {
        Op::Get(keys) => {
            let mut r = KvGetResponse { keys: vec![], values: vec![], metadata: vec![] };
            let mut seen: Vec<&Vec<u8>> = Vec::new();
            for k in keys {
                if seen.contains(&k) {
                    continue;
                }
                seen.push(k);
                if let Some((v, m)) = s.get(k) {
                    r.keys.push(b(k));
                    r.values.push(b(v));
                    r.metadata.push(meta(m));
                }
            }
            let response = KvResponseData::KvGetResponse(r);
            Expected::Accepted { response, mutates: false, after: s.clone() }
        }
        Op::List { query, reverse, limit } => {
            let mut selected: Vec<(&Vec<u8>, &Entry)> =
                s.iter().filter(|(k, _)| selects(query, k)).collect();
            if *reverse == Some(true) {
                selected.reverse();
            }
            selected.truncate(limit.unwrap_or(LIST_DEFAULT_LIMIT) as usize);
            let r = KvListResponse {
                keys: selected.iter().map(|(k, _)| b(k)).collect(),
                values: selected.iter().map(|(_, (v, _))| b(v)).collect(),
                metadata: selected.iter().map(|(_, (_, m))| meta(m)).collect(),
            };
            let response = KvResponseData::KvListResponse(r);
            Expected::Accepted { response, mutates: false, after: s.clone() }
        }
        Op::Put(pairs) => {
            let mut after = s.clone();
            for (k, v) in pairs {
                after.insert(k.clone(), (v.clone(), (version.to_vec(), wall)));
            }
            if usage(&after) > quota {
                let payload: u64 = pairs.iter().map(|(k, v)| (k.len() + 2 + v.len()) as u64).sum();
                let remaining = quota.saturating_sub(usage(s));
                return Expected::Rejected(KvError::StorageQuotaExceeded { remaining, payload });
            }
            let response = KvResponseData::KvPutResponse;
            Expected::Accepted { response, mutates: !pairs.is_empty(), after }
        }
        Op::Delete(keys) => {
            let mut after = s.clone();
            for k in keys {
                after.remove(k);
            }
            let mutates = after != *s;
            Expected::Accepted { response: KvResponseData::KvDeleteResponse, mutates, after }
        }
        Op::DeleteRange(start, end) => {
            let after: Keyspace = s
                .iter()
                .filter(|(k, _)| !(start <= *k && *k < end))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
            let mutates = after != *s;
            Expected::Accepted { response: KvResponseData::KvDeleteResponse, mutates, after }
        }
        Op::Drop => Expected::Accepted {
            response: KvResponseData::KvDropResponse,
            mutates: !s.is_empty(),
            after: Keyspace::new(),
        },
    }
}

fn check_store(world: &mut World, actor: &str, expected: &Keyspace) -> Result<(), TestCaseError> {
    let stored: Keyspace = world
        .entries(actor)
        .into_iter()
        .map(|(k, e)| (k, (e.value, (e.version, e.update_ts))))
        .collect();
    prop_assert_eq!(&stored, expected, "contents of {}", actor);
    prop_assert_eq!(world.usage_record(actor).unwrap_or(0), usage(expected), "usage of {}", actor);
    Ok(())
}

fn run_case(quota: u64, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut world = World::new();
    world.place(OTHER_ACTOR);
    world.cfg.max_storage_size = quota;
    let actors = [ACTOR, OTHER_ACTOR];
    let mut model: [Keyspace; 2] = [Keyspace::new(), Keyspace::new()];
    for (i, step) in steps.iter().enumerate() {
        let actor = actors[step.actor];
        world.cfg.metadata_version = VERSIONS[step.version].to_vec();
        let version_before = world.store.version();
        let req = request(&step.op);
        let result = world.attempt(actor, &req, step.fault);
        let s = &model[step.actor];
        match reference(s, &step.op, quota, VERSIONS[step.version], world.wall_ms) {
            Expected::Rejected(err) => {
                let out = result.map_err(|e| TestCaseError::fail(format!("step {i}: {e}")))?;
                prop_assert_eq!(out.error, Some(err.clone()), "step {}", i);
                prop_assert_eq!(out.response, err.to_response());
                prop_assert_eq!(
                    world.store.version(),
                    version_before,
                    "rejected request committed"
                );
            }
            Expected::Accepted { response, mutates, after } => match (step.fault, result) {
                (None, Ok(out)) => {
                    prop_assert_eq!(out.error, None, "step {}", i);
                    prop_assert_eq!(&out.response, &response, "step {} {:?}", i, step.op);
                    prop_assert_eq!(out.mutated, mutates, "step {} mutated", i);
                    let expected_commit = mutates.then(|| world.store.version());
                    prop_assert_eq!(out.commit_version, expected_commit);
                    prop_assert_eq!(out.read_version, version_before);
                    model[step.actor] = after;
                }
                (Some(fault), Err(e)) => {
                    let expected_failure = match fault {
                        CommitFault::Conflict => AttemptFailure::Conflict,
                        CommitFault::Unknown { .. } => AttemptFailure::Unknown,
                    };
                    prop_assert_eq!(&e.failure, &expected_failure, "step {}", i);
                    prop_assert_eq!(e.wrote, mutates, "step {} wrote", i);
                    if fault == (CommitFault::Unknown { applied: true }) {
                        model[step.actor] = after;
                    } else {
                        prop_assert_eq!(world.store.version(), version_before);
                    }
                }
                (fault, other) => {
                    return Err(TestCaseError::fail(format!(
                        "step {i} {:?} with fault {fault:?}: unexpected {other:?}",
                        step.op
                    )))
                }
            },
        }
        check_store(&mut world, ACTOR, &model[0])?;
        check_store(&mut world, OTHER_ACTOR, &model[1])?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn kv_matches_the_reference_keyspace(
        quota in select(vec![MAX_STORAGE_SIZE, 30, 60]),
        steps in vec(step(), 1..40),
    ) {
        run_case(quota, steps)?;
    }
}
