//! The fault classes of a scenario (`spec/protocol.md` §9, `spec/preload.md` §9) and their
//! per-seed swarm draw.
//!
//! Owns: [`FaultClass`] (every class, by its scenario name), the `[faults.<class>]` sections
//! ([`FaultsSpec`] and one `…Spec` struct per class) and the per-seed concrete strengths
//! ([`DerivedFaults`], one struct per class, `None` when the class is off for the seed). It does
//! not inject anything: the world reads [`DerivedFaults`] and decides when each fault fires.
//!
//! Every class has `enabled`, the probability that the class is on for a seed (swarm testing;
//! default 0: a scenario opts in), and its strength knobs, each `n` or `[low, high]`:
//! - *rate* knobs (`…_per_min`, faults per simulated minute of the fault phase) and *chance* knobs
//!   (a probability per message, commit or read, in `[0, 1]`) are drawn once per seed, uniformly
//!   in the range;
//! - *count* knobs are drawn once per seed, uniformly in the range;
//! - *spread* knobs (durations and delays, ms) become a per-seed [`Span`] `[low, h]` with `h`
//!   drawn in `[low, high]`; the run draws each event's value in that span.
//!
//! Each knob is drawn from its own stream `scenario.faults.<class>.<knob>` (and the on/off choice
//! from `scenario.faults.<class>.enabled`), so adding a class or a knob never changes another
//! knob's draw for the same seed.

use serde::{Deserialize, Serialize};

use super::range::{Range, Span};
use super::Problem;
use crate::seed::{Draw, SeedStreams};

/// What a knob of a fault class measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobKind {
    /// Faults per simulated minute of the fault phase, drawn once per seed.
    Rate,
    /// A probability per message, commit or read, drawn once per seed.
    Chance,
    /// A number of things, drawn once per seed.
    Count,
    /// A per-event duration or delay in ms; each seed draws the upper end of its span.
    Spread,
}

impl KnobKind {
    /// The kind's name in the documentation.
    pub fn name(self) -> &'static str {
        match self {
            KnobKind::Rate => "rate",
            KnobKind::Chance => "chance",
            KnobKind::Count => "count",
            KnobKind::Spread => "spread",
        }
    }
}

/// One knob of a fault class, for documentation and listings.
#[derive(Clone, Copy, Debug)]
pub struct KnobInfo {
    pub name: &'static str,
    pub kind: KnobKind,
    /// The default range, as written in a scenario file.
    pub default: &'static str,
    pub doc: &'static str,
}

macro_rules! knob_spec_ty {
    (rate) => { Range<f64> };
    (chance) => { Range<f64> };
    (count) => { Range<u64> };
    (spread) => { Range<u64> };
}

macro_rules! knob_drawn_ty {
    (rate) => {
        f64
    };
    (chance) => {
        f64
    };
    (count) => {
        u64
    };
    (spread) => {
        Span
    };
}

macro_rules! knob_kind {
    (rate) => {
        KnobKind::Rate
    };
    (chance) => {
        KnobKind::Chance
    };
    (count) => {
        KnobKind::Count
    };
    (spread) => {
        KnobKind::Spread
    };
}

macro_rules! knob_draw {
    (rate, $r:expr, $rng:expr) => {
        $rng.uniform_f64($r.lo, $r.hi)
    };
    (chance, $r:expr, $rng:expr) => {
        $rng.uniform_f64($r.lo, $r.hi)
    };
    (count, $r:expr, $rng:expr) => {
        $rng.uniform_u64($r.lo, $r.hi)
    };
    (spread, $r:expr, $rng:expr) => {
        Span { lo: $r.lo, hi: $rng.uniform_u64($r.lo, $r.hi) }
    };
}

macro_rules! knob_check {
    (rate, $r:expr, $path:expr, $out:expr) => {
        if $r.lo < 0.0 {
            $out.push(Problem::new($path, format!("a rate must be >= 0, found {}", $r)));
        }
    };
    (chance, $r:expr, $path:expr, $out:expr) => {
        if $r.lo < 0.0 || $r.hi > 1.0 {
            $out.push(Problem::new($path, format!("a chance must lie in [0, 1], found {}", $r)));
        }
    };
    (count, $r:expr, $path:expr, $out:expr) => {};
    (spread, $r:expr, $path:expr, $out:expr) => {};
}

macro_rules! fault_classes {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident / $Variant:ident : $Spec:ident => $Drawn:ident {
            $( $(#[doc = $kdoc:literal])+ $knob:ident : $kind:ident = [$lo:expr, $hi:expr] ),+ $(,)?
        }
    )+) => {
        /// One fault class, by its scenario name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FaultClass { $($Variant),+ }

        impl FaultClass {
            /// Every class, in the order of the scenario format.
            pub const ALL: &'static [FaultClass] = &[$(FaultClass::$Variant),+];

            /// The class's name in scenario files, fault counts and reports.
            pub fn name(self) -> &'static str {
                match self { $(FaultClass::$Variant => stringify!($field)),+ }
            }

            /// What the class injects.
            pub fn doc(self) -> &'static str {
                match self {
                    $(FaultClass::$Variant => {
                        const DOC: &str = concat!($($doc),+).trim_ascii();
                        DOC
                    }),+
                }
            }

            /// The class's strength knobs.
            pub fn knobs(self) -> &'static [KnobInfo] {
                match self {
                    $(FaultClass::$Variant => {
                        const KNOBS: &[KnobInfo] = &[$(KnobInfo {
                            name: stringify!($knob),
                            kind: knob_kind!($kind),
                            default: concat!("[", stringify!($lo), ", ", stringify!($hi), "]"),
                            doc: concat!($($kdoc),+).trim_ascii(),
                        }),+];
                        KNOBS
                    }),+
                }
            }

            /// The class called `name`.
            pub fn from_name(name: &str) -> Option<FaultClass> {
                FaultClass::ALL.iter().copied().find(|c| c.name() == name)
            }
        }

        $(
            $(#[doc = $doc])+
            #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $Spec {
                /// Probability that the class is on for a seed (swarm testing).
                pub enabled: f64,
                $( $(#[doc = $kdoc])+ pub $knob: knob_spec_ty!($kind), )+
            }

            impl Default for $Spec {
                fn default() -> Self {
                    $Spec { enabled: 0.0, $($knob: Range::new($lo, $hi),)+ }
                }
            }

            $(#[doc = $doc])+
            /// Concrete strengths for one seed.
            #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct $Drawn {
                $( $(#[doc = $kdoc])+ pub $knob: knob_drawn_ty!($kind), )+
            }

            impl $Spec {
                fn draw(&self, streams: &SeedStreams) -> Option<$Drawn> {
                    let base = concat!("scenario.faults.", stringify!($field));
                    if !streams.stream(&format!("{base}.enabled")).chance(self.enabled) {
                        return None;
                    }
                    Some($Drawn {
                        $($knob: {
                            let mut rng = streams.stream(&format!("{base}.{}", stringify!($knob)));
                            knob_draw!($kind, self.$knob, rng)
                        },)+
                    })
                }

                fn check(&self, out: &mut Vec<Problem>) {
                    let base = concat!("faults.", stringify!($field));
                    if !(0.0..=1.0).contains(&self.enabled) {
                        out.push(Problem::new(
                            format!("{base}.enabled"),
                            format!("`enabled` is a probability in [0, 1], found {}", self.enabled),
                        ));
                    }
                    $(knob_check!($kind, self.$knob, format!("{base}.{}", stringify!($knob)), out);)+
                }
            }
        )+

        /// The `[faults.<class>]` sections.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct FaultsSpec {
            $( $(#[doc = $doc])+ pub $field: $Spec, )+
        }

        impl FaultsSpec {
            /// The swarm draw: which classes are on for this seed, and how strong each is.
            pub fn draw(&self, streams: &SeedStreams) -> DerivedFaults {
                DerivedFaults { $($field: self.$field.draw(streams),)+ }
            }

            /// The `enabled` probability of `class`.
            pub fn enabled(&self, class: FaultClass) -> f64 {
                match class { $(FaultClass::$Variant => self.$field.enabled),+ }
            }

            /// Set the `enabled` probability of `class`.
            pub fn set_enabled(&mut self, class: FaultClass, p: f64) {
                match class { $(FaultClass::$Variant => self.$field.enabled = p),+ }
            }

            pub(crate) fn check(&self, out: &mut Vec<Problem>) {
                $(self.$field.check(out);)+
            }
        }

        /// The fault classes that are on for one seed, with their concrete strengths.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct DerivedFaults {
            $(
                $(#[doc = $doc])+
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$Drawn>,
            )+
        }

        impl DerivedFaults {
            /// The classes that are on, in the order of [`FaultClass::ALL`].
            pub fn on(&self) -> Vec<FaultClass> {
                let mut on = Vec::new();
                $(if self.$field.is_some() { on.push(FaultClass::$Variant); })+
                on
            }

            /// Whether `class` is on.
            pub fn is_on(&self, class: FaultClass) -> bool {
                match class { $(FaultClass::$Variant => self.$field.is_some()),+ }
            }
        }
    };
}

fault_classes! {
    /// A connection reset: the transport of one runner-edge connection ends, noticed by the
    /// runner, by the edge or by both.
    connection_reset / ConnectionReset : ConnectionResetSpec => ConnectionReset {
        /// Resets per minute.
        rate_per_min: rate = [0.5, 4.0],
        /// Probability that both ends notice the reset at once.
        both_sides: chance = [0.0, 0.5],
        /// Otherwise, probability that the runner is the side that notices (else the edge).
        runner_side: chance = [0.5, 0.5],
    }

    /// A half-open connection: one direction silently drops every frame while the other
    /// still delivers, until a side's ping timeout closes it.
    half_open / HalfOpen : HalfOpenSpec => HalfOpen {
        /// Half-open episodes per minute.
        rate_per_min: rate = [0.2, 2.0],
        /// Probability that the engine-to-runner direction is the one lost (else runner-to-engine).
        to_runner: chance = [0.5, 0.5],
        /// How long the direction stays dead if neither side closes first, ms.
        duration_ms: spread = [5_000, 40_000],
    }

    /// A reconnect storm: one runner's connection is reset many times in a row, so
    /// registrations, replays and evictions of one identity overlap.
    reconnect_storm / ReconnectStorm : ReconnectStormSpec => ReconnectStorm {
        /// Storms per minute.
        rate_per_min: rate = [0.1, 1.0],
        /// Resets per storm.
        resets: count = [3, 12],
        /// Time between two resets of a storm, ms.
        spacing_ms: spread = [0, 2_000],
    }

    /// Extra delay on runner-edge links for a while (inside the timing envelope unless
    /// `delay_ms` goes above `MAX_LINK_DELAY`).
    link_delay / LinkDelay : LinkDelaySpec => LinkDelay {
        /// Delay episodes per minute.
        rate_per_min: rate = [0.5, 3.0],
        /// How long an episode lasts, ms.
        duration_ms: spread = [2_000, 20_000],
        /// Extra delay of each frame during an episode, ms.
        delay_ms: spread = [10, 900],
    }

    /// One direction of a link is clogged (frames are held, then delivered in order when it
    /// unclogs).
    one_way_clog / OneWayClog : OneWayClogSpec => OneWayClog {
        /// Clogs per minute.
        rate_per_min: rate = [0.2, 2.0],
        /// Probability that the engine-to-runner direction is the clogged one.
        to_runner: chance = [0.5, 0.5],
        /// How long a clog lasts, ms.
        duration_ms: spread = [500, 8_000],
    }

    /// A network partition: some runners lose every edge, and some edges lose every runner.
    partition / Partition : PartitionSpec => Partition {
        /// Partitions per minute.
        rate_per_min: rate = [0.1, 1.0],
        /// How long a partition lasts, ms.
        duration_ms: spread = [1_000, 30_000],
        /// Runner processes cut off by one partition.
        runners: count = [1, 2],
        /// Edge nodes cut off by one partition.
        edges: count = [0, 1],
    }

    /// A swizzle clog: clog a set of links one by one, then unclog them in a different order
    /// (FoundationDB's swizzle-clog).
    swizzle_clog / SwizzleClog : SwizzleClogSpec => SwizzleClog {
        /// Swizzles per minute.
        rate_per_min: rate = [0.1, 1.0],
        /// Links in one swizzle.
        links: count = [2, 6],
        /// Time between two clog (or unclog) steps, ms.
        step_ms: spread = [100, 2_000],
        /// Time every link stays clogged after the last clog step, ms.
        hold_ms: spread = [1_000, 10_000],
    }

    /// Reordered delivery of workflow signals (edge to workflow, registry to workflow).
    signal_reorder / SignalReorder : SignalReorderSpec => SignalReorder {
        /// Probability that a signal is held back.
        chance: chance = [0.0, 0.2],
        /// How many later signals may overtake a held-back one.
        window: count = [1, 4],
    }

    /// Duplicate delivery of workflow signals.
    signal_duplicate / SignalDuplicate : SignalDuplicateSpec => SignalDuplicate {
        /// Probability that a signal is delivered twice.
        chance: chance = [0.0, 0.1],
    }

    /// Delayed delivery of workflow signals.
    signal_delay / SignalDelay : SignalDelaySpec => SignalDelay {
        /// Probability that a signal is delayed.
        chance: chance = [0.0, 0.2],
        /// Its delay, ms.
        delay_ms: spread = [10, 2_000],
    }

    /// Loss of a bus message to a live subscriber.
    bus_loss / BusLoss : BusLossSpec => BusLoss {
        /// Probability that a bus message is lost for one subscriber.
        chance: chance = [0.0, 0.05],
    }

    /// Duplicate delivery of a bus message.
    bus_duplicate / BusDuplicate : BusDuplicateSpec => BusDuplicate {
        /// Probability that a bus message is delivered twice.
        chance: chance = [0.0, 0.1],
    }

    /// Delayed delivery of a bus message.
    bus_delay / BusDelay : BusDelaySpec => BusDelay {
        /// Probability that a bus message is delayed.
        chance: chance = [0.0, 0.2],
        /// Its delay, ms.
        delay_ms: spread = [10, 2_000],
    }

    /// An edge node crashes (its connections end without teardown) and restarts.
    edge_crash / EdgeCrash : EdgeCrashSpec => EdgeCrash {
        /// Crashes per minute (over all edge nodes).
        rate_per_min: rate = [0.05, 0.5],
        /// Time until the node is back, ms.
        down_ms: spread = [500, 10_000],
    }

    /// The core node (workflows and registry) crashes and restarts from the store.
    core_crash / CoreCrash : CoreCrashSpec => CoreCrash {
        /// Crashes per minute.
        rate_per_min: rate = [0.05, 0.5],
        /// Time until the node is back, ms.
        down_ms: spread = [500, 10_000],
    }

    /// A runner process crashes: all its instances end at once.
    runner_crash / RunnerCrash : RunnerCrashSpec => RunnerCrash {
        /// Crashes per minute (over all runner processes).
        rate_per_min: rate = [0.1, 1.0],
        /// Time until a fresh process (new `envoy_key`) replaces it, when
        /// `topology.restart_crashed_runners` is on, ms.
        restart_after_ms: spread = [0, 5_000],
    }

    /// A store commit fails with a conflict.
    store_conflict / StoreConflict : StoreConflictSpec => StoreConflict {
        /// Probability that a commit attempt conflicts.
        chance: chance = [0.0, 0.1],
    }

    /// A store commit ends with an unknown result (it may or may not have applied).
    store_unknown / StoreUnknown : StoreUnknownSpec => StoreUnknown {
        /// Probability that a commit attempt ends unknown.
        chance: chance = [0.0, 0.05],
        /// Probability that an unknown commit did apply.
        applied: chance = [0.5, 0.5],
    }

    /// A retryable read failure during a preload fetch.
    preload_read_failure / PreloadReadFailure : PreloadReadFailureSpec => PreloadReadFailure {
        /// Probability that one preload read fails.
        chance: chance = [0.0, 0.3],
    }

    /// Wall-clock skew between nodes (monotonic clocks keep equal rates, `spec/protocol.md` §0).
    clock_skew / ClockSkew : ClockSkewSpec => ClockSkew {
        /// Each node's wall-clock offset is drawn in `[-h, +h]` for the seed's span `[low, h]`, ms.
        offset_ms: spread = [0, 60_000],
        /// Wall-clock steps per minute (a node's offset is redrawn).
        jumps_per_min: rate = [0.0, 0.5],
    }

    /// A process pause (edge, core or runner): the node runs nothing for a while.
    process_pause / ProcessPause : ProcessPauseSpec => ProcessPause {
        /// Pauses per minute (over all nodes).
        rate_per_min: rate = [0.1, 1.0],
        /// Length of a pause, ms (above `MAX_STEP_DELAY` it may leave the timing envelope).
        pause_ms: spread = [100, 5_000],
    }
}

impl std::fmt::Display for FaultClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
