//! The `sessionlake` binary's integration tests: one test binary (as
//! delta-rs's and ripgrep's), each suite a module, the fixtures shared by
//! plain `mod`s, so DataFusion and the fixtures are compiled and linked once.
//!
//! The tests that crash the binary need its test hooks: run them with
//! `--features crash-points` (`make test` does). Pick suites with a filter
//! on the module path, e.g. `cargo test --features crash-points --test it
//! -- torture::` (what `make soak` runs) or `-- serve::`.
//!
//! The suites that need Cassandra use the one the README test command
//! starts (`SESSIONLAKE_CASSANDRA_NODES`, default 127.0.0.1:9042), each in
//! keyspaces of its own; the cluster scenarios start a cluster of their own.

/// The binary as a user runs it: reports, one-line failures, the
/// configuration's rules, long-running commands.
mod cli;
/// The serving store as a real 3-node cluster, nodes killed under load.
mod cluster;
/// The torture report (`scripts/torture-report`): one JSON line per check.
mod report;
/// `db`, `serve`, `api`, `run` and `up` against the real Cassandra.
mod serve;
/// Fixtures: a lake prepared through the binary, keyspaces of their own,
/// the serving rows the gold table predicts (each suite uses a part).
#[allow(dead_code)]
mod support;
/// The torture suite: crashes, outages, concurrent writers, hostile input.
mod torture;
