//! The API's handler tests: the real router, with in-memory stand-ins for
//! Cassandra and the lake, driven with `oneshot` (no socket). The wiring to
//! the real Cassandra and lake is tested in the root crate's `tests/api`.

mod fakes;
/// Property test: no input makes the API answer 5xx.
mod fuzz;
/// Routes, parameters, paging, keys, events, docs, metrics.
mod routes;
