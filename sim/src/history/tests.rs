//! Tests of the history: hashing, the ring, trace files and the line format.

use std::path::PathBuf;
use std::sync::Arc;

use pegsim_model::fact::{ConnId, Fact, TxnLabel};
use pegsim_model::keys::RunnerId;
use pegsim_model::protocol::{
    ActorCheckpoint, ActorConfig, Command, CommandStartActor, CommandWrapper, KvMetadata,
    PreloadedKv, PreloadedKvEntry, ToEnvoy,
};
use pegsim_model::store::Mutation;
use proptest::prelude::{any, prop_assert, prop_assert_ne, proptest};

use super::*;
use crate::run::{Decoded, Dir, Entry};

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pegsim-history-{}-{name}", std::process::id()))
}

fn runner() -> RunnerId {
    RunnerId::new("default", "r1")
}

fn bundle(value: Vec<u8>) -> PreloadedKv {
    PreloadedKv {
        entries: vec![PreloadedKvEntry {
            key: vec![1].into(),
            value: value.into(),
            metadata: KvMetadata { version: b"2.3.7".to_vec().into(), update_ts: 5 },
        }],
        requested_get_keys: vec![vec![1].into()],
        requested_prefixes: vec![vec![2].into()],
    }
}

fn start_frame(value: Vec<u8>) -> Entry {
    let cmd = CommandWrapper {
        checkpoint: ActorCheckpoint { actor_id: "a1".into(), generation: 2, index: 0 },
        inner: Command::CommandStartActor(CommandStartActor {
            config: ActorConfig { name: "counter".into(), key: None, create_ts: 1, input: None },
            hibernating_requests: vec![],
            preloaded_kv: Some(bundle(value)),
        }),
    };
    Entry::Frame {
        conn: ConnId(3),
        runner: Some(runner()),
        dir: Dir::ToRunner,
        received: false,
        len: 120,
        bytes_hash: 0xabc,
        decoded: Arc::new(Decoded::ToEnvoy(ToEnvoy::ToEnvoyCommands(vec![cmd]))),
    }
}

fn commit(value: Vec<u8>) -> Entry {
    Entry::Fact(Fact::Commit {
        label: TxnLabel::KvRequest,
        version: 17,
        applied: vec![
            Mutation::Set { key: vec![0x01, 0xff], value },
            Mutation::Clear { key: vec![0x00] },
        ],
    })
}

/// A small mixed history: `(at_ms, node, entry)`.
fn sample() -> Vec<(u64, &'static str, Entry)> {
    vec![
        (0, "sim", Entry::Phase { phase: "fault".into() }),
        (5, "core", commit(vec![7; 3])),
        (9, "edge-0", start_frame(vec![9; 40])),
        (12, "runner-0", Entry::Fact(Fact::Fence { runner: runner() })),
        (12, "sim", Entry::Fault { class: "partition".into(), detail: "runner-0 | edge-*".into() }),
        (30, "driver", Entry::Workload { action: "create a1 counter".into() }),
    ]
}

fn history_of(entries: &[(u64, &'static str, Entry)]) -> History {
    let mut h = History::new(TraceMode::Ring).unwrap();
    for (at, node, e) in entries {
        h.append(*at, *node, e.clone());
    }
    h
}

#[test]
fn equal_entries_give_equal_hashes() {
    let a = history_of(&sample());
    let b = history_of(&sample());
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.len(), 6);
    assert_eq!(a.tail(100), b.tail(100));
}

#[test]
fn any_change_changes_the_hash() {
    let base = history_of(&sample()).hash();
    let mut variants: Vec<Vec<(u64, &'static str, Entry)>> = Vec::new();
    let mut v = sample();
    v[1].0 = 6; // time
    variants.push(v);
    let mut v = sample();
    v[3].1 = "runner-1"; // node
    variants.push(v);
    let mut v = sample();
    v[1].2 = commit(vec![7, 7, 8]); // a short value's byte
    variants.push(v);
    let mut big = vec![9; 40];
    big[39] = 10;
    let mut v = sample();
    v[2].2 = start_frame(big); // one byte of a long bundle value (rendered as len+hash)
    variants.push(v);
    let mut v = sample();
    v.swap(4, 5); // order
    variants.push(v);
    let mut v = sample();
    v.pop(); // one entry fewer
    variants.push(v);
    let mut v = sample();
    if let Entry::Frame { bytes_hash, .. } = &mut v[2].2 {
        *bytes_hash = 0xabd;
    }
    variants.push(v);
    for (i, v) in variants.iter().enumerate() {
        assert_ne!(history_of(v).hash(), base, "variant {i}");
    }
}

#[test]
fn the_ring_is_bounded_and_keeps_the_last_lines() {
    let mut h = History::with_ring(TraceMode::Ring, 10).unwrap();
    for i in 0..100u64 {
        h.append(i, "sim", Entry::Workload { action: format!("step {i}") });
    }
    assert_eq!(h.len(), 100);
    let tail = h.tail(1000);
    assert_eq!(tail.len(), 10);
    assert!(tail[0].ends_with("workload step 90"), "{}", tail[0]);
    assert!(tail[9].ends_with("workload step 99"));
    assert_eq!(h.tail(3).len(), 3);
    assert!(h.lines_around(5, 2, 2).is_empty(), "left the ring");
    let around = h.lines_around(95, 2, 1);
    assert_eq!(around.len(), 4);
    assert!(around[0].ends_with("step 93") && around[3].ends_with("step 96"));
}

#[test]
fn a_capture_keeps_lines_on_both_sides_of_a_position() {
    let mut h = History::with_ring(TraceMode::Ring, 8).unwrap();
    for i in 0..20u64 {
        h.append(i, "sim", Entry::Workload { action: format!("step {i}") });
    }
    h.capture_around(18, 3, 5);
    for i in 20..40u64 {
        h.append(i, "sim", Entry::Workload { action: format!("step {i}") });
    }
    let got: Vec<String> = h.captured();
    let want: Vec<String> = (15..=23).map(|i| format!("step {i}")).collect();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (line, w) in got.iter().zip(&want) {
        assert!(line.ends_with(w.as_str()), "{line} vs {w}");
    }
}

#[test]
fn the_trace_file_has_one_line_per_entry_and_hashes_to_the_trace_hash() {
    let path = temp_path("one-line");
    let mut h = History::new(TraceMode::File(path.clone())).unwrap();
    let mut entries = sample();
    entries.push((
        40,
        "sim",
        Entry::Fault { class: "x".into(), detail: "two\nlines\r\tand\u{7}".into() },
    ));
    for (at, node, e) in &entries {
        h.append(*at, *node, e.clone());
    }
    h.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), entries.len());
    assert!(text.ends_with('\n'));
    assert!(text.contains("two\\nlines\\r\\tand\\u{7}"), "{text}");
    // FNV-1a 64 of the file's bytes, computed here independently of `Fnv64`.
    let mut expect: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        expect ^= u64::from(*b);
        expect = expect.wrapping_mul(0x0000_0100_0000_01b3);
    }
    assert_eq!(h.hash(), expect);
    assert_eq!(trace_file_hash(&path).unwrap(), expect);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn first_difference_names_the_first_differing_line() {
    let (a, b) = (temp_path("diff-a"), temp_path("diff-b"));
    std::fs::write(&a, "x\ny\nz\n").unwrap();
    std::fs::write(&b, "x\ny\nq\n").unwrap();
    assert_eq!(first_difference(&a, &b).unwrap(), Some((3, Some("z".into()), Some("q".into()))));
    std::fs::write(&b, "x\ny\n").unwrap();
    assert_eq!(first_difference(&a, &b).unwrap(), Some((3, Some("z".into()), None)));
    std::fs::write(&b, "x\ny\nz\n").unwrap();
    assert_eq!(first_difference(&a, &b).unwrap(), None);
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    assert!(first_difference(&a, &b).is_err());
}

#[test]
fn a_trace_file_that_cannot_be_created_is_an_error() {
    let path = PathBuf::from("/proc/pegsim-cannot-exist/trace.txt");
    assert!(matches!(History::new(TraceMode::File(path)), Err(HistoryError::Create { .. })));
}

#[test]
fn lines_have_the_documented_layout() {
    let h = history_of(&sample());
    let lines = h.tail(10);
    assert_eq!(lines[0], "        0 sim       phase fault");
    // Keys in hex, short values in hex.
    assert_eq!(
        lines[1],
        "        5 core      commit kv_request v=17 [set 0x01ff=0x070707,clear 0x00]"
    );
    // Frames: kind, checkpoint, bundle as counts and hash; the 40-byte value is not written out.
    assert!(
        lines[2].starts_with(
            "        9 edge-0    frame c3 e>r sent default/r1 120B #0000000000000abc commands n=1 [a1:2:0 start name=counter input=none bundle(e=1 b=41 gk=1 pf=1 #"
        ),
        "{}",
        lines[2]
    );
    assert!(!lines[2].contains("0909090909"), "{}", lines[2]);
    assert_eq!(lines[3], "       12 runner-0  fence runner=default/r1");
}

#[test]
fn long_values_and_keys_are_written_as_length_and_hash() {
    let key: Vec<u8> = (0..100u8).collect();
    let entry = Entry::Fact(Fact::Commit {
        label: TxnLabel::WorkflowStep,
        version: 1,
        applied: vec![Mutation::Set { key, value: vec![0; 5000] }],
    });
    let body = render_body(&entry);
    assert!(body.starts_with("commit workflow_step v=1 [set 0x0001020304050607…100B#"), "{body}");
    assert!(body.contains("=5000B#"), "{body}");
    assert!(body.len() < 120, "{body}");
}

proptest! {
    #[test]
    fn bodies_are_capped_and_distinct_for_distinct_details(
        a in proptest::collection::vec(any::<char>(), 0..2000),
        b in proptest::collection::vec(any::<char>(), 0..2000),
    ) {
        let a: String = a.into_iter().collect();
        let b: String = b.into_iter().collect();
        let ra = render_body(&Entry::Fault { class: "c".into(), detail: a.clone() });
        let rb = render_body(&Entry::Fault { class: "c".into(), detail: b.clone() });
        prop_assert!(ra.chars().count() <= MAX_BODY_CHARS);
        prop_assert!(!ra.contains('\n') && !ra.contains('\r'));
        if a != b {
            prop_assert_ne!(ra, rb);
        }
    }
}
