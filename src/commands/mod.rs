//! One file per subcommand: build the stage from the configuration, run
//! it, print its report. `stages` builds the stage structs (shared by the
//! single-stage commands, `run` and `up`); `follow` holds the stop signal
//! and the follow loop of the long-running commands.

mod api;
mod db;
mod follow;
mod generate;
mod ingest;
mod insights;
mod maintain;
mod quarantine;
mod raw;
mod run;
mod serve;
mod sessions;
mod sql;
mod stages;
mod up;

pub use api::api;
pub use db::db;
pub use generate::generate;
pub use ingest::ingest;
pub use insights::insights;
pub use maintain::maintain;
pub use quarantine::quarantine;
pub use raw::raw;
pub use run::run;
pub use serve::serve;
pub use sessions::sessions;
pub use sql::sql;
pub use up::up;
