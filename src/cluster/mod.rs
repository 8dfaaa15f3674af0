//! Several daemons on one PostgreSQL (DESIGN §9): which shard an integration belongs to and how
//! live nodes split the shards. The leases, their fencing epochs and the membership that use
//! these pure rules are issue 12's next steps; SQLite stays single-node (its serve lock is in
//! `store/sqlite.rs`).

pub mod shards;

pub use shards::{assign, shard_of};
