//! One integration test binary; each area adds its module here.

mod store;
