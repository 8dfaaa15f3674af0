//! Helpers shared by the integration-test binaries (`mod support;` in each `tests/*.rs`).
//! Each binary uses only some of them, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod daemon;
pub mod postgres;
pub mod storm;
pub mod target;
