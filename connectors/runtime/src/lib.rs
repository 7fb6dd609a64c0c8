//! The library every Runnel connector links.
//!
//! A connector binary supplies two things: the protocol side (talking to the outside system)
//! and the extract side (turning its messages into [`Record`]s and back). Everything else lives
//! here:
//!
//! - [`config`]: both Fluvio `connect.yml` formats, `${{ secrets.NAME }}` templating, flags that
//!   override the file, validation with errors that name the file and the field path.
//! - [`hub`]: where topics live. `local:` is an embedded SQLite store shared by processes on
//!   one machine.
//! - [`pipeline`]: the stage pipeline for sources (protocol → extract → hub) and sinks
//!   (hub → extract → protocol), with batching, retries, dead-letter and at-least-once commits.
//! - [`checkpoint`]: the durable store where a source keeps its position in the outside
//!   system, saved only once the hub has the records before it.
//! - [`server`]: `/healthz`, `/readyz` and Prometheus `/metrics`.
//! - [`telemetry`]: logs (text or JSON) that never print a secret, and the metrics registry.
//! - [`transform`]: the filter and shape stages, `transforms:` run as one chain of
//!   SmartModules by smartmodule-host.
//! - [`shutdown`]: SIGTERM/SIGINT handling passed into every task, so tests control it.
//! - [`app`]: the `main` every connector shares: flags, `--check`, `--schema`, wiring.

pub mod app;
pub mod checkpoint;
pub mod hub;
pub mod pipeline;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod transform;

pub use runnel_config as config;
pub use runnel_core::{BoxError, Chain, ConsumedRecord, Record, chain, record, retry};
