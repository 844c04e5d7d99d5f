//! The startup program, its bundle run and its oracle run: P12 (oracle equivalence, a property
//! over generated keyspaces, manifests and budgets, bundles from `preload::batch_preload`), P13
//! (no live read when the bundle covers everything), P14 (never new while `[1]` exists), P17
//! (a run without bundle observes the same), P18 (write-through answers the wake read), paging,
//! and failures.

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;

use crate::canary::{Canaries, Canary};
use crate::constants::{LIST_DEFAULT_LIMIT, PRELOAD_MAX_TOTAL_BYTES};
use crate::preload::{batch_preload, reference_manifest, Manifest, PrefixItem, Snapshot};
use crate::protocol::{preloaded_kv, KvListQuery, KvRequestData, PreloadedKv};
use crate::runner::app::{digest, inspector_token, ActorState, AppKey};
use crate::runner::startup::{
    oracle_run, DriverStep, LiveResult, Startup, StartupDriver, StartupFailure,
};

use super::support::{drive, record, snapshot, LiveKv};

const ACTOR: &str = "actor-1";

/// §4.1 as the engine applies it: `None` for `T == 0`, the empty-keyspace bundle for an empty
/// keyspace, no bundle without a manifest, else `batch_preload`.
fn bundle_for(
    snapshot: &Snapshot,
    manifest: Option<&Manifest>,
    budget: u64,
    canaries: Canaries,
) -> Option<PreloadedKv> {
    if budget == 0 {
        return None;
    }
    if snapshot.is_empty() {
        return Some(preloaded_kv::empty_keyspace());
    }
    manifest.map(|m| batch_preload(snapshot, m, budget, canaries))
}

fn bundle_run(
    snapshot: &Snapshot,
    bundle: Option<&PreloadedKv>,
    runner_manifest: Option<&Manifest>,
    page_limit: u64,
) -> (super::support::DrivenStartup, LiveKv) {
    let mut driver =
        StartupDriver::new(Startup::new(ACTOR, 3, None), bundle, runner_manifest, page_limit);
    let mut live = LiveKv::new(snapshot.clone());
    let driven = drive(&mut driver, &mut live, |_| false);
    (driven, live)
}

fn state_json(counter: u64, pages: u32) -> Vec<u8> {
    format!(r#"{{"initialized":true,"counter":{counter},"pages":{pages},"input":null}}"#)
        .into_bytes()
}

/// An existing actor with every kind of data of §6.1.
fn existing_actor() -> Snapshot {
    snapshot(&[
        (&[1], &state_json(4, 2)),
        (&[2, 0, 1], b"conn-1"),
        (&[2, 0, 2], b""),
        (&[3], b"token-from-before"),
        (&[4, 9], b"user data"),
        (&[5, 1, 1], b"{\"size\":1}"),
        (&[5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1], b"message"),
        (&[6], &7i64.to_be_bytes()),
        (&[6, 1, 0], b"step-0"),
        (&[6, 1, 0xFF], b"step-ff"),
        (&[8, 1, 0, 0, 0, 0], b"page-0"),
        (&[8, 1, 0, 0, 0, 1], b"page-1"),
    ])
}

fn labels(record: &crate::fact::StartupRecord) -> Vec<&str> {
    record.reads.iter().map(|(what, _)| what.as_str()).collect()
}

#[test]
fn full_bundle_sends_no_live_reads_and_writes_only_the_state() {
    let s = existing_actor();
    let manifest = reference_manifest();
    let bundle = bundle_for(&s, Some(&manifest), PRELOAD_MAX_TOTAL_BYTES, Canaries::NONE);
    let (driven, live) = bundle_run(&s, bundle.as_ref(), Some(&manifest), LIST_DEFAULT_LIMIT);
    assert_eq!(driven.live_reads, 0, "P13");
    assert_eq!(live.reads(), 0);
    let record = driven.outcome.expect("startup succeeds");
    assert!(!record.new_actor);
    assert_eq!(record.counter, 5);
    assert_eq!(record.writes, vec![(vec![vec![1u8]], vec![state_json(5, 2)])]);
    assert_eq!(
        labels(&record),
        vec![
            "get [1]",
            "list [2]",
            "list [5,1,2]",
            "get [3]",
            "get [5,1,1]",
            "get [6]",
            "list [6,1]",
            "page [8,1,0,0,0,0]",
            "page [8,1,0,0,0,1]",
            "get [1]",
        ]
    );
    assert_eq!(record.reads[1].1, format!("2 entries {}", digest(&listing_bytes(&s, &[2]))));
    // The put really landed.
    assert_eq!(live.snapshot.get(&[1]).map(|r| r.value.clone()), Some(state_json(5, 2)));
}

/// The listing rendering's input, rebuilt from the spec's `L(P)`.
fn listing_bytes(s: &Snapshot, prefix: &[u8]) -> Vec<u8> {
    let mut flat = Vec::new();
    for (k, r) in s.iter().filter(|(k, _)| k.starts_with(prefix)) {
        flat.extend_from_slice(&(k.len() as u32).to_be_bytes());
        flat.extend_from_slice(k);
        flat.extend_from_slice(&(r.value.len() as u32).to_be_bytes());
        flat.extend_from_slice(&r.value);
    }
    flat
}

#[test]
fn without_a_bundle_every_read_is_live_and_the_record_is_the_same() {
    let s = existing_actor();
    let manifest = reference_manifest();
    let bundle = bundle_for(&s, Some(&manifest), PRELOAD_MAX_TOTAL_BYTES, Canaries::NONE);
    let (with_bundle, _) = bundle_run(&s, bundle.as_ref(), Some(&manifest), LIST_DEFAULT_LIMIT);
    let (without, live) = bundle_run(&s, None, Some(&manifest), LIST_DEFAULT_LIMIT);
    assert_eq!(without.outcome, with_bundle.outcome, "P17");
    // Every logical read went live: 5 gets, 3 listings, 2 pages (all single pages).
    assert_eq!(without.live_reads, 10);
    assert_eq!(live.reads(), 10);
    assert_eq!(Ok(without.outcome.clone().unwrap()), oracle_run(&s, ACTOR, 3, None));
}

#[test]
fn a_partial_budget_mixes_map_answers_and_live_reads() {
    let s = existing_actor();
    let manifest = reference_manifest();
    // Enough for the four get-keys (about 150 bytes), not for every prefix.
    let bundle = bundle_for(&s, Some(&manifest), 150, Canaries::NONE).unwrap();
    assert!(bundle.requested_get_keys.len() == 4 && bundle.requested_prefixes.len() < 4);
    let (driven, live) = bundle_run(&s, Some(&bundle), Some(&manifest), LIST_DEFAULT_LIMIT);
    assert!(driven.live_reads > 0 && driven.live_reads < 10, "{}", driven.live_reads);
    assert_eq!(live.reads() as u32, driven.live_reads);
    assert_eq!(driven.outcome, oracle_run(&s, ACTOR, 3, None));
}

#[test]
fn the_empty_keyspace_bundle_takes_the_new_path_with_one_put_and_no_read() {
    let s = Snapshot::new();
    let bundle = preloaded_kv::empty_keyspace();
    let (driven, live) = bundle_run(&s, Some(&bundle), Some(&reference_manifest()), 16);
    assert_eq!(driven.live_reads, 0);
    assert_eq!(live.requests.len(), 1, "one put, nothing else");
    let record = driven.outcome.unwrap();
    assert!(record.new_actor);
    assert_eq!(record.counter, 1);
    assert_eq!(
        record.writes,
        vec![(
            vec![vec![1u8], vec![3], vec![5, 1, 1]],
            vec![
                state_json(1, 0),
                inspector_token(ACTOR, 3),
                br#"{"size":0,"next_id":0}"#.to_vec()
            ]
        )]
    );
    assert_eq!(
        labels(&record),
        vec!["get [1]", "get [3]", "get [5,1,1]", "get [6]", "list [6,1]", "get [1]"]
    );
}

#[test]
fn a_not_covered_state_is_read_live_and_never_taken_as_new() {
    let s = existing_actor();
    // The budget runs out on a large `[3]` before `[1]` is reached.
    let mut s = s;
    s.insert(vec![3], record(&[0xAB; 400]));
    let manifest = Manifest { keys: vec![vec![3], vec![1]], prefixes: vec![] };
    let bundle = bundle_for(&s, Some(&manifest), 420, Canaries::NONE).unwrap();
    assert_eq!(bundle.requested_get_keys, vec![vbare::Bytes::from(vec![3u8])]);
    let mut driver =
        StartupDriver::new(Startup::new(ACTOR, 3, None), Some(&bundle), Some(&manifest), 64);
    let DriverStep::Live(KvRequestData::KvGetRequest(first)) = driver.start() else {
        panic!("the state must be read live")
    };
    assert_eq!(first.keys, vec![vbare::Bytes::from(vec![1u8])]);
    let (driven, _) = bundle_run(&s, Some(&bundle), Some(&manifest), 64);
    let record = driven.outcome.unwrap();
    assert!(!record.new_actor, "P14");
    assert_eq!(record.counter, 5);
    assert_eq!(Ok(record), oracle_run(&s, ACTOR, 3, None));
}

#[test]
fn the_getkey_canary_makes_an_existing_actor_take_the_new_path() {
    // `preload-getkey-before-budget` records `[1]` as requested although it did not fit: the
    // runner then trusts the absence, and the record differs from the oracle's (P12, P14).
    let s = existing_actor();
    let manifest = Manifest { keys: vec![vec![1]], prefixes: vec![] };
    let canary = Canaries::only(Canary::PreloadGetkeyBeforeBudget);
    let bundle = bundle_for(&s, Some(&manifest), 10, canary).unwrap();
    let (driven, _) = bundle_run(&s, Some(&bundle), Some(&manifest), 64);
    assert!(driven.outcome.as_ref().unwrap().new_actor);
    assert_ne!(driven.outcome, oracle_run(&s, ACTOR, 3, None));
    let clean = bundle_for(&s, Some(&manifest), 10, Canaries::NONE).unwrap();
    let (driven, _) = bundle_run(&s, Some(&clean), Some(&manifest), 64);
    assert_eq!(driven.outcome, oracle_run(&s, ACTOR, 3, None));
}

#[test]
fn a_cached_listing_is_not_used_where_a_complete_one_is_needed() {
    let s = existing_actor();
    let engine = reference_manifest();
    let mut runner = reference_manifest();
    for item in &mut runner.prefixes {
        if item.prefix == [2] {
            item.partial = true;
        }
    }
    let bundle = bundle_for(&s, Some(&engine), PRELOAD_MAX_TOTAL_BYTES, Canaries::NONE);
    let (driven, live) = bundle_run(&s, bundle.as_ref(), Some(&runner), 64);
    assert_eq!(driven.live_reads, 1);
    let KvRequestData::KvListRequest(list) = &live.requests[0] else { panic!() };
    assert!(matches!(&list.query, KvListQuery::KvListPrefixQuery(q) if q.key.as_ref() == [2]));
    assert_eq!(driven.outcome, oracle_run(&s, ACTOR, 3, None));
}

#[test]
fn a_complete_live_listing_pages() {
    let entries: Vec<(Vec<u8>, Vec<u8>)> =
        (0u8..7).map(|i| (vec![2, 0, i], vec![i])).chain([(vec![1], state_json(0, 0))]).collect();
    let s = Snapshot::from_entries(entries.into_iter().map(|(k, v)| (k, record(&v))));
    let (driven, live) = bundle_run(&s, None, None, 3);
    let lists: Vec<&KvListQuery> = live
        .requests
        .iter()
        .filter_map(|r| match r {
            KvRequestData::KvListRequest(l) => Some(&l.query),
            _ => None,
        })
        .collect();
    // `[2]`: pages of 3, 3, 1; then `[5,1,2]` and `[6,1]` are empty (one page each).
    assert_eq!(lists.len(), 5);
    let KvListQuery::KvListRangeQuery(second) = lists[1] else { panic!("{:?}", lists[1]) };
    assert_eq!(
        (second.start.as_ref(), second.end.as_ref(), second.exclusive),
        (&[2, 0, 2, 0][..], &[3][..], true)
    );
    let record = driven.outcome.unwrap();
    assert_eq!(record.reads[1].0, "list [2]");
    assert!(record.reads[1].1.starts_with("7 entries"), "{}", record.reads[1].1);
}

#[test]
fn an_unknown_read_is_sent_again_and_a_rejected_put_fails_the_start() {
    let s = existing_actor();
    let mut driver = StartupDriver::new(Startup::new(ACTOR, 3, None), None, None, 64);
    let mut live = LiveKv::new(s.clone());
    let mut flip = false;
    let driven = drive(&mut driver, &mut live, |_| {
        flip = !flip;
        flip
    });
    assert_eq!(driven.outcome, oracle_run(&s, ACTOR, 3, None));
    assert_eq!(driven.live_reads as usize, 2 * live.reads());

    let mut live = LiveKv::new(s.clone());
    live.reject_puts = Some("kv.storage_quota_exceeded".into());
    let mut driver = StartupDriver::new(Startup::new(ACTOR, 3, None), None, None, 64);
    let driven = drive(&mut driver, &mut live, |_| false);
    assert_eq!(driven.outcome, Err(StartupFailure::PutFailed("kv.storage_quota_exceeded".into())));
    assert_eq!(live.snapshot, s, "nothing was written");

    let mut driver = StartupDriver::new(Startup::new(ACTOR, 3, None), None, None, 64);
    let mut live = LiveKv::new(s.clone());
    let mut step = driver.start();
    loop {
        match step {
            DriverStep::Live(KvRequestData::KvPutRequest(_)) => break,
            DriverStep::Live(request) => {
                step = driver.on_result(LiveResult::Response(live.answer(&request)));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        driver.on_result(LiveResult::Unknown),
        DriverStep::Failed(StartupFailure::PutFailed(_))
    ));
}

#[test]
fn a_corrupt_state_fails_the_start_before_any_write() {
    let s = snapshot(&[(&[1], b"not json")]);
    let (driven, live) = bundle_run(&s, None, None, 64);
    assert!(matches!(driven.outcome, Err(StartupFailure::CorruptState(_))));
    assert_eq!(live.requests.len(), 1);
}

#[test]
fn a_state_claiming_too_many_pages_reads_at_most_the_maximum() {
    let s = snapshot(&[(&[1], &state_json(1, u32::MAX))]);
    let (driven, _) = bundle_run(&s, None, None, 64);
    let record = driven.outcome.unwrap();
    let pages = record.reads.iter().filter(|(what, _)| what.starts_with("page ")).count();
    assert_eq!(pages, crate::runner::app::MAX_PAGES as usize);
    assert_eq!(record.reads.last().map(|(w, _)| w.as_str()), Some("get [1]"));
}

#[test]
fn write_through_answers_the_wake_read_from_the_map() {
    let s = existing_actor();
    let manifest = reference_manifest();
    let bundle = bundle_for(&s, Some(&manifest), PRELOAD_MAX_TOTAL_BYTES, Canaries::NONE);
    let (driven, live) = bundle_run(&s, bundle.as_ref(), Some(&manifest), 64);
    assert_eq!(live.reads(), 0);
    let record = driven.outcome.unwrap();
    let (what, result) = record.reads.last().unwrap();
    assert_eq!(what, "get [1]");
    assert_eq!(result, &format!("hit {}", digest(&state_json(5, 2))), "P18");
}

#[test]
fn a_new_actor_keeps_its_input_digest_in_the_state() {
    let mut driver = StartupDriver::new(Startup::new(ACTOR, 0, Some(b"hello")), None, None, 64);
    let mut live = LiveKv::new(Snapshot::new());
    let driven = drive(&mut driver, &mut live, |_| false);
    let record = driven.outcome.unwrap();
    let state = ActorState::decode(&record.writes[0].1[0]).unwrap();
    assert_eq!(state.input.as_deref(), Some("x68656c6c6f"));
    assert_eq!(state.counter, 1);
}

// ---- P12, property --------------------------------------------------------------------------

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..=6),
        2 => Just(Vec::new()),
        2 => (20usize..=200).prop_map(|n| vec![0x5A; n]),
        1 => (2_000usize..=9_000).prop_map(|n| vec![0xC3; n]),
    ]
}

fn tail() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![Just(0u8), Just(1), Just(0xFF), any::<u8>()], 0..=3)
}

/// An app-shaped keyspace: maybe a state (valid, sometimes with more pages than stored), and
/// any of the other §6.1 keys, including keys that are prefixes of others and `0x00`/`0xFF`
/// tails.
fn app_keyspace() -> impl Strategy<Value = Snapshot> {
    let state = prop_oneof![
        2 => Just(None),
        5 => (0u64..5, 0u32..5).prop_map(|(c, p)| Some(state_json(c, p))),
    ];
    let singles = btree_map(
        prop_oneof![
            Just(vec![3u8]),
            Just(vec![5, 1, 1]),
            Just(vec![6]),
            Just(vec![2]),
            Just(vec![8, 1]),
            Just(vec![5, 1]),
        ],
        value(),
        0..4,
    );
    let connections =
        btree_map(any::<u16>().prop_map(|c| AppKey::Connection(c).to_raw()), value(), 0..6);
    let messages = btree_map((0u64..4).prop_map(|m| AppKey::Message(m).to_raw()), value(), 0..4);
    let history = btree_map(tail().prop_map(|t| AppKey::History(t).to_raw()), value(), 0..5);
    let pages = btree_set(0u32..6, 0..5);
    let user = btree_map(tail().prop_map(|t| AppKey::User(t).to_raw()), value(), 0..3);
    (state, singles, connections, messages, history, pages, user, value()).prop_map(
        |(state, singles, connections, messages, history, pages, user, page_value)| {
            let mut s = Snapshot::new();
            if let Some(state) = state {
                s.insert(vec![1], record(&state));
            }
            for (k, v) in
                singles.into_iter().chain(connections).chain(messages).chain(history).chain(user)
            {
                s.insert(k, record(&v));
            }
            for p in pages {
                s.insert(AppKey::Page(p).to_raw(), record(&page_value));
            }
            s
        },
    )
}

/// A manifest: the reference one, a variant with other budgets, order and items, or none.
fn manifest() -> impl Strategy<Value = Option<Manifest>> {
    let scaled = (vec(0u64..40_000, 4), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(budgets, drop_state_key, reverse, with_empty)| {
            let mut m = reference_manifest();
            for (item, b) in m.prefixes.iter_mut().zip(budgets) {
                item.max_bytes = b;
            }
            if drop_state_key {
                m.keys.retain(|k| k != &[1]);
            }
            if reverse {
                m.keys.reverse();
                m.prefixes.reverse();
            }
            if with_empty {
                m.prefixes.push(PrefixItem::new(Vec::<u8>::new(), 50_000, false));
            }
            m
        },
    );
    prop_oneof![
        3 => Just(Some(reference_manifest())),
        6 => scaled.prop_map(Some),
        1 => Just(None),
    ]
}

fn budget() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        3 => 1u64..400,
        3 => 400u64..20_000,
        2 => Just(PRELOAD_MAX_TOTAL_BYTES),
    ]
}

proptest! {
    /// P12 with write-through: the bundle run (bundle from `batch_preload` at the same snapshot,
    /// map built with the runner's own manifest, live reads answered from the snapshot with the
    /// run's own writes applied, some reads lost with their connection and sent again) observes
    /// exactly what the oracle run observes. P13: a run sends at most as many live reads as
    /// logical reads, and none when the oracle would have read nothing live that the map lacks.
    #[test]
    fn the_bundle_run_equals_the_oracle_run(
        s in app_keyspace(),
        m in manifest(),
        t in budget(),
        runner_declares in any::<bool>(),
        page_limit in prop_oneof![1u64..4, Just(LIST_DEFAULT_LIMIT)],
        generation in 0u32..3,
        input in proptest::option::of(vec(any::<u8>(), 0..4)),
        lost in vec(any::<bool>(), 0..16),
    ) {
        let bundle = bundle_for(&s, m.as_ref(), t, Canaries::NONE);
        let runner_manifest = if runner_declares { m.as_ref() } else { None };
        let mut driver = StartupDriver::new(
            Startup::new(ACTOR, generation, input.as_deref()),
            bundle.as_ref(),
            runner_manifest,
            page_limit,
        );
        let mut live = LiveKv::new(s.clone());
        let driven = drive(&mut driver, &mut live, |n| lost.get(n).copied().unwrap_or(false));
        let oracle = oracle_run(&s, ACTOR, generation, input.as_deref());
        prop_assert_eq!(&driven.outcome, &oracle);
        if let Ok(record) = &oracle {
            prop_assert_eq!(record.writes.len(), 1);
            // Never new while `[1]` exists (P14).
            prop_assert_eq!(record.new_actor, s.get(&[1]).is_none());
        }
        if bundle.as_ref().is_some_and(preloaded_kv::is_empty_keyspace) {
            prop_assert_eq!(driven.live_reads, 0);
        }
    }
}
