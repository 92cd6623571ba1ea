//! The platform-neutral domain: alerts, deploys, summaries, rollback plans and policy, the
//! bot that decides, and the ports it owns (`store`, `chat`, `audit`) that adapters
//! implement. Nothing in here knows Slack, Discord, SQL or HTTP.

pub mod alert;
pub mod audit;
pub mod backend;
pub mod bot;
pub mod chat;
pub mod clock;
pub mod compose;
pub mod deploy;
pub mod event;
pub mod incident;
pub mod message;
pub mod policy;
pub mod repository;
pub mod rollback;
pub mod store;
pub mod summary;
pub mod unrouted;
