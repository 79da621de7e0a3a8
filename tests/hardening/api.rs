//! Idempotency under concurrency and the API's edges (findings 1 and 13).

#[allow(unused_imports)]
use crate::support::*;
