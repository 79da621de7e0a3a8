//! Reads for the tenants' quotas: how many bytes an execution's records take in the store
//! (or a batch will write for it), and the idempotency claim an invocation would replay.
//! Read-only, like every `Store` method outside the commit thread.
//!
//! A size is the bytes of the stored values (encoded records: the format byte and
//! postcard), not of their keys: what a tenant's data takes (inputs, outputs, step results,
//! errors, log messages), independent of how the store lays out its keys.

use super::{decode, keys, wal, Batch, ExecId, ExecutionRecord, IdempotencyRecord, Result, Store};

/// The execution's entries of one appended table (history or logs) after a sequence
/// number: the last sequence number seen (or the one given, if none is newer) and the
/// bytes of their values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    pub last_seq: u32,
    pub bytes: u64,
}

/// What a batch writes for one execution: the bytes of its record (if it puts one) and of
/// the history events and log lines it puts, with their last sequence numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub record: u64,
    pub history: Appended,
    pub logs: Appended,
}

impl Batch {
    /// What this batch writes for execution `id` (of `tenant`), as the store will hold it.
    pub fn written_for(&self, tenant: &str, id: &ExecId) -> Written {
        let record = keys::execution(tenant, id);
        let (history, logs) = (keys::history_of(id), keys::logs_of(id));
        let seq = |k: &[u8], prefix: &[u8]| {
            k.get(prefix.len()..)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map(u32::from_be_bytes)
        };
        let mut w = Written::default();
        for op in &self.ops {
            let wal::Op::Put(k, v) = op else { continue };
            let len = v.len() as u64;
            if *k == record {
                w.record = len;
            } else if let Some(n) = seq(k, &history).filter(|_| k.starts_with(&history)) {
                w.history.bytes += len;
                w.history.last_seq = w.history.last_seq.max(n);
            } else if let Some(n) = seq(k, &logs).filter(|_| k.starts_with(&logs)) {
                w.logs.bytes += len;
                w.logs.last_seq = w.logs.last_seq.max(n);
            }
        }
        w
    }
}

impl Store {
    /// The bytes the stored value of an execution record takes (`None`: no such record).
    pub fn execution_size(&self, tenant: &str, id: &ExecId) -> Result<Option<u64>> {
        Ok(self
            .data
            .get(keys::execution(tenant, id))?
            .map(|v| v.len() as u64))
    }

    /// Every execution record of every tenant with the bytes its value takes (start-up).
    pub fn all_executions_sized(
        &self,
    ) -> impl Iterator<Item = Result<(ExecutionRecord, u64)>> + '_ {
        self.data.scan_prefix([keys::EXECUTION]).map(|r| {
            let (k, v) = r?;
            Ok((decode(&k, &v)?, v.len() as u64))
        })
    }

    /// The history events of `id` after `after`: see `Appended`.
    pub fn history_bytes_after(&self, id: &ExecId, after: u32) -> Result<Appended> {
        self.appended(keys::history_of(id), after)
    }

    /// The log lines of `id` after `after`: see `Appended`.
    pub fn log_bytes_after(&self, id: &ExecId, after: u32) -> Result<Appended> {
        self.appended(keys::logs_of(id), after)
    }

    /// Entries under `prefix` (an execution's history or logs: the prefix, then a
    /// big-endian sequence number) after sequence number `after`.
    fn appended(&self, prefix: Vec<u8>, after: u32) -> Result<Appended> {
        let mut out = Appended {
            last_seq: after,
            bytes: 0,
        };
        let Some(from) = after.checked_add(1) else {
            return Ok(out);
        };
        let mut start = prefix.clone();
        start.extend_from_slice(&from.to_be_bytes());
        for r in self.data.range(start..) {
            let (k, v) = r?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(seq) = k
                .get(prefix.len()..)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
            {
                out.last_seq = u32::from_be_bytes(seq);
            }
            out.bytes += v.len() as u64;
        }
        Ok(out)
    }

    /// The claim an `Idempotency-Key` holds for `tenant`'s `function`, if any.
    pub fn idempotency(
        &self,
        tenant: &str,
        function: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        self.get(&keys::idempotency(tenant, function, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Batch, Durability, LogLevel, LogRecord, LogStream, Status};
    use crate::journal::{EventKind, Journal};

    #[tokio::test]
    async fn sizes_are_the_stored_values_and_count_only_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let id = [9u8; 16];
        let other = [8u8; 16];
        let rec = ExecutionRecord {
            id,
            tenant: "t".into(),
            function: "f".into(),
            version: 1,
            status: Status::Running,
            input: "\"hello\"".into(),
            output: None,
            error: None,
            created_ms: 1,
            updated_ms: 1,
            deadline_ms: None,
            idempotency_key: None,
            ended_ms: None,
            redrive_count: 0,
            forked_from: None,
            expires_ms: None,
            trace: None,
            parent_execution_id: None,
        };
        let mut journal = Journal::from_events(&[]);
        let mut batch = Batch::new();
        batch.put_execution(&rec);
        let mut event_bytes = Vec::new();
        for n in 0..3 {
            let e = journal.record(
                n,
                EventKind::ExecutionStarted {
                    input: "x".repeat(n as usize * 10),
                },
            );
            event_bytes.push(super::super::encode(&e).len() as u64);
            batch.put_event(&id, &e);
            // Another execution's entries sort right after: never counted.
            batch.put_event(&other, &e);
        }
        let line = LogRecord {
            at_ms: 1,
            level: LogLevel::Info,
            stream: LogStream::Log,
            message: "a line".into(),
            op_id: None,
            position: "1".into(),
        };
        batch.put_log(&id, 1, &line);
        let written = batch.written_for("t", &id);
        store.commit(batch, Durability::Lazy).await.unwrap();

        let bytes = store.execution_size("t", &id).unwrap().unwrap();
        assert_eq!(bytes, super::super::encode(&rec).len() as u64);
        assert_eq!(store.execution_size("u", &id).unwrap(), None);
        let all: Vec<_> = store.all_executions_sized().collect::<Result<_>>().unwrap();
        assert_eq!(all, vec![(rec, bytes)]);

        let h = store.history_bytes_after(&id, 0).unwrap();
        assert_eq!(h.last_seq, 3);
        assert_eq!(h.bytes, event_bytes.iter().sum::<u64>());
        let tail = store.history_bytes_after(&id, 2).unwrap();
        assert_eq!(
            tail,
            Appended {
                last_seq: 3,
                bytes: event_bytes[2]
            }
        );
        let none = store.history_bytes_after(&id, 3).unwrap();
        assert_eq!(
            none,
            Appended {
                last_seq: 3,
                bytes: 0
            }
        );
        let logs = store.log_bytes_after(&id, 0).unwrap();
        assert_eq!(logs.last_seq, 1);
        assert_eq!(logs.bytes, super::super::encode(&line).len() as u64);
        // What the batch said it would write is what the store holds.
        let held = Written {
            record: bytes,
            history: h,
            logs,
        };
        assert_eq!(written, held);
        assert_eq!(store.execution_size("t", &other).unwrap(), None);
        assert_eq!(
            store.history_bytes_after(&[1; 16], 0).unwrap(),
            Appended::default()
        );
    }
}
