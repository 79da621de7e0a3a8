//! (being written: see tests/tenants/main.rs)
