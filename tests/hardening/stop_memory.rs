//! Stop of a guest blocked in a host call, and the host-wide memory budget (findings 7, 11).

#[allow(unused_imports)]
use crate::support::*;
