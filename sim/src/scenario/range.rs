//! Value ranges of the scenario format: `n` (exactly `n`) or `[low, high]` (inclusive), and the
//! runner-version set, which may also be a list (`{ one_of = [1, 4, 9] }`).
//!
//! Owns: [`Range`], [`RangeValue`], [`Span`], [`Versions`]. A range whose low end is above its high
//! end is rejected while parsing, so the error carries the value's position.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, Serializer};

/// A number that can be a range bound in a scenario file.
pub trait RangeValue: Copy + PartialOrd + fmt::Display + Serialize {
    /// The bound written as this TOML value, or why it cannot be one.
    fn from_toml(value: &toml::Value) -> Result<Self, String>;
}

impl RangeValue for u64 {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(i) => {
                u64::try_from(*i).map_err(|_| format!("{i} is negative; expected a count >= 0"))
            }
            other => Err(format!("expected an integer, found {}", other.type_str())),
        }
    }
}

impl RangeValue for u32 {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(i) => {
                u32::try_from(*i).map_err(|_| format!("{i} is not in 0..={}", u32::MAX))
            }
            other => Err(format!("expected an integer, found {}", other.type_str())),
        }
    }
}

impl RangeValue for f64 {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(i) => Ok(*i as f64),
            toml::Value::Float(f) if f.is_finite() => Ok(*f),
            toml::Value::Float(f) => Err(format!("{f} is not a finite number")),
            other => Err(format!("expected a number, found {}", other.type_str())),
        }
    }
}

/// An inclusive range, written `n` or `[low, high]` with `low <= high`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range<T> {
    pub lo: T,
    pub hi: T,
}

impl<T: RangeValue> Range<T> {
    /// `[lo, hi]`.
    pub const fn new(lo: T, hi: T) -> Self {
        Range { lo, hi }
    }

    /// Exactly `v`.
    pub const fn one(v: T) -> Self {
        Range { lo: v, hi: v }
    }

    /// Whether `v` lies in the range.
    pub fn contains(&self, v: T) -> bool {
        self.lo <= v && v <= self.hi
    }
}

impl<T: RangeValue> fmt::Display for Range<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "[{}, {}]", self.lo, self.hi)
        }
    }
}

fn range_from_toml<T: RangeValue>(value: &toml::Value) -> Result<Range<T>, String> {
    match value {
        toml::Value::Array(items) => {
            let [lo, hi] = items.as_slice() else {
                return Err(format!(
                    "a range is `n` or `[low, high]`; found an array of {} values",
                    items.len()
                ));
            };
            let (lo, hi) = (T::from_toml(lo)?, T::from_toml(hi)?);
            if lo > hi {
                return Err(format!("bad range [{lo}, {hi}]: the low end is above the high end"));
            }
            Ok(Range { lo, hi })
        }
        single => T::from_toml(single)
            .map(Range::one)
            .map_err(|e| format!("{e} (a range is `n` or `[low, high]`)")),
    }
}

impl<'de, T: RangeValue> Deserialize<'de> for Range<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        range_from_toml(&value).map_err(D::Error::custom)
    }
}

impl<T: RangeValue> Serialize for Range<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            self.lo.serialize(serializer)
        } else {
            [self.lo, self.hi].serialize(serializer)
        }
    }
}

/// A per-seed interval of a quantity that varies per event (a delay, a duration): the run draws
/// each event's value uniformly in `[lo, hi]`. The scenario gives `[low, high]`; each seed keeps
/// `lo = low` and draws `hi` in `[low, high]`, so some seeds see only short values and others the
/// whole spread. Written `[lo, hi]` in derived configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub lo: u64,
    pub hi: u64,
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        [self.lo, self.hi].serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [lo, hi] = <[u64; 2]>::deserialize(deserializer)?;
        if lo > hi {
            return Err(D::Error::custom(format!(
                "bad span [{lo}, {hi}]: the low end is above the high end"
            )));
        }
        Ok(Span { lo, hi })
    }
}

/// Which runner versions a seed may use: a range (`n` or `[low, high]`) or a list
/// (`{ one_of = [1, 4, 9] }`).
#[derive(Clone, Debug, PartialEq)]
pub enum Versions {
    Range(Range<u32>),
    OneOf(Vec<u32>),
}

impl Versions {
    /// Every version the set allows, increasing, without repeats.
    pub fn all(&self) -> Vec<u32> {
        match self {
            Versions::Range(r) => (r.lo..=r.hi).collect(),
            Versions::OneOf(list) => {
                let mut v = list.clone();
                v.sort_unstable();
                v.dedup();
                v
            }
        }
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct OneOf {
    one_of: Vec<u32>,
}

impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        if let toml::Value::Table(_) = value {
            let list: OneOf = value.try_into().map_err(|e: toml::de::Error| {
                D::Error::custom(format!(
                    "{} (a version list is written `{{ one_of = [1, 4, 9] }}`)",
                    e.message().trim()
                ))
            })?;
            if list.one_of.is_empty() {
                return Err(D::Error::custom("`one_of` must list at least one version"));
            }
            return Ok(Versions::OneOf(list.one_of));
        }
        range_from_toml(&value).map(Versions::Range).map_err(|e| {
            D::Error::custom(format!(
                "{e}; a list of versions is written `{{ one_of = [1, 4, 9] }}`"
            ))
        })
    }
}

impl Serialize for Versions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Versions::Range(r) => r.serialize(serializer),
            Versions::OneOf(list) => OneOf { one_of: list.clone() }.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Holder {
        r: Range<u64>,
        f: Range<f64>,
        v: Versions,
    }

    #[test]
    fn ranges_parse_from_one_value_or_two() {
        let h: Holder = toml::from_str("r = 5\nf = [0.5, 2]\nv = { one_of = [3, 1, 3] }").unwrap();
        assert_eq!(h.r, Range::one(5));
        assert_eq!(h.f, Range::new(0.5, 2.0));
        assert_eq!(h.v.all(), vec![1, 3]);
        let back: Holder = toml::from_str(&toml::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn bad_ranges_are_rejected_with_their_position() {
        let text = "r = [5, 1]\nf = 1\nv = 1";
        let err = toml::from_str::<Holder>(text).unwrap_err();
        assert!(err.message().contains("bad range [5, 1]"), "{err}");
        assert_eq!(err.span().map(|s| s.start), Some(4));
        for (text, needle) in [
            ("r = [1, 2, 3]\nf = 1\nv = 1", "array of 3"),
            ("r = -1\nf = 1\nv = 1", "negative"),
            ("r = \"x\"\nf = 1\nv = 1", "found string"),
            ("r = 1\nf = 1\nv = { list = [1] }", "one_of"),
            ("r = 1\nf = 1\nv = [1, 2, 3]", "one_of"),
        ] {
            let err = toml::from_str::<Holder>(text).unwrap_err();
            assert!(err.message().contains(needle), "{text}: {err}");
        }
    }
}
