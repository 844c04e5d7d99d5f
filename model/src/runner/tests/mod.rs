//! Tests of the runner: support code (a live KV answering from a snapshot, frame helpers), the
//! startup program and its oracle equivalence.

mod client_tests;
mod harness;
mod property_tests;
mod startup_tests;
mod support;
