//! P2 (through the oracle's bundle checks), P12–P16, K6 and the data-loss oracle.

use pegsim_model::fact::{ConnId, CrashPolicy, Fact, TxnLabel};
use pegsim_model::keys;
use pegsim_model::preload::Snapshot;
use pegsim_model::protocol as p;
use pegsim_model::wire::encode_stored_command;

use super::support::*;
use crate::check::{CheckConfig, StartupOracle};

fn bytes(b: &[u8]) -> pegsim_model::protocol::KvKey {
    b.to_vec().into()
}

/// The correct bundle of the reference manifest over a keyspace holding only `[1] := value`,
/// written out by hand from `spec/preload.md` §4.2: `[1]` fits and is placed, `[3]`, `[5,1,1]` and
/// `[6]` are recorded absent, and every prefix is recorded with no entries.
fn bundle_with_state(value: &[u8], ts: i64) -> p::PreloadedKv {
    p::PreloadedKv {
        entries: vec![p::PreloadedKvEntry {
            key: bytes(&[1]),
            value: value.to_vec().into(),
            metadata: p::KvMetadata { version: b"2.3.7".to_vec().into(), update_ts: ts },
        }],
        requested_get_keys: vec![bytes(&[1]), bytes(&[3]), bytes(&[5, 1, 1]), bytes(&[6])],
        requested_prefixes: vec![bytes(&[6, 1]), bytes(&[2]), bytes(&[5, 1, 2]), bytes(&[8, 1])],
    }
}

/// Generation 0 writes the state `[1]` (counter 1) and sleeps. Returns the world, the state
/// value and its timestamp.
fn slept_with_state() -> (World, Vec<u8>, i64) {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    let value = state_value(1);
    let written = value.clone();
    let mut ts = 0;
    w.sleep_cycle_with("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()), |w| {
        ts = w.now as i64;
        w.kv_put("a1", &r1, ConnId(1), 0, 1, &[1], &written);
    });
    (w, value, ts)
}

#[test]
fn a_correct_bundle_over_saved_state_passes() {
    let (mut w, value, ts) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    w.deliver_start("a1", &r1, ConnId(1), 1, Some(bundle_with_state(&value, ts)));
    w.kv_put("a1", &r1, ConnId(1), 1, 2, &[1], &state_value(2));
    assert_only(&w.check(), &[]);
}

/// The canary `preload-getkey-before-budget`: `[1]` recorded as requested with no entry, and the
/// actor re-initialises over its saved state.
#[test]
fn p2_an_absent_claim_for_a_present_key_and_the_data_loss_it_causes() {
    let (mut w, _, _) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    let lying = p::PreloadedKv {
        entries: vec![],
        requested_get_keys: vec![bytes(&[1]), bytes(&[3]), bytes(&[5, 1, 1]), bytes(&[6])],
        requested_prefixes: vec![bytes(&[6, 1]), bytes(&[2]), bytes(&[5, 1, 2]), bytes(&[8, 1])],
    };
    w.deliver_start("a1", &r1, ConnId(1), 1, Some(lying));
    w.kv_put("a1", &r1, ConnId(1), 1, 2, &[1], &state_value(1));
    let checker = w.check();
    assert_only(&checker, &["P2", "DATA-LOSS"]);
    assert_eq!(checker.violations()[0].invariant, "P2 get-key soundness");
    assert_eq!(checker.violations()[1].invariant, "DATA-LOSS counter");
}

#[test]
fn data_loss_a_counter_that_goes_down() {
    let (mut w, _, _) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    w.deliver_start("a1", &r1, ConnId(1), 1, None);
    w.kv_put("a1", &r1, ConnId(1), 1, 2, &[1], &state_value(5));
    w.kv_put("a1", &r1, ConnId(1), 1, 3, &[1], &state_value(4));
    let checker = w.check();
    // `None` is not the reference bundle (P0); the counter decrease is the data loss.
    assert_only(&checker, &["P0", "DATA-LOSS"]);
}

#[test]
fn data_loss_resets_when_the_state_is_deleted() {
    let (mut w, value, ts) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    w.deliver_start("a1", &r1, ConnId(1), 1, Some(bundle_with_state(&value, ts)));
    w.kv_put("a1", &r1, ConnId(1), 1, 2, &[1], &state_value(2));
    w.fact(
        &node_of(&r1),
        Fact::KvRequestSent {
            runner: r1.clone(),
            conn: ConnId(1),
            actor: "a1".into(),
            generation: 1,
            request_id: 3,
            kind: "drop".into(),
        },
    );
    w.commit(
        EDGE,
        TxnLabel::KvRequest,
        vec![pegsim_model::store::Mutation::ClearRange {
            range: pegsim_model::store::KeyRange::prefix(&keys::actor_kv_prefix("a1")),
        }],
    );
    w.kv_put("a1", &r1, ConnId(1), 1, 4, &[1], &state_value(1));
    assert_only(&w.check(), &[]);
}

#[test]
fn p15_a_stored_start_carries_a_bundle() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    let mut stored = start_content(None);
    if let p::ActorCommandKeyData::CommandStartActor(s) = &mut stored {
        s.preloaded_kv = Some(p::preloaded_kv::empty_keyspace());
    }
    // A second actor persisted by the canary `preload-bundle-persisted`.
    w.create_actor("a2", CrashPolicy::Restart);
    w.info(&r1).used_slots += 1;
    let info = w.put_info(&r1);
    w.step(
        "a2",
        vec![
            set(
                keys::actor_placement("a2"),
                pegsim_model::records::encode(&pegsim_model::records::Placement {
                    runner: r1.clone(),
                    generation: 0,
                }),
            ),
            set(keys::runner_alloc(&r1, "a2"), pegsim_model::records::encode(&0u32)),
            info,
            set(keys::runner_cmd(&r1, "a2", 0, 0), encode_stored_command(&stored)),
        ],
    );
    w.status("a2", pegsim_model::fact::ActorStatus::Starting);
    assert_only(&w.check(), &["P15"]);
}

#[test]
fn p16_a_bundle_read_before_a_committed_write() {
    let (mut w, _, _) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    let before = w.version;
    // A write committed after the read version (by a stale writer the fence let through? no:
    // by the previous instance's late put) makes the bundle stale.
    w.commit(
        EDGE,
        TxnLabel::KvRequest,
        vec![set(keys::actor_kv_key("a1", &[4]), kv_record(b"late", 9))],
    );
    w.deliver_start_at("a1", &r1, ConnId(1), 1, Some(p::preloaded_kv::empty_keyspace()), before);
    let found = ids(w.check().violations());
    assert!(found.contains(&"P16".to_string()), "{found:?}");
}

#[test]
fn p16_a_bundle_delivered_without_a_fetch() {
    let (mut w, value, ts) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    let mut start = start_content(None);
    if let p::ActorCommandKeyData::CommandStartActor(s) = &mut start {
        s.preloaded_kv = Some(bundle_with_state(&value, ts));
    }
    w.send_to_runner(ConnId(1), &r1, p::ToEnvoy::ToEnvoyCommands(vec![wrapper("a1", 1, 0, start)]));
    assert_only(&w.check(), &["P16"]);
}

/// A small oracle run written for the tests: new iff `[1]` is absent, the counter one above the
/// stored one. It stands in for the real startup program.
fn fake_oracle() -> StartupOracle {
    Box::new(|snapshot: &Snapshot, _actor: &str, _generation: u32, _input: Option<&[u8]>| {
        let stored = snapshot.get(&[1]).and_then(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.value).ok()?.get("counter")?.as_u64()
        });
        record(stored.map_or(1, |c| c + 1), stored.is_none())
    })
}

fn startup_observed(
    w: &mut World,
    generation: u32,
    had_bundle: bool,
    live_reads: u32,
    rec: pegsim_model::fact::StartupRecord,
) {
    let r1 = rid("r1");
    w.fact(
        &node_of(&r1),
        Fact::StartupObserved {
            runner: r1.clone(),
            actor: "a1".into(),
            generation,
            had_bundle,
            live_reads,
            record: rec,
        },
    );
}

#[test]
fn p12_the_startup_record_is_compared_with_the_oracle_run() {
    let (mut w, value, ts) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    w.deliver_start("a1", &r1, ConnId(1), 1, Some(bundle_with_state(&value, ts)));
    let mut good = World {
        entries: w.entries.clone(),
        now: w.now,
        version: w.version,
        infos: w.infos.clone(),
        statuses: w.statuses.clone(),
    };
    startup_observed(&mut good, 1, true, 0, record(2, false));
    let config = || CheckConfig::default().with_startup_oracle(fake_oracle());
    assert_only(&good.check_with(config()), &[]);
    startup_observed(&mut w, 1, true, 0, record(1, false));
    let checker = w.check_with(config());
    assert_only(&checker, &["P12"]);
    assert!(
        checker.violations()[0].detail.contains("counter"),
        "{}",
        checker.violations()[0].detail
    );
}

#[test]
fn p14_the_new_actor_path_over_an_existing_state() {
    let (mut w, value, ts) = slept_with_state();
    let r1 = rid("r1");
    w.allocate("a1", &r1, 1);
    w.deliver_start("a1", &r1, ConnId(1), 1, Some(bundle_with_state(&value, ts)));
    startup_observed(&mut w, 1, true, 1, record(1, true));
    assert_only(&w.check(), &["P14"]);
}

#[test]
fn p13_live_reads_despite_an_empty_keyspace_bundle() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    let mut good = World {
        entries: w.entries.clone(),
        now: w.now,
        version: w.version,
        infos: w.infos.clone(),
        statuses: w.statuses.clone(),
    };
    startup_observed(&mut good, 0, true, 0, record(1, true));
    assert_only(&good.check(), &[]);
    startup_observed(&mut w, 0, true, 2, record(1, true));
    assert_only(&w.check(), &["P13"]);
}

#[test]
fn k6_a_keyspace_over_its_quota() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.allocate("a1", &r1, 0);
    w.deliver_start("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()));
    w.kv_put("a1", &r1, ConnId(1), 0, 1, &[4, 1], &[7; 40]);
    let mut config = CheckConfig::default();
    config.kv.max_storage_size = 44;
    assert_only(&w.check_with(config), &[]);
    let mut config = CheckConfig::default();
    config.kv.max_storage_size = 43;
    assert_only(&w.check_with(config), &["K6"]);
}

#[test]
fn a_commit_missing_from_the_history_is_reported_once_and_suspends_keyspace_checks() {
    let mut w = World::new();
    let r1 = rid("r1");
    w.connect(&r1, ConnId(1));
    w.create_actor("a1", CrashPolicy::Restart);
    w.sleep_cycle_with("a1", &r1, ConnId(1), 0, Some(p::preloaded_kv::empty_keyspace()), |w| {
        // A KV put commits in the store but its Fact::Commit is not recorded: only the answer is.
        w.fact(
            &node_of(&r1),
            Fact::KvRequestSent {
                runner: r1.clone(),
                conn: ConnId(1),
                actor: "a1".into(),
                generation: 0,
                request_id: 5,
                kind: "put".into(),
            },
        );
        w.version += 1;
        let (missing, epoch) = (w.version, w.info(&r1).epoch);
        w.fact(
            EDGE,
            Fact::KvAnswered {
                runner: r1.clone(),
                conn: ConnId(1),
                epoch,
                actor: "a1".into(),
                request_id: 5,
                placement_generation: Some(0),
                mutation_version: Some(missing),
                error: None,
            },
        );
    });
    w.allocate("a1", &r1, 1);
    // The next delivery's bundle (unknowable from the history) is not judged.
    w.deliver_start("a1", &r1, ConnId(1), 1, Some(p::preloaded_kv::empty_keyspace()));
    assert_only(&w.check(), &["HISTORY"]);
}
