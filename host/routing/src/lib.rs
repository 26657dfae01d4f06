//! Call routing, sans-IO.
//!
//! - [`did_pool`]: the numbers a tenant owns on a trunk, parsed from the pool syntax
//!   (`13322496213-13322496215;16468097069`), and the index that finds a called number's owner
//!   among every tenant on a trunk, refusing pools that overlap.
//! - [`number`]: numbers normalised to E.164 by the country they were dialled in, and written
//!   back in the format a peer expects.
//! - [`tenant`]: tenants and the routing table: who a PBX call belongs to, who owns a called
//!   DID, which route and trunks a dialled number takes, which caller ID it may present.

// Tests index into data they built themselves.
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::arithmetic_side_effects))]

pub mod did_pool;
pub mod number;
pub mod tenant;

pub use did_pool::{DidIndex, DidPool, Overlap, PoolError};
pub use number::{Format, Number, Numbering};
pub use tenant::{
    CallerId, ForeignCallerId, Matcher, OutRoute, Outbound, RoutingTable, TableError, Tenant,
};
