//! Latency distributions of a sweep: `hdrhistogram` histograms (3 significant digits) kept in a
//! mergeable form (the recorded value buckets and their counts), and their percentiles.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits the histograms keep.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// One metric's latency distribution in ms: `bucket value -> count`, as `hdrhistogram` records
/// it. Mergeable by adding counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyHistogram {
    /// Bucket value (ms, the lowest value equivalent to the samples in it) -> samples.
    pub buckets: BTreeMap<u64, u64>,
}

/// Percentiles of one metric, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::<u64>::new(SIGNIFICANT_DIGITS).ok()
}

impl LatencyHistogram {
    /// The distribution of `samples`.
    pub fn from_samples(samples: &[u64]) -> Self {
        let mut h = LatencyHistogram::default();
        h.add_samples(samples);
        h
    }

    /// Record more samples.
    pub fn add_samples(&mut self, samples: &[u64]) {
        let Some(mut hist) = self.histogram() else { return };
        for s in samples {
            hist.saturating_record(*s);
        }
        self.buckets = buckets_of(&hist);
    }

    /// Add another distribution's counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (value, count) in &other.buckets {
            *self.buckets.entry(*value).or_insert(0) += count;
        }
        // Re-bucket so equivalent values share one bucket.
        if let Some(hist) = self.histogram() {
            self.buckets = buckets_of(&hist);
        }
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// p50, p90, p99 and max.
    pub fn summary(&self) -> LatencySummary {
        match self.histogram() {
            Some(h) if !h.is_empty() => LatencySummary {
                count: h.len(),
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            },
            _ => LatencySummary::default(),
        }
    }

    fn histogram(&self) -> Option<Histogram<u64>> {
        let mut h = new_histogram()?;
        for (value, count) in &self.buckets {
            h.saturating_record_n(*value, *count);
        }
        Some(h)
    }
}

fn buckets_of(h: &Histogram<u64>) -> BTreeMap<u64, u64> {
    h.iter_recorded()
        .map(|v| (h.lowest_equivalent(v.value_iterated_to()), v.count_at_value()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_samples() {
        let samples: Vec<u64> = (1..=1000).collect();
        let s = LatencyHistogram::from_samples(&samples).summary();
        assert_eq!(s.count, 1000);
        // Exact ranks are 500, 900, 990, 1000; three significant digits allow 0.1 %.
        for (got, want) in [(s.p50, 500), (s.p90, 900), (s.p99, 990), (s.max, 1000)] {
            assert!(got.abs_diff(want) <= want / 1000 + 1, "{got} vs {want}");
        }
        assert_eq!(LatencyHistogram::default().summary(), LatencySummary::default());
    }

    #[test]
    fn merging_equals_recording_everything_at_once() {
        let a: Vec<u64> = (0..500).map(|i| i * 7 % 3001).collect();
        let b: Vec<u64> = (0..700).map(|i| i * 13 % 90_001).collect();
        let mut merged = LatencyHistogram::from_samples(&a);
        merged.merge(&LatencyHistogram::from_samples(&b));
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let direct = LatencyHistogram::from_samples(&all);
        assert_eq!(merged, direct);
        assert_eq!(merged.count(), 1200);
    }
}
