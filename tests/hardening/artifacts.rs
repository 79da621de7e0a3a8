//! Compiled artifacts and uploads: corruption, recompile storms, streamed uploads (findings 2, 5, 12).

#[allow(unused_imports)]
use crate::support::*;
