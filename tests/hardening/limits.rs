//! Sizes a guest controls: log volume, nesting depth, names, errors, callbacks (findings 4, 6, 9).

#[allow(unused_imports)]
use crate::support::*;
