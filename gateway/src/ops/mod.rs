//! Cluster operations: where a key lives, quorum calls to its holders, and the read, write,
//! delete, repair and listing paths built on them. Handlers (`api`) and workers (`background`)
//! call these; these call the nodes, and know nothing of HTTP requests.

pub mod bucket;
pub mod cluster;
pub mod commit;
pub mod delete;
pub mod encryption;
pub mod error;
pub mod fanout;
pub mod fetch;
pub mod fragment_stream;
pub mod frame;
pub mod keys;
pub mod list;
pub mod liveness;
pub mod lookup;
pub mod lookup_width;
pub mod node_calls;
pub mod quorum;
pub mod read;
pub mod repair;
pub mod replica;
pub mod revision;
pub mod secret_seal;
pub mod system_table;
#[cfg(test)]
pub mod testing;
pub mod upload;
pub mod usage;
pub mod write;
