//! The preload manifest (`spec/preload.md` §3.1–§3.3, §3.6): its JSON form inside
//! `ActorName.metadata`, strict parsing, normalization, and the reference manifest.
//!
//! Owns: [`Manifest`], [`PrefixItem`], [`ManifestError`], [`parse_manifest`],
//! [`reference_manifest`]. It does not read the store and knows nothing about budgets or bundles.
//!
//! Parsing choices where the spec is silent (written down here, as the common brief asks):
//! - The metadata text must be a JSON object; anything else (not JSON, an array, a string) is an
//!   invalid manifest, since a `preload` field cannot be found in it.
//! - `"preload": null` is a wrong type, hence invalid (not "absent"). Both lead to the same
//!   outcome (no bundle), so the distinction only shows in the error.
//! - Numbers must be JSON integer literals: `1.0`, `1e3` or an integer beyond `u64` are
//!   "fractional" in the spec's sense and make the manifest invalid.
//! - `keys: null`, `prefixes: null` or `partial: null` are wrong types (invalid); only a missing
//!   field takes the default.
//! - A JSON object with a duplicated field name keeps the last value (serde_json's behaviour).

use serde_json::{Map, Value};

/// One prefix item of a manifest: scan the keys starting with `prefix`, charging at most
/// `max_bytes`; `partial` says whether a truncated scan may be recorded (as a cache).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrefixItem {
    /// The byte prefix (true byte-prefix selection; may be empty).
    pub prefix: Vec<u8>,
    /// `maxBytes`: this prefix's own budget; `0` skips the prefix.
    pub max_bytes: u64,
    /// Whether a scan that does not fit may be recorded truncated (a cache, §4.5).
    pub partial: bool,
}

impl PrefixItem {
    /// A prefix item.
    pub fn new(prefix: impl Into<Vec<u8>>, max_bytes: u64, partial: bool) -> Self {
        PrefixItem { prefix: prefix.into(), max_bytes, partial }
    }
}

/// The `preload` field of an actor name's metadata: get-keys in manifest order, prefixes in
/// priority order (first = highest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Manifest {
    /// Get-keys, read one by one in this order.
    pub keys: Vec<Vec<u8>>,
    /// Prefix items, in priority order.
    pub prefixes: Vec<PrefixItem>,
}

/// Why a manifest is invalid (§3.2). Callers treat every invalid manifest like an absent one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The stored metadata bytes are not UTF-8.
    #[error("invalid manifest: actor name metadata is not UTF-8")]
    NotUtf8,
    /// The metadata text is not JSON.
    #[error("invalid manifest: actor name metadata is not JSON: {0}")]
    NotJson(String),
    /// The metadata JSON is not an object, so it has no `preload` field.
    #[error("invalid manifest: actor name metadata is not a JSON object")]
    MetadataNotObject,
    /// A value has the wrong JSON type (`path` names it, e.g. `preload.prefixes[1].partial`).
    #[error("invalid manifest: `{path}` must be {expected}")]
    WrongType { path: String, expected: &'static str },
    /// A required field of a prefix item is missing.
    #[error("invalid manifest: `{path}` is required")]
    MissingField { path: String },
    /// A byte is not an integer in `0..=255`.
    #[error("invalid manifest: `{path}` is {found}, not a byte (an integer in 0..=255)")]
    BadByte { path: String, found: String },
    /// `maxBytes` is not an integer in `0..=2^64-1` (negative, fractional or too large).
    #[error("invalid manifest: `{path}` is {found}, not an integer in 0..=2^64-1")]
    BadMaxBytes { path: String, found: String },
}

/// Parse the manifest out of `ActorName.metadata` (§3.1–§3.2).
///
/// Returns `Ok(None)` when the metadata object has no `preload` field, `Ok(Some(manifest))` as
/// declared (not normalized), and a typed error for any other shape.
pub fn parse_manifest(metadata_json: &str) -> Result<Option<Manifest>, ManifestError> {
    let metadata: Value =
        serde_json::from_str(metadata_json).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let Value::Object(metadata) = metadata else {
        return Err(ManifestError::MetadataNotObject);
    };
    let Some(preload) = metadata.get("preload") else {
        return Ok(None);
    };
    parse_preload(preload).map(Some)
}

/// Parse stored metadata bytes: [`parse_manifest`] after a UTF-8 check.
pub fn parse_manifest_bytes(metadata: &[u8]) -> Result<Option<Manifest>, ManifestError> {
    let text = std::str::from_utf8(metadata).map_err(|_| ManifestError::NotUtf8)?;
    parse_manifest(text)
}

fn parse_preload(preload: &Value) -> Result<Manifest, ManifestError> {
    let preload = as_object(preload, "preload")?;
    let keys = match preload.get("keys") {
        None => Vec::new(),
        Some(v) => as_array(v, "preload.keys")?
            .iter()
            .enumerate()
            .map(|(i, k)| parse_bytes(k, &format!("preload.keys[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    let prefixes = match preload.get("prefixes") {
        None => Vec::new(),
        Some(v) => as_array(v, "preload.prefixes")?
            .iter()
            .enumerate()
            .map(|(i, item)| parse_prefix_item(item, &format!("preload.prefixes[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    Ok(Manifest { keys, prefixes })
}

fn parse_prefix_item(item: &Value, path: &str) -> Result<PrefixItem, ManifestError> {
    let item = as_object(item, path)?;
    let required = |field: &str| {
        item.get(field)
            .ok_or_else(|| ManifestError::MissingField { path: format!("{path}.{field}") })
    };
    let prefix = parse_bytes(required("prefix")?, &format!("{path}.prefix"))?;
    let max_bytes_value = required("maxBytes")?;
    let max_bytes = match max_bytes_value {
        Value::Number(n) => n.as_u64().ok_or_else(|| ManifestError::BadMaxBytes {
            path: format!("{path}.maxBytes"),
            found: n.to_string(),
        })?,
        _ => {
            return Err(ManifestError::WrongType {
                path: format!("{path}.maxBytes"),
                expected: "an integer",
            })
        }
    };
    let partial = match item.get("partial") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ManifestError::WrongType {
                path: format!("{path}.partial"),
                expected: "a boolean",
            })
        }
    };
    Ok(PrefixItem { prefix, max_bytes, partial })
}

fn parse_bytes(value: &Value, path: &str) -> Result<Vec<u8>, ManifestError> {
    as_array(value, path)?
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bad =
                || ManifestError::BadByte { path: format!("{path}[{i}]"), found: b.to_string() };
            match b {
                Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or_else(bad),
                _ => Err(bad()),
            }
        })
        .collect()
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ManifestError> {
    value
        .as_object()
        .ok_or_else(|| ManifestError::WrongType { path: path.to_string(), expected: "an object" })
}

fn as_array<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, ManifestError> {
    value
        .as_array()
        .ok_or_else(|| ManifestError::WrongType { path: path.to_string(), expected: "an array" })
}

impl Manifest {
    /// §3.3: drop repeated get-keys and repeated prefixes (the first occurrence wins, with its
    /// `maxBytes` and `partial`), force the empty prefix non-partial, keep the declared order.
    /// Idempotent.
    pub fn normalize(&self) -> Manifest {
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(self.keys.len());
        let mut seen_keys = std::collections::BTreeSet::new();
        for k in &self.keys {
            if seen_keys.insert(k.as_slice()) {
                keys.push(k.clone());
            }
        }
        let mut prefixes: Vec<PrefixItem> = Vec::with_capacity(self.prefixes.len());
        let mut seen_prefixes = std::collections::BTreeSet::new();
        for item in &self.prefixes {
            if seen_prefixes.insert(item.prefix.as_slice()) {
                let partial = item.partial && !item.prefix.is_empty();
                prefixes.push(PrefixItem { partial, ..item.clone() });
            }
        }
        Manifest { keys, prefixes }
    }

    /// The item declared for exactly `prefix` (the first one, as normalization keeps it).
    pub fn prefix_item(&self, prefix: &[u8]) -> Option<&PrefixItem> {
        self.prefixes.iter().find(|item| item.prefix == prefix)
    }

    /// The `preload` value, as a runner declares it: `{"keys":[[..]..],"prefixes":[{"prefix":
    /// [..],"maxBytes":n,"partial":b}..]}`. [`parse_manifest`] reads it back unchanged.
    pub fn to_json(&self) -> Value {
        let bytes = |b: &[u8]| Value::Array(b.iter().map(|x| Value::from(*x)).collect());
        let keys = self.keys.iter().map(|k| bytes(k)).collect();
        let prefixes = self
            .prefixes
            .iter()
            .map(|item| {
                let mut o = Map::new();
                o.insert("prefix".into(), bytes(&item.prefix));
                o.insert("maxBytes".into(), Value::from(item.max_bytes));
                o.insert("partial".into(), Value::Bool(item.partial));
                Value::Object(o)
            })
            .collect();
        let mut o = Map::new();
        o.insert("keys".into(), Value::Array(keys));
        o.insert("prefixes".into(), Value::Array(prefixes));
        Value::Object(o)
    }

    /// A whole `ActorName.metadata` text declaring this manifest: `{"preload": …}`.
    pub fn to_metadata_json(&self) -> String {
        let mut o = Map::new();
        o.insert("preload".into(), self.to_json());
        Value::Object(o).to_string()
    }
}

pub use crate::constants::{
    REFERENCE_CONNECTIONS_MAX_BYTES, REFERENCE_DATABASE_PAGES_MAX_BYTES,
    REFERENCE_QUEUE_MESSAGES_MAX_BYTES, REFERENCE_WORKFLOW_HISTORY_MAX_BYTES,
};

/// The reference manifest of the model actor runtime (§3.6), already normalized.
pub fn reference_manifest() -> Manifest {
    Manifest {
        keys: vec![vec![1], vec![3], vec![5, 1, 1], vec![6]],
        prefixes: vec![
            PrefixItem::new([6, 1], REFERENCE_WORKFLOW_HISTORY_MAX_BYTES, false),
            PrefixItem::new([2], REFERENCE_CONNECTIONS_MAX_BYTES, false),
            PrefixItem::new([5, 1, 2], REFERENCE_QUEUE_MESSAGES_MAX_BYTES, false),
            PrefixItem::new([8, 1], REFERENCE_DATABASE_PAGES_MAX_BYTES, true),
        ],
    }
}
