//! Tests of the transactional store: unit tests per behaviour, and the serializability property
//! (replaying the committed transactions in commit order on a plain map gives the same reads and
//! the same final state) under random interleavings with injected conflicts and unknown outcomes.

use super::*;
use proptest::prelude::*;

fn k(s: &[u8]) -> Vec<u8> {
    s.to_vec()
}

#[test]
fn reads_see_the_snapshot_of_their_read_version() {
    let mut st = Store::default();
    let mut t = st.begin(0);
    t.set(k(b"a"), k(b"1"));
    st.commit(t, 0, None).unwrap();
    let mut reader = st.begin(0);
    let mut writer = st.begin(0);
    writer.set(k(b"a"), k(b"2"));
    writer.set(k(b"b"), k(b"3"));
    st.commit(writer, 0, None).unwrap();
    assert_eq!(st.get(&mut reader, b"a", ReadMode::Snapshot, 0).unwrap(), Some(k(b"1")));
    assert_eq!(st.get(&mut reader, b"b", ReadMode::Snapshot, 0).unwrap(), None);
    let all = st.get_range(&mut reader, &KeyRange::prefix(b""), None, false, ReadMode::Snapshot, 0);
    assert_eq!(all.unwrap(), vec![(k(b"a"), k(b"1"))]);
}

#[test]
fn serializable_read_overwritten_later_conflicts_and_snapshot_read_does_not() {
    for mode in [ReadMode::Serializable, ReadMode::Snapshot] {
        let mut st = Store::default();
        let mut t1 = st.begin(0);
        let mut t2 = st.begin(0);
        st.get(&mut t1, b"x", mode, 0).unwrap();
        t1.set(k(b"y"), k(b"1"));
        t2.set(k(b"x"), k(b"1"));
        st.commit(t2, 0, None).unwrap();
        let r = st.commit(t1, 0, None);
        match mode {
            ReadMode::Serializable => assert_eq!(r.unwrap_err(), CommitError::Conflict),
            ReadMode::Snapshot => assert!(r.is_ok()),
        }
    }
}

#[test]
fn range_read_conflicts_with_insert_inside_but_not_outside() {
    let mut st = Store::default();
    let mut t1 = st.begin(0);
    st.get_range(&mut t1, &KeyRange::prefix(b"p"), None, false, ReadMode::Serializable, 0).unwrap();
    t1.set(k(b"z"), k(b""));
    let mut outside = st.begin(0);
    outside.set(k(b"q"), k(b"1"));
    st.commit(outside, 0, None).unwrap();
    let mut inside = st.begin(0);
    inside.set(k(b"p\xff\x00"), k(b"1"));
    st.commit(inside, 0, None).unwrap();
    assert_eq!(st.commit(t1, 0, None).unwrap_err(), CommitError::Conflict);
}

#[test]
fn limited_range_read_records_only_what_it_covered() {
    let mut st = Store::default();
    let mut t = st.begin(0);
    for key in [b"a1", b"a2", b"a3"] {
        t.set(k(key), k(b""));
    }
    st.commit(t, 0, None).unwrap();
    let mut t1 = st.begin(0);
    let got = st
        .get_range(&mut t1, &KeyRange::prefix(b"a"), Some(1), false, ReadMode::Serializable, 0)
        .unwrap();
    assert_eq!(got, vec![(k(b"a1"), k(b""))]);
    t1.set(k(b"out"), k(b""));
    let mut w = st.begin(0);
    w.set(k(b"a3"), k(b"changed"));
    st.commit(w, 0, None).unwrap();
    assert!(st.commit(t1, 0, None).is_ok(), "a write past the limit must not conflict");
}

#[test]
fn reverse_limited_range_returns_greatest_keys_descending() {
    let mut st = Store::default();
    let mut t = st.begin(0);
    for key in [&[1u8][..], &[1, 0], &[1, 0xFF], &[2]] {
        t.set(k(key), k(b""));
    }
    st.commit(t, 0, None).unwrap();
    let mut r = st.begin(0);
    let got = st
        .get_range(&mut r, &KeyRange::prefix(&[1]), Some(2), true, ReadMode::Snapshot, 0)
        .unwrap();
    let keys: Vec<_> = got.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![vec![1, 0xFF], vec![1, 0]]);
}

#[test]
fn transactions_read_their_own_writes_clears_and_ranges() {
    let mut st = Store::default();
    let mut t = st.begin(0);
    t.set(k(b"a"), k(b"1"));
    t.set(k(b"b"), k(b"2"));
    st.commit(t, 0, None).unwrap();
    let mut t = st.begin(0);
    t.clear_range(KeyRange::new(k(b"a"), k(b"c")));
    t.set(k(b"b"), k(b"new"));
    t.set(k(b"c"), k(b"3"));
    assert_eq!(st.get(&mut t, b"a", ReadMode::Snapshot, 0).unwrap(), None);
    let all = st.get_range(&mut t, &KeyRange::prefix(b""), None, false, ReadMode::Snapshot, 0);
    assert_eq!(all.unwrap(), vec![(k(b"b"), k(b"new")), (k(b"c"), k(b"3"))]);
    st.commit(t, 0, None).unwrap();
    let mut r = st.begin(0);
    let all = st.get_range(&mut r, &KeyRange::prefix(b""), None, false, ReadMode::Snapshot, 0);
    assert_eq!(all.unwrap(), vec![(k(b"b"), k(b"new")), (k(b"c"), k(b"3"))]);
}

#[test]
fn forced_conflict_writes_nothing_and_unknown_applies_as_told() {
    let mut st = Store::default();
    let mut t = st.begin(0);
    t.set(k(b"a"), k(b"1"));
    assert_eq!(st.commit(t, 0, Some(CommitFault::Conflict)).unwrap_err(), CommitError::Conflict);
    let mut t = st.begin(0);
    t.set(k(b"b"), k(b"1"));
    let err = st.commit(t, 0, Some(CommitFault::Unknown { applied: false })).unwrap_err();
    assert_eq!(err, CommitError::Unknown);
    let mut t = st.begin(0);
    t.set(k(b"c"), k(b"1"));
    let err = st.commit(t, 0, Some(CommitFault::Unknown { applied: true })).unwrap_err();
    assert_eq!(err, CommitError::Unknown);
    let mut r = st.begin(0);
    let all = st.get_range(&mut r, &KeyRange::prefix(b""), None, false, ReadMode::Snapshot, 0);
    assert_eq!(all.unwrap(), vec![(k(b"c"), k(b"1"))]);
    assert_eq!(st.version(), 1);
}

#[test]
fn versionstamps_are_commit_ordered_and_unique_within_a_transaction() {
    let mut st = Store::default();
    let mut t = st.begin(0);
    assert_eq!(t.set_versionstamped_key(k(b"q/"), k(b"/a"), k(b"x")), 0);
    assert_eq!(t.set_versionstamped_key(k(b"q/"), k(b"/b"), k(b"y")), 1);
    t.set_versionstamped_value(k(b"epoch"), vec![0xEE; 2], 2);
    let c1 = st.commit(t, 0, None).unwrap();
    let mut t = st.begin(0);
    t.set_versionstamped_key(k(b"q/"), k(b"/c"), k(b"z"));
    let c2 = st.commit(t, 0, None).unwrap();
    let mut r = st.begin(0);
    let q = st.get_range(&mut r, &KeyRange::prefix(b"q/"), None, false, ReadMode::Snapshot, 0);
    let keys: Vec<_> = q.unwrap().into_iter().map(|(k, _)| k).collect();
    let expect = |c: &Committed, order: u16, s: &[u8]| {
        [b"q/".as_slice(), &c.versionstamp(order), s].concat()
    };
    assert_eq!(keys, vec![expect(&c1, 0, b"/a"), expect(&c1, 1, b"/b"), expect(&c2, 0, b"/c")]);
    let epoch = st.get(&mut r, b"epoch", ReadMode::Snapshot, 0).unwrap().unwrap();
    assert_eq!(epoch[..2], [0xEE, 0xEE]);
    assert_eq!(epoch[2..], c1.version.to_be_bytes());
}

#[test]
fn atomic_adds_do_not_conflict_and_accumulate() {
    let mut st = Store::default();
    let mut t1 = st.begin(0);
    let mut t2 = st.begin(0);
    t1.atomic_add(k(b"n"), 2);
    t2.atomic_add(k(b"n"), 3);
    st.commit(t1, 0, None).unwrap();
    st.commit(t2, 0, None).unwrap();
    let mut r = st.begin(0);
    let v = st.get(&mut r, b"n", ReadMode::Snapshot, 0).unwrap().unwrap();
    assert_eq!(decode_i64(&v), 5);
}

#[test]
fn old_transactions_fail_retryably_and_stop_pinning_history() {
    let limits = StoreLimits { txn_max_ms: 100, ..StoreLimits::default() };
    let mut st = Store::new(limits);
    let mut old = st.begin(0);
    for i in 0..50u8 {
        let mut t = st.begin(i as u64);
        t.set(k(b"hot"), vec![i]);
        st.commit(t, i as u64, None).unwrap();
    }
    assert!(st.held_versions() >= 50, "history is pinned by the open transaction");
    let err = st.get(&mut old, b"hot", ReadMode::Snapshot, 101).unwrap_err();
    assert!(matches!(err, StoreError::TooOld { .. }));
    let err = st.commit(old, 101, None).unwrap_err();
    assert!(err.is_retryable());
    for i in 0..4u8 {
        let mut t = st.begin(200);
        t.set(k(b"other"), vec![i]);
        st.commit(t, 200, None).unwrap();
    }
    assert!(st.held_versions() <= 3, "held {} versions", st.held_versions());
    assert_eq!(st.open_transactions(), 0);
}

#[test]
fn deleted_keys_disappear_from_memory_once_unneeded() {
    let mut st = Store::default();
    let mut t = st.begin(0);
    for i in 0..1000u32 {
        t.set(i.to_be_bytes().to_vec(), k(b"v"));
    }
    st.commit(t, 0, None).unwrap();
    let mut t = st.begin(0);
    t.clear_range(KeyRange::prefix(b""));
    st.commit(t, 0, None).unwrap();
    for _ in 0..20 {
        let t = st.begin(0);
        st.abort(t);
    }
    assert_eq!(st.held_versions(), 0);
}

#[test]
fn oversized_transactions_are_rejected_whole() {
    let limits = StoreLimits { txn_max_bytes: 10, ..StoreLimits::default() };
    let mut st = Store::new(limits);
    let mut t = st.begin(0);
    t.set(k(b"key"), vec![0; 20]);
    let err = st.commit(t, 0, None).unwrap_err();
    assert!(matches!(err, CommitError::TooLarge { .. }) && !err.is_retryable());
    assert_eq!(st.version(), 0);
}

#[test]
fn strinc_follows_the_spec() {
    assert_eq!(strinc(&[1, 2]), Some(vec![1, 3]));
    assert_eq!(strinc(&[1, 0xFF, 0xFF]), Some(vec![2]));
    assert_eq!(strinc(&[0xFF, 0xFF]), None);
    assert_eq!(strinc(&[]), None);
}

// ---- serializability property ----------------------------------------------------------------

/// One step of a random schedule over `SLOTS` concurrent transaction slots.
#[derive(Clone, Debug)]
enum Op {
    Begin(usize),
    Get(usize, Vec<u8>, ReadMode),
    Range(usize, Vec<u8>, Option<usize>, bool, ReadMode),
    Set(usize, Vec<u8>, u8),
    Clear(usize, Vec<u8>),
    ClearPrefix(usize, Vec<u8>),
    Add(usize, Vec<u8>, i8),
    Commit(usize, Option<CommitFault>),
}

const SLOTS: usize = 3;

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8)], 0..3)
}

fn mode() -> impl Strategy<Value = ReadMode> {
    prop_oneof![Just(ReadMode::Serializable), Just(ReadMode::Snapshot)]
}

fn fault() -> impl Strategy<Value = Option<CommitFault>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(CommitFault::Conflict)),
        1 => Just(Some(CommitFault::Unknown { applied: true })),
        1 => Just(Some(CommitFault::Unknown { applied: false })),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SLOTS;
    prop_oneof![
        2 => s.clone().prop_map(Op::Begin),
        3 => (s.clone(), key(), mode()).prop_map(|(s, k, m)| Op::Get(s, k, m)),
        2 => (s.clone(), key(), prop::option::of(1usize..3), any::<bool>(), mode())
            .prop_map(|(s, k, l, r, m)| Op::Range(s, k, l, r, m)),
        3 => (s.clone(), key(), any::<u8>()).prop_map(|(s, k, v)| Op::Set(s, k, v)),
        1 => (s.clone(), key()).prop_map(|(s, k)| Op::Clear(s, k)),
        1 => (s.clone(), key()).prop_map(|(s, k)| Op::ClearPrefix(s, k)),
        1 => (s.clone(), key(), any::<i8>()).prop_map(|(s, k, d)| Op::Add(s, k, d)),
        2 => (s, fault()).prop_map(|(s, f)| Op::Commit(s, f)),
    ]
}

/// What a transaction did, as the reference replays it.
#[derive(Clone, Debug)]
enum Step {
    Get(Vec<u8>, ReadMode, Option<Vec<u8>>),
    Range(KeyRange, Option<usize>, bool, ReadMode, Vec<(Vec<u8>, Vec<u8>)>),
    Write(Mutation),
}

type Plain = BTreeMap<Vec<u8>, Vec<u8>>;

/// The reference: a transaction's view is the base map plus its own sets and clears (atomic adds
/// are applied only at commit, as the store documents).
fn view(base: &Plain, steps: &[Step]) -> Plain {
    let mut m = base.clone();
    for s in steps {
        match s {
            Step::Write(Mutation::Set { key, value }) => {
                m.insert(key.clone(), value.clone());
            }
            Step::Write(Mutation::Clear { key }) => {
                m.remove(key);
            }
            Step::Write(Mutation::ClearRange { range }) => m.retain(|k, _| !range.contains(k)),
            _ => {}
        }
    }
    m
}

fn apply_commit(base: &mut Plain, steps: &[Step]) {
    for s in steps {
        match s {
            Step::Write(Mutation::Set { key, value }) => {
                base.insert(key.clone(), value.clone());
            }
            Step::Write(Mutation::Clear { key }) => {
                base.remove(key);
            }
            Step::Write(Mutation::ClearRange { range }) => base.retain(|k, _| !range.contains(k)),
            Step::Write(Mutation::AtomicAdd { key, delta }) => {
                let cur = base.get(key).map_or(0, |v| decode_i64(v));
                base.insert(key.clone(), cur.wrapping_add(*delta).to_le_bytes().to_vec());
            }
            _ => {}
        }
    }
}

fn range_of(
    m: &Plain,
    r: &KeyRange,
    limit: Option<usize>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let it = m.iter().filter(|(k, _)| r.contains(k)).map(|(k, v)| (k.clone(), v.clone()));
    let all: Vec<_> = if reverse { it.rev().collect() } else { it.collect() };
    all.into_iter().take(limit.unwrap_or(usize::MAX)).collect()
}

proptest! {
    #[test]
    fn committed_transactions_are_serializable(ops in prop::collection::vec(op(), 1..60)) {
        let mut st = Store::default();
        // Snapshots of the reference state by version, to check snapshot reads.
        let mut states: BTreeMap<Version, Plain> = BTreeMap::new();
        states.insert(0, Plain::new());
        let mut open: Vec<Option<(Txn, Vec<Step>)>> = (0..SLOTS).map(|_| None).collect();
        // Committed transactions in commit order: (read version, steps).
        let mut committed: Vec<(Version, Vec<Step>)> = Vec::new();
        for op in ops {
            match op {
                Op::Begin(s) => {
                    if let Some((t, _)) = open[s].take() { st.abort(t); }
                    open[s] = Some((st.begin(0), Vec::new()));
                }
                Op::Get(s, key, m) => if let Some((t, steps)) = open[s].as_mut() {
                    let v = st.get(t, &key, m, 0).unwrap();
                    steps.push(Step::Get(key, m, v));
                },
                Op::Range(s, p, limit, rev, m) => if let Some((t, steps)) = open[s].as_mut() {
                    let r = KeyRange::prefix(&p);
                    let v = st.get_range(t, &r, limit, rev, m, 0).unwrap();
                    steps.push(Step::Range(r, limit, rev, m, v));
                },
                Op::Set(s, key, v) => if let Some((t, steps)) = open[s].as_mut() {
                    t.set(key.clone(), vec![v]);
                    steps.push(Step::Write(Mutation::Set { key, value: vec![v] }));
                },
                Op::Clear(s, key) => if let Some((t, steps)) = open[s].as_mut() {
                    t.clear(key.clone());
                    steps.push(Step::Write(Mutation::Clear { key }));
                },
                Op::ClearPrefix(s, p) => if let Some((t, steps)) = open[s].as_mut() {
                    let range = KeyRange::prefix(&p);
                    t.clear_range(range.clone());
                    steps.push(Step::Write(Mutation::ClearRange { range }));
                },
                Op::Add(s, key, d) => if let Some((t, steps)) = open[s].as_mut() {
                    t.atomic_add(key.clone(), d as i64);
                    steps.push(Step::Write(Mutation::AtomicAdd { key, delta: d as i64 }));
                },
                Op::Commit(s, f) => if let Some((t, steps)) = open[s].take() {
                    let rv = t.read_version();
                    let before = st.version();
                    let r = st.commit(t, 0, f);
                    let applied = st.version() > before
                        || (r.is_ok() && steps.iter().all(|s| !matches!(s, Step::Write(_))));
                    if applied {
                        let mut next = states[&before].clone();
                        apply_commit(&mut next, &steps);
                        states.insert(st.version(), next);
                        committed.push((rv, steps));
                    }
                },
            }
        }
        // Replay in commit order on a plain map.
        let mut plain = Plain::new();
        for (rv, steps) in &committed {
            let snapshot = &states[rv];
            for (i, s) in steps.iter().enumerate() {
                let (serial, snap) = (view(&plain, &steps[..i]), view(snapshot, &steps[..i]));
                match s {
                    Step::Get(key, m, got) => {
                        let base = if *m == ReadMode::Serializable { &serial } else { &snap };
                        prop_assert_eq!(got, &base.get(key).cloned(), "get {:?} {:?}", key, m);
                    }
                    Step::Range(r, limit, rev, m, got) => {
                        let base = if *m == ReadMode::Serializable { &serial } else { &snap };
                        prop_assert_eq!(got, &range_of(base, r, *limit, *rev), "range {:?} {:?}", r, m);
                    }
                    Step::Write(_) => {}
                }
            }
            apply_commit(&mut plain, steps);
        }
        let mut r = st.begin(0);
        let final_state = st.get_range(&mut r, &KeyRange::prefix(b""), None, false, ReadMode::Snapshot, 0).unwrap();
        prop_assert_eq!(final_state, plain.into_iter().collect::<Vec<_>>());
    }
}
