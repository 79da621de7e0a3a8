//! The store under faults: full disks, truncated files (findings 3, 8, 10).

#[allow(unused_imports)]
use crate::support::*;
