//! Manifest parsing (§3.2), normalization (§3.3) and the reference manifest (§3.6).

use proptest::collection::vec;
use proptest::prelude::*;

use crate::preload::manifest::*;
use crate::preload::oracle::reference_normalize;

fn manifest() -> impl Strategy<Value = Manifest> {
    let bytes = || vec(prop_oneof![Just(0u8), Just(2u8), Just(0xFFu8), any::<u8>()], 0..=3);
    (vec(bytes(), 0..=6), vec((bytes(), any::<u64>(), any::<bool>()), 0..=6)).prop_map(
        |(keys, prefixes)| Manifest {
            keys,
            prefixes: prefixes
                .into_iter()
                .map(|(p, m, partial)| PrefixItem::new(p, m, partial))
                .collect(),
        },
    )
}

proptest! {
    #[test]
    fn declared_manifest_round_trips_through_json(m in manifest()) {
        prop_assert_eq!(parse_manifest(&m.to_metadata_json()), Ok(Some(m)));
    }

    #[test]
    fn normalize_matches_the_independent_reference_and_is_idempotent(m in manifest()) {
        let n = m.normalize();
        prop_assert_eq!(&n, &reference_normalize(&m));
        prop_assert_eq!(n.normalize(), n.clone());
        // Every surviving item is the first occurrence, in declared order.
        for (i, k) in n.keys.iter().enumerate() {
            prop_assert!(!n.keys[..i].contains(k));
        }
        prop_assert!(n.prefixes.iter().all(|p| !(p.prefix.is_empty() && p.partial)));
    }

    /// Any single corruption of a valid manifest's JSON shape is rejected, never panics.
    #[test]
    fn corrupted_shapes_are_rejected(m in manifest(), pick in 0usize..8) {
        let mut preload = m.to_json();
        let corrupted = match pick {
            0 => { preload["keys"] = serde_json::json!([[256]]); true }
            1 => { preload["keys"] = serde_json::json!([[1.5]]); true }
            2 => { preload["prefixes"] = serde_json::json!([{"prefix": [1], "maxBytes": -1}]); true }
            3 => { preload["prefixes"] = serde_json::json!([{"prefix": [1], "maxBytes": 2.5}]); true }
            4 => { preload["prefixes"] = serde_json::json!([{"maxBytes": 1}]); true }
            5 => { preload["prefixes"] = serde_json::json!([{"prefix": [1]}]); true }
            6 => { preload["prefixes"] = serde_json::json!([{"prefix": [1], "maxBytes": 1, "partial": 1}]); true }
            _ => { preload["unknownField"] = serde_json::json!({"x": [1]}); false }
        };
        let text = serde_json::json!({ "preload": preload }).to_string();
        let parsed = parse_manifest(&text);
        if corrupted {
            prop_assert!(parsed.is_err(), "accepted {}", text);
        } else {
            prop_assert_eq!(parsed, Ok(Some(m)));
        }
    }
}

#[test]
fn spec_example_parses() {
    let text = r#"{"preload":{"keys":[[1],[3]],"prefixes":[{"prefix":[2],"maxBytes":65536}]}}"#;
    assert_eq!(
        parse_manifest(text),
        Ok(Some(Manifest {
            keys: vec![vec![1], vec![3]],
            prefixes: vec![PrefixItem::new([2], 65_536, false)],
        }))
    );
}

#[test]
fn absent_preload_and_defaults() {
    assert_eq!(parse_manifest(r#"{"icon":"x"}"#), Ok(None));
    assert_eq!(parse_manifest(r#"{"preload":{}}"#), Ok(Some(Manifest::default())));
    assert_eq!(
        parse_manifest(
            r#"{"preload":{"prefixes":[{"prefix":[],"maxBytes":18446744073709551615,"partial":true,"x":1}]}}"#
        ),
        Ok(Some(Manifest { keys: vec![], prefixes: vec![PrefixItem::new([], u64::MAX, true)] }))
    );
}

#[test]
fn invalid_shapes_name_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        (r#"not json"#, "not JSON"),
        (r#"[1]"#, "not a JSON object"),
        (r#"{"preload":null}"#, "`preload` must be an object"),
        (r#"{"preload":{"keys":null}}"#, "`preload.keys` must be an array"),
        (r#"{"preload":{"keys":[[1,256]]}}"#, "`preload.keys[0][1]` is 256"),
        (
            r#"{"preload":{"prefixes":[{"prefix":[2],"maxBytes":-1}]}}"#,
            "`preload.prefixes[0].maxBytes` is -1",
        ),
        (
            r#"{"preload":{"prefixes":[{"prefix":[2],"maxBytes":1.5}]}}"#,
            "`preload.prefixes[0].maxBytes` is 1.5",
        ),
        (
            r#"{"preload":{"prefixes":[{"maxBytes":1}]}}"#,
            "`preload.prefixes[0].prefix` is required",
        ),
        (
            r#"{"preload":{"prefixes":[{"prefix":[2]}]}}"#,
            "`preload.prefixes[0].maxBytes` is required",
        ),
        (
            r#"{"preload":{"prefixes":[{"prefix":[2],"maxBytes":"1"}]}}"#,
            "`preload.prefixes[0].maxBytes` must be an integer",
        ),
        (
            r#"{"preload":{"prefixes":[{"prefix":[2],"maxBytes":1,"partial":null}]}}"#,
            "`preload.prefixes[0].partial` must be a boolean",
        ),
    ];
    for (text, expected) in cases {
        match parse_manifest(text) {
            Err(e) => assert!(e.to_string().contains(expected), "{text}: `{e}` lacks `{expected}`"),
            Ok(m) => panic!("{text} parsed as {m:?}"),
        }
    }
    assert_eq!(parse_manifest_bytes(&[0xFF, 0xFE]), Err(ManifestError::NotUtf8));
}

#[test]
fn normalization_first_wins_and_empty_prefix_is_complete() {
    let m = Manifest {
        keys: vec![vec![1], vec![3], vec![1], vec![]],
        prefixes: vec![
            PrefixItem::new([2], 10, true),
            PrefixItem::new([], 5, true),
            PrefixItem::new([2], 99, false),
            PrefixItem::new([2, 5], 7, false),
        ],
    };
    assert_eq!(
        m.normalize(),
        Manifest {
            keys: vec![vec![1], vec![3], vec![]],
            prefixes: vec![
                PrefixItem::new([2], 10, true),
                PrefixItem::new([], 5, false),
                PrefixItem::new([2, 5], 7, false),
            ],
        }
    );
}

#[test]
fn reference_manifest_is_section_3_6() {
    let m = reference_manifest();
    assert_eq!(m.keys, vec![vec![1], vec![3], vec![5, 1, 1], vec![6]]);
    let items: Vec<(Vec<u8>, u64, bool)> =
        m.prefixes.iter().map(|i| (i.prefix.clone(), i.max_bytes, i.partial)).collect();
    assert_eq!(
        items,
        vec![
            (vec![6, 1], 131_072, false),
            (vec![2], 65_536, false),
            (vec![5, 1, 2], 65_536, false),
            (vec![8, 1], 786_432, true),
        ]
    );
    assert_eq!(m.normalize(), m);
}
