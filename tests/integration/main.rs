//! One integration test binary; each area adds its module here.

mod api;
mod backends;
mod rollback;
mod store;
mod support;
