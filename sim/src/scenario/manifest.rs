//! Preload manifests as a scenario declares them (`spec/preload.md` §3.1–§3.3, §3.6):
//! `"reference"` (the reference manifest of §3.6), `"absent"` (metadata without a `preload`
//! field), `"invalid"` (a malformed `preload` field, treated like an absent one, §3.2) or an
//! inline table `{ keys = [[1], [3]], prefixes = [{ prefix = [6, 1], max_bytes = 131072,
//! partial = false }] }` (`max_bytes` is the JSON `maxBytes`).
//!
//! Owns: [`ManifestSpec`] and its rendering as the `ActorName.metadata` JSON a runner declares.
//! It does not parse or normalize manifests (that is `pegsim_model::preload::manifest`).

use pegsim_model::preload::manifest::{reference_manifest, Manifest, PrefixItem};
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

/// The metadata a runner declares for an `"invalid"` manifest: a byte out of range (§3.2).
pub const INVALID_MANIFEST_METADATA: &str = r#"{"preload":{"keys":[[256]]}}"#;

/// How one actor name's preload manifest is declared by a runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestSpec {
    /// The reference manifest of `spec/preload.md` §3.6.
    Reference,
    /// Metadata without a `preload` field.
    Absent,
    /// A malformed `preload` field (every start of the name goes without a bundle when the
    /// keyspace is not empty).
    Invalid,
    /// This manifest, as declared (not normalized: duplicates are kept, normalization is the
    /// model's job).
    Custom(Manifest),
}

impl ManifestSpec {
    /// The `ActorName.metadata` JSON text a runner declares for this manifest.
    pub fn metadata_json(&self) -> String {
        match self {
            ManifestSpec::Reference => reference_manifest().to_metadata_json(),
            ManifestSpec::Absent => "{}".to_string(),
            ManifestSpec::Invalid => INVALID_MANIFEST_METADATA.to_string(),
            ManifestSpec::Custom(m) => m.to_metadata_json(),
        }
    }

    /// The manifest the runner itself uses (`None` for an absent or invalid one).
    pub fn manifest(&self) -> Option<Manifest> {
        match self {
            ManifestSpec::Reference => Some(reference_manifest()),
            ManifestSpec::Absent | ManifestSpec::Invalid => None,
            ManifestSpec::Custom(m) => Some(m.clone()),
        }
    }

    /// The prefixes the manifest declares, with their `partial` flag, in declared order.
    pub fn prefix_flags(&self) -> Vec<(Vec<u8>, bool)> {
        self.manifest()
            .map(|m| m.prefixes.iter().map(|p| (p.prefix.clone(), p.partial)).collect())
            .unwrap_or_default()
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct PrefixTable {
    prefix: Vec<u8>,
    max_bytes: u64,
    #[serde(default)]
    partial: bool,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ManifestTable {
    #[serde(default)]
    keys: Vec<Vec<u8>>,
    #[serde(default)]
    prefixes: Vec<PrefixTable>,
}

struct SpecVisitor;

impl<'de> serde::de::Visitor<'de> for SpecVisitor {
    type Value = ManifestSpec;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "\"reference\", \"absent\", \"invalid\" or a table { keys = [...], prefixes = [...] }",
        )
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ManifestSpec, E> {
        match v {
            "reference" => Ok(ManifestSpec::Reference),
            "absent" => Ok(ManifestSpec::Absent),
            "invalid" => Ok(ManifestSpec::Invalid),
            other => Err(E::custom(format!(
                "unknown manifest `{other}`; expected \"reference\", \"absent\", \"invalid\" or a \
                 table {{ keys = [...], prefixes = [...] }}"
            ))),
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ManifestSpec, A::Error> {
        let table = ManifestTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(ManifestSpec::Custom(Manifest {
            keys: table.keys,
            prefixes: table
                .prefixes
                .into_iter()
                .map(|p| PrefixItem {
                    prefix: p.prefix,
                    max_bytes: p.max_bytes,
                    partial: p.partial,
                })
                .collect(),
        }))
    }
}

impl<'de> Deserialize<'de> for ManifestSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SpecVisitor)
    }
}

impl Serialize for ManifestSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ManifestSpec::Reference => serializer.serialize_str("reference"),
            ManifestSpec::Absent => serializer.serialize_str("absent"),
            ManifestSpec::Invalid => serializer.serialize_str("invalid"),
            ManifestSpec::Custom(m) => ManifestTable {
                keys: m.keys.clone(),
                prefixes: m
                    .prefixes
                    .iter()
                    .map(|p| PrefixTable {
                        prefix: p.prefix.clone(),
                        max_bytes: p.max_bytes,
                        partial: p.partial,
                    })
                    .collect(),
            }
            .serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pegsim_model::preload::manifest::parse_manifest;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Holder {
        m: ManifestSpec,
    }

    #[test]
    fn every_form_parses_and_renders_metadata_the_model_reads_back() {
        let h: Holder = toml::from_str(
            "m = { keys = [[1], [0, 255]], prefixes = [{ prefix = [2], max_bytes = 7, partial = true }] }",
        )
        .unwrap();
        let expected = Manifest {
            keys: vec![vec![1], vec![0, 255]],
            prefixes: vec![PrefixItem::new([2], 7, true)],
        };
        assert_eq!(h.m, ManifestSpec::Custom(expected.clone()));
        assert_eq!(parse_manifest(&h.m.metadata_json()), Ok(Some(expected)));
        let back: Holder = toml::from_str(&toml::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);

        let r: Holder = toml::from_str("m = \"reference\"").unwrap();
        assert_eq!(parse_manifest(&r.m.metadata_json()), Ok(Some(reference_manifest())));
        let a: Holder = toml::from_str("m = \"absent\"").unwrap();
        assert_eq!(parse_manifest(&a.m.metadata_json()), Ok(None));
        let i: Holder = toml::from_str("m = \"invalid\"").unwrap();
        assert!(parse_manifest(&i.m.metadata_json()).is_err());
        assert_eq!(i.m.manifest(), None);
    }

    #[test]
    fn malformed_manifests_are_rejected() {
        for (text, needle) in [
            ("m = \"refrence\"", "unknown manifest `refrence`"),
            ("m = { keys = [[256]] }", "256"),
            ("m = { prefixes = [{ prefix = [1] }] }", "max_bytes"),
            ("m = { prefixes = [{ prefix = [1], max_bytes = 1, maxBytes = 2 }] }", "maxBytes"),
            ("m = 3", "reference"),
        ] {
            let err = toml::from_str::<Holder>(text).unwrap_err();
            assert!(err.message().contains(needle), "{text}: {err}");
        }
    }
}
