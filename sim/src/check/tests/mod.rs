//! Checker tests: hand-built histories, one passing and one minimal violating history per
//! invariant, asserting the exact invariant id (and only it).

mod support;

mod clean;
mod commands;
mod demux;
mod envelope;
mod events;
mod frames;
mod instances;
mod liveness;
mod preload;
mod registry;
