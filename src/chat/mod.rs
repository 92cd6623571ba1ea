//! Chat adapters: each turns a platform's events into core events and renders the core's
//! neutral messages natively. Outbound, the core sees only [`Chat`].

pub mod console;
#[cfg(feature = "discord")]
pub mod discord;
pub mod outbox;
pub(crate) mod recent;
#[cfg(feature = "slack")]
pub mod slack;

pub use crate::core::chat::{AdapterStatus, Chat, ChatError, ChatHub, Lane};
