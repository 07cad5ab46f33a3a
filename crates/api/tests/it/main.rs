//! The API's handler tests: the real router, with in-memory stand-ins for
//! Cassandra and the lake, driven with `oneshot` (no socket), and over a
//! real TCP listener where the connection itself is under test. The wiring
//! to the real Cassandra and lake is tested in the root crate's `tests/api`.

mod fakes;
/// A raw HTTP/1.1 client over TCP, and the "shows no internals" check.
mod wire;

/// Slow clients, graceful shutdown, a thousand concurrent connections (TCP).
mod connections;
/// Property test: no input makes the API answer 5xx.
mod fuzz;
/// POST /events against hostile bodies: exact answers, nothing written on refusal.
mod hostile;
/// Routes, parameters, paging, keys, events, docs, metrics.
mod routes;
/// Keys never logged or echoed, no CQL injection, no internals shown.
mod security;
