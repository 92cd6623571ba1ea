//! The one integration test binary: each module drives part of breakwater against real
//! protocols on loopback.

mod api;
mod backends;
mod cli;
#[cfg(feature = "discord")]
mod discord;
mod rollback;
mod store;
mod support;
