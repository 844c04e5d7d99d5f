//! The timing envelope of `spec/protocol.md` §6.3, as the history shows it: which injected faults
//! break it, and until when.
//!
//! Owns only the set of envelope-breaking faults in force and the time the envelope is whole
//! again. It reads `Entry::Fault` and `Entry::Node` entries and nothing else.
//!
//! The exact rule:
//! - These faults break the envelope from their entry: classes `one_way_clog`, `swizzle_clog`,
//!   `partition` and `process_pause`; class `link_delay` when its detail names a delay above
//!   `MAX_LINK_DELAY_MS`; and a node entry with event `pause` (same as `process_pause`).
//! - The delay of a `link_delay` detail is the largest number written directly before `ms`
//!   (`delay 1500ms`, `1500 ms`), else the number after the word `delay` (`delay=1500`); a detail
//!   that names no delay is taken as breaking (a missed violation costs less than a false alarm).
//! - A fault entry of the same class whose detail starts with `end` ends the fault: the one whose
//!   detail equals the rest of the end detail (after `end`, spaces and `:`), else the oldest open
//!   one of that class. A node entry `resume` ends the node's `pause`.
//! - The envelope is broken while any such fault is open, and until
//!   `runner_lost_threshold_ms + fence_margin_ms` after the last one ended (the longest a
//!   fence/expiry race can take to play out after the delays stop).

use pegsim_model::constants::MAX_LINK_DELAY_MS;

/// Classes that break the envelope whatever their detail.
const BREAKING_CLASSES: [&str; 4] = ["one_way_clog", "swizzle_clog", "partition", "process_pause"];
const LINK_DELAY: &str = "link_delay";
const NODE_PAUSE: &str = "process_pause";

/// The envelope's state. See the module comment.
#[derive(Clone, Debug, Default)]
pub(super) struct Envelope {
    /// Open breaking faults: (class, detail, start ms).
    open: Vec<(String, String, u64)>,
    /// The envelope is broken before this time even with no open fault.
    broken_until: u64,
    /// `runner_lost_threshold_ms + fence_margin_ms`.
    grace_ms: u64,
}

impl Envelope {
    pub(super) fn new(grace_ms: u64) -> Self {
        Envelope { open: Vec::new(), broken_until: 0, grace_ms }
    }

    /// Whether the envelope is broken at `at_ms`.
    pub(super) fn broken(&self, at_ms: u64) -> bool {
        !self.open.is_empty() || at_ms < self.broken_until
    }

    /// An `Entry::Fault`.
    pub(super) fn on_fault(&mut self, at_ms: u64, class: &str, detail: &str) {
        let is_end = detail.trim_start().starts_with("end");
        if is_end {
            let rest = detail.trim_start().trim_start_matches("end").trim_start_matches([' ', ':']);
            self.end(at_ms, class, rest);
            return;
        }
        let breaking = BREAKING_CLASSES.contains(&class)
            || (class == LINK_DELAY && link_delay_ms(detail).is_none_or(|d| d > MAX_LINK_DELAY_MS));
        if breaking {
            self.open.push((class.to_string(), detail.to_string(), at_ms));
        }
    }

    /// An `Entry::Node` event (`pause` / `resume` count as `process_pause`).
    pub(super) fn on_node(&mut self, at_ms: u64, node: &str, event: &str) {
        match event {
            "pause" => self.open.push((NODE_PAUSE.to_string(), node.to_string(), at_ms)),
            "resume" => self.end(at_ms, NODE_PAUSE, node),
            _ => {}
        }
    }

    fn end(&mut self, at_ms: u64, class: &str, detail: &str) {
        let position = self
            .open
            .iter()
            .position(|(c, d, _)| c == class && d == detail)
            .or_else(|| self.open.iter().position(|(c, _, _)| c == class));
        if let Some(i) = position {
            self.open.remove(i);
            self.broken_until = self.broken_until.max(at_ms.saturating_add(self.grace_ms));
        }
    }
}

/// The delay a `link_delay` detail names, in ms (see the module comment).
pub(super) fn link_delay_ms(detail: &str) -> Option<u64> {
    let bytes = detail.as_bytes();
    let mut best: Option<u64> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let number: Option<u64> = detail[start..i].parse().ok();
            let after = detail[i..].trim_start();
            if after.starts_with("ms") {
                best = best.max(number);
            }
            continue;
        }
        i += 1;
    }
    if best.is_some() {
        return best;
    }
    let after = detail.find("delay").map(|p| &detail[p + "delay".len()..])?;
    let digits: String = after
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}
