//! The handlers, one module per concern.

pub mod events;
pub mod health;
pub mod sessions;
