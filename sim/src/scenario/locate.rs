//! Where things are in a TOML text: the line of a byte offset, the dotted field path at an offset,
//! and the span of a field path. Used to make every error about a TOML file (scenario files,
//! failure files) name its file, line and field.
//!
//! Owns: [`SourceMap`] and [`TomlProblem`]. It reads the text once with `toml` (through
//! `toml::Spanned`), keeps only spans, and never interprets values.
//!
//! Field paths are dotted (`topology.edge_nodes`), with array elements as `[i]`
//! (`preload.manifests.chat.prefixes[1].prefix`) and keys that are not bare words quoted
//! (`engine.timing."odd key"` is never produced for the scenario format, whose keys are bare).

use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One field of the text: its dotted path, the span of its key (absent for array elements and
/// the root) and the span of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpan {
    pub path: String,
    pub key: Option<Range<usize>>,
    pub value: Range<usize>,
}

/// Lines and field spans of one TOML text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceMap {
    line_starts: Vec<usize>,
    fields: Vec<FieldSpan>,
    /// `(line, header path)` of every `[table]` / `[[array]]` header, for texts that do not parse.
    headers: Vec<(usize, String)>,
    /// `(line, key)` of every line that starts with `key =`.
    key_lines: Vec<(usize, String)>,
}

/// One problem in a TOML text, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TomlProblem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The dotted field path (empty when no field could be named, e.g. a syntax error on a
    /// header line).
    pub field: String,
    /// What is wrong, without position information.
    pub message: String,
}

impl SourceMap {
    /// Index `text`. A text that is not valid TOML still gets line numbers and the line-based
    /// field guesses; it has no field spans.
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut fields = Vec::new();
        if let Ok(root) = toml::from_str::<Sp<Node>>(text) {
            flatten(String::new(), None, &root, &mut fields);
        }
        let (headers, key_lines) = scan_lines(text);
        SourceMap { line_starts, fields, headers, key_lines }
    }

    /// The 1-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The innermost field whose key or value contains `offset`.
    pub fn field_at(&self, offset: usize) -> Option<&str> {
        let contains = |r: &Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
        self.fields
            .iter()
            .filter(|f| !f.path.is_empty())
            .filter_map(|f| {
                let key_hit = f.key.as_ref().filter(|k| contains(k)).map(|k| k.len());
                let value_hit = Some(&f.value).filter(|v| contains(v)).map(|v| v.len());
                key_hit.or(value_hit).map(|width| (width, f.path.as_str()))
            })
            .min_by_key(|(width, _)| *width)
            .map(|(_, path)| path)
    }

    /// The span of field `path`: its key when it has one, else its value.
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        self.fields
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.key.clone().unwrap_or(f.value.clone()))
    }

    /// The 1-based line of field `path`, or of its nearest written ancestor (a field left at its
    /// default has no line of its own; its table may).
    pub fn line_of_field(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(span) = self.span_of(p) {
                return Some(self.line_of(span.start));
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// Locate a `toml` deserialization error: its line, the field at its span (or, for a text
    /// that does not parse, the header and key of its line) and its bare message.
    pub fn locate(&self, err: &toml::de::Error) -> TomlProblem {
        // One line: toml's multi-line messages are joined.
        let message: String = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let Some(span) = err.span() else {
            return TomlProblem { line: None, field: String::new(), message };
        };
        let line = self.line_of(span.start);
        let field = match self.field_at(span.start) {
            Some(f) => f.to_string(),
            None => self.guess_field(line),
        };
        TomlProblem { line: Some(line), field, message }
    }

    /// The field a line most likely belongs to: the last header above it plus the key on the
    /// nearest `key =` line at or above it (below that header).
    fn guess_field(&self, line: usize) -> String {
        let header = self.headers.iter().rev().find(|(l, _)| *l <= line);
        let header_line = header.map_or(0, |(l, _)| *l);
        let key = self.key_lines.iter().rev().find(|(l, _)| *l <= line && *l > header_line);
        match (header, key) {
            (Some((_, h)), Some((_, k))) => format!("{h}.{k}"),
            (Some((_, h)), None) => h.clone(),
            (None, Some((_, k))) => k.clone(),
            (None, None) => String::new(),
        }
    }
}

/// A TOML value reduced to its shape, with spans.
enum Node {
    Leaf,
    Table(Vec<(Sp<String>, Sp<Node>)>),
    Array(Vec<Sp<Node>>),
}

/// A value with its span when the deserializer knows it. Like `toml::Spanned`, but tables that
/// TOML creates implicitly (`[a.b.c]` creates `a` and `a.b`) have no span instead of failing.
struct Sp<T> {
    span: Option<Range<usize>>,
    value: T,
}

/// The struct name and fields through which `toml` hands out spans (the protocol of
/// `toml::Spanned`, from `serde_spanned`, which is not a direct dependency; the tests of this
/// module fail if it ever changes).
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_FIELDS: [&str; 3] = [
    "$__serde_spanned_private_start",
    "$__serde_spanned_private_end",
    "$__serde_spanned_private_value",
];

/// Reads the `toml::Spanned` protocol (a map of start, end and value) after its first key.
fn read_spanned<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    first_key: &str,
    mut map: A,
) -> Result<Sp<T>, A::Error> {
    let mut start = None;
    let mut end = None;
    let mut value = None;
    let mut key = Some(first_key.to_string());
    while let Some(k) = key {
        match k.as_str() {
            k if k == SPANNED_FIELDS[0] => start = Some(map.next_value::<usize>()?),
            k if k == SPANNED_FIELDS[1] => end = Some(map.next_value::<usize>()?),
            _ => value = Some(map.next_value::<T>()?),
        }
        key = map.next_key::<String>()?;
    }
    match (start, end, value) {
        (Some(s), Some(e), Some(value)) => Ok(Sp { span: Some(s..e), value }),
        _ => Err(serde::de::Error::custom("incomplete spanned value")),
    }
}

impl<'de> Deserialize<'de> for Sp<Node> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, &SPANNED_FIELDS, SpNodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Sp<String> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, &SPANNED_FIELDS, SpKeyVisitor)
    }
}

struct SpKeyVisitor;

impl<'de> Visitor<'de> for SpKeyVisitor {
    type Value = Sp<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sp<String>, E> {
        Ok(Sp { span: None, value: v.to_string() })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sp<String>, A::Error> {
        match map.next_key::<String>()? {
            Some(first) => read_spanned(&first, map),
            None => Err(serde::de::Error::custom("empty key")),
        }
    }
}

struct SpNodeVisitor;

macro_rules! leaf_visits {
    ($($name:ident($ty:ty)),*) => {
        $(fn $name<E: serde::de::Error>(self, _: $ty) -> Result<Sp<Node>, E> {
            Ok(Sp { span: None, value: Node::Leaf })
        })*
    };
}

impl<'de> Visitor<'de> for SpNodeVisitor {
    type Value = Sp<Node>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any TOML value")
    }

    leaf_visits!(visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));

    fn visit_unit<E: serde::de::Error>(self) -> Result<Sp<Node>, E> {
        Ok(Sp { span: None, value: Node::Leaf })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Sp<Node>, A::Error> {
        Ok(Sp { span: None, value: read_seq(seq)? })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sp<Node>, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Sp { span: None, value: Node::Table(Vec::new()) });
        };
        if first == SPANNED_FIELDS[0] {
            return read_spanned(&first, map);
        }
        // A table without a span (created implicitly by a dotted header).
        let first_value = map.next_value::<Sp<Node>>()?;
        let mut entries = vec![(Sp { span: None, value: first }, first_value)];
        while let Some(entry) = map.next_entry::<Sp<String>, Sp<Node>>()? {
            entries.push(entry);
        }
        Ok(Sp { span: None, value: Node::Table(entries) })
    }
}

fn read_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Node, A::Error> {
    let mut items = Vec::new();
    while let Some(item) = seq.next_element::<Sp<Node>>()? {
        items.push(item);
    }
    Ok(Node::Array(items))
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SpNodeVisitor).map(|sp| sp.value)
    }
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn join(parent: &str, key: &str) -> String {
    let key = if is_bare_key(key) { key.to_string() } else { format!("{key:?}") };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

fn flatten(path: String, key: Option<Range<usize>>, node: &Sp<Node>, out: &mut Vec<FieldSpan>) {
    if key.is_some() || node.span.is_some() {
        let value = node.span.clone().or(key.clone()).unwrap_or(0..0);
        out.push(FieldSpan { path: path.clone(), key, value });
    }
    match &node.value {
        Node::Leaf => {}
        Node::Table(entries) => {
            for (k, v) in entries {
                flatten(join(&path, &k.value), k.span.clone(), v, out);
            }
        }
        Node::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(format!("{path}[{i}]"), None, v, out);
            }
        }
    }
}

/// `(line, header)` of `[a.b]` / `[[a.b]]` lines and `(line, key)` of `key = …` lines.
type LineIndex = (Vec<(usize, String)>, Vec<(usize, String)>);

fn scan_lines(text: &str) -> LineIndex {
    let mut headers = Vec::new();
    let mut keys = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix('[') {
            let rest = rest.trim_start_matches('[');
            if let Some(end) = rest.find(']') {
                let name: String =
                    rest[..end].split('.').map(str::trim).collect::<Vec<_>>().join(".");
                headers.push((i + 1, name));
            }
        } else if let Some(eq) = line.find('=') {
            let key = line[..eq].trim();
            if !key.is_empty() && !key.starts_with('#') && !key.contains(['"', '\'', ' ', '{']) {
                keys.push((i + 1, key.to_string()));
            }
        }
    }
    (headers, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"x\"\n\n[topology]\nedge_nodes = 3\nversions = [1, 2]\n\n[preload.manifests.chat]\nprefixes = [{ prefix = [2], max_bytes = 10 }]\n";

    #[test]
    fn lines_are_one_based() {
        let map = SourceMap::new(TEXT);
        assert_eq!(map.line_of(0), 1);
        assert_eq!(map.line_of(TEXT.find("[topology]").unwrap()), 3);
        assert_eq!(map.line_of(TEXT.find("edge_nodes").unwrap() + 3), 4);
    }

    #[test]
    fn fields_are_found_by_offset_and_by_path() {
        let map = SourceMap::new(TEXT);
        assert_eq!(map.field_at(TEXT.find("3\n").unwrap()), Some("topology.edge_nodes"));
        assert_eq!(map.field_at(TEXT.find("2]\n").unwrap()), Some("topology.versions[1]"));
        let at = TEXT.find("10 }").unwrap();
        assert_eq!(map.field_at(at), Some("preload.manifests.chat.prefixes[0].max_bytes"));
        assert_eq!(map.line_of_field("topology.edge_nodes"), Some(4));
        assert_eq!(map.line_of_field("preload.manifests.chat.prefixes[0].prefix"), Some(8));
        // A field left at its default is placed at its table.
        assert_eq!(map.line_of_field("topology.slots_per_runner"), Some(3));
        assert_eq!(map.line_of_field("phases.heal_ms"), None);
    }

    #[test]
    fn a_text_that_does_not_parse_still_gets_a_line_and_a_guess() {
        let text = "[phases]\nheal_ms = 5\nfault_ms = = 3\n";
        let map = SourceMap::new(text);
        let err = toml::from_str::<toml::Table>(text).unwrap_err();
        let p = map.locate(&err);
        assert_eq!(p.line, Some(3));
        assert_eq!(p.field, "phases.fault_ms");
    }
}
