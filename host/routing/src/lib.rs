//! Call routing, sans-IO. [`did_pool`]: the numbers a tenant owns on a trunk, parsed from the
//! pool syntax (`13322496213-13322496215;16468097069`), and the index that finds a called
//! number's owner among every tenant on a trunk, refusing pools that overlap.

// Tests index into data they built themselves.
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::arithmetic_side_effects))]

pub mod did_pool;

pub use did_pool::{DidIndex, DidPool, Overlap, PoolError};
