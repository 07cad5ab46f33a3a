//! The torture suite: the promises of the whole system, proven together by
//! making it fail — crashes at any instant, outages, concurrent writers,
//! hostile input and hostile clients. Each module records what it checked
//! in the suite's report (`report.rs`); `scripts/torture-report` prints it.
//!
//! Tests that need Cassandra use the one the README test command starts
//! (`SESSIONLAKE_CASSANDRA_NODES`, default 127.0.0.1:9042), each in
//! keyspaces of its own.

/// Two writers at once: raw and raw, sessions and the API, API and API.
mod concurrency;
/// SIGKILL anywhere, restart, compare with an uninterrupted run.
mod crash;
/// The generated input files.
mod dataset;
/// SIGKILL of the API under POST load: every 202 survives, exactly once.
mod durability;
/// Hostile input files: the corpus in `tests/corpus`, each case's outcome.
mod hostile_files;
/// Where a test's lake is: local disk or an S3 server.
mod lakes;
/// Cassandra down under load; the lake's disk full or read-only.
mod outage;
/// The same promises with the lake on a real S3 server (SeaweedFS).
mod s3;
/// Credentials from configuration; CQL in values is only data.
mod security;
/// What the lake and the serving tables hold, as comparable values.
mod snapshot;
/// The lake's disk full, or turned read-only, mid-run.
mod storage;
