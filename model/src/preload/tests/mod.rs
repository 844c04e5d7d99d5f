//! Tests of the preload: generators and helpers, property tests of P0–P11, fetch under faults,
//! the named edge cases of §9, manifest parsing, and the canaries' power.

mod canaries;
mod edge_cases;
mod fetch_tests;
mod gen;
mod manifest_tests;
mod properties;
mod support;
