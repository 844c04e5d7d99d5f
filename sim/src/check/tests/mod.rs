//! Checker tests: hand-built histories, one passing and one minimal violating history per
//! invariant, asserting the exact invariant id (and only it).

mod support;

mod clean;
