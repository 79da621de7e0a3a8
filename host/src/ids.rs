//! Identifiers: execution ids (ULIDs, time-ordered) and callback ids (unguessable).

use crate::db::ExecId;

/// A new execution id: 48 bits of millisecond time then 80 random bits, so ids sort by
/// creation time (newest-first listings are a reverse scan). Within one millisecond the
/// generator is monotonic (random part + 1), so ids made by this process sort exactly in
/// the order they were made.
pub fn new_execution_id() -> ExecId {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let next = GENERATOR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .generate();
    // Overflow of the random part within one millisecond: practically never; fall back.
    next.unwrap_or_else(|_| ulid::Ulid::new()).0.to_be_bytes()
}

pub fn execution_id_to_string(id: &ExecId) -> String {
    ulid::Ulid(u128::from_be_bytes(*id)).to_string()
}

pub fn parse_execution_id(s: &str) -> Option<ExecId> {
    ulid::Ulid::from_string(s).ok().map(|u| u.0.to_be_bytes())
}

/// A callback id: 128 random bits, hex, prefixed. Whoever holds it can complete the
/// callback, so it must not be guessable.
pub fn callback_id() -> String {
    format!("cb_{}", hex::encode(rand::random::<[u8; 16]>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_round_trip_and_sort_by_time() {
        let a = new_execution_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_execution_id();
        assert!(a < b);
        let s = execution_id_to_string(&a);
        assert_eq!(parse_execution_id(&s), Some(a));
        assert_eq!(parse_execution_id("not-an-id"), None);
        assert_ne!(callback_id(), callback_id());
    }
}
