//! The delivery worker: sends what the outbox holds when it is due, at most
//! `Options::concurrency` at once, and writes each attempt's result (the delivery, its next
//! outbox entry, a disabled webhook) in one batch. Pending deliveries are on disk, so after
//! a restart the first scan finds them: nothing to recover in memory.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::{after_attempt, body_for, sign, AttemptResult, Options};
use crate::db::{self, Batch, DeliveryStatus, Durability, OutboxRecord};
use crate::host_api::{tenant_allowlist, Shared};
use crate::metrics::Metrics;

/// Wakes the worker: something was added to the outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    notify: Arc<Notify>,
    /// Attempts a new delivery gets (the retry schedule's length + 1).
    schedule_len: usize,
}

impl Outbox {
    pub fn new(opts: &Options) -> Self {
        Self {
            notify: Arc::default(),
            schedule_len: opts.schedule.len(),
        }
    }

    /// Add the deliveries of `exec`'s terminal event to `batch` (see `webhooks::outbox`);
    /// once it is committed, `wake` the worker if this returned more than 0.
    pub fn add(
        &self,
        db: &db::Store,
        exec: &db::ExecutionRecord,
        now_ms: u64,
        batch: &mut Batch,
    ) -> db::Result<usize> {
        super::outbox(db, exec, self.schedule_len, now_ms, batch)
    }

    /// Add the deliveries of `event` of `exec` (`webhooks::outbox_event`) to `batch`.
    pub fn add_event(
        &self,
        db: &db::Store,
        exec: &db::ExecutionRecord,
        event: &str,
        now_ms: u64,
        batch: &mut Batch,
    ) -> db::Result<usize> {
        super::outbox_event(db, exec, event, self.schedule_len, now_ms, batch)
    }

    /// A new delivery for `hook` (the test event), due now.
    pub fn delivery(
        &self,
        hook: &db::WebhookRecord,
        event: &str,
        payload: String,
        now_ms: u64,
    ) -> db::DeliveryRecord {
        super::new_delivery(hook, event, None, payload, self.schedule_len, now_ms)
    }

    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

/// The longest the worker sleeps without looking at the outbox (a safety net; every
/// writer of the outbox wakes it).
const IDLE_RESCAN: Duration = Duration::from_secs(5);

pub struct Service {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub opts: Options,
    pub outbox: Outbox,
    in_flight: Mutex<HashSet<String>>,
}

impl Service {
    pub fn new(shared: Arc<Shared>, metrics: Arc<Metrics>, opts: Options, outbox: Outbox) -> Self {
        Self {
            shared,
            metrics,
            opts,
            outbox,
            in_flight: Mutex::default(),
        }
    }

    /// Deliver until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: Arc<Notify>) {
        let slots = Arc::new(Semaphore::new(self.opts.concurrency.max(1)));
        let mut pruned = tokio::time::Instant::now();
        loop {
            if pruned.elapsed() >= super::PRUNE_INTERVAL {
                pruned = tokio::time::Instant::now();
                if let Err(e) = self.prune().await {
                    tracing::error!(error = %e, "pruning webhook deliveries failed");
                }
            }
            let (due, next) = match self.scan() {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "reading the webhook outbox failed");
                    (Vec::new(), None)
                }
            };
            let started = !due.is_empty();
            for (due_ms, entry) in due {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let id = entry.delivery.clone();
                    if let Err(e) = this.attempt(due_ms, &entry).await {
                        tracing::error!(error = %e, delivery = %id, "webhook delivery could not be recorded; it is tried again");
                    }
                    drop(permit);
                    this.in_flight.lock().expect("in flight").remove(&id);
                    this.outbox.wake();
                });
            }
            if started {
                continue;
            }
            let now = self.shared.timers.clock().now_ms();
            let wait = next.map_or(IDLE_RESCAN, |due| {
                Duration::from_millis(due.saturating_sub(now)).min(IDLE_RESCAN)
            });
            tokio::select! {
                _ = shutdown.notified() => return,
                _ = self.outbox.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Delete finished deliveries past their retention, and beyond the newest
    /// `MAX_FINISHED_DELIVERIES` of a webhook. Pending ones are kept whatever their age.
    pub async fn prune(&self) -> db::Result<usize> {
        let db = &self.shared.db;
        let cutoff = self
            .shared
            .timers
            .clock()
            .now_ms()
            .saturating_sub(self.opts.retention.as_millis() as u64);
        let mut deleted = 0;
        for tenant in self.shared.tenants.list() {
            for hook in db.webhooks(&tenant.name)? {
                let all = db
                    .deliveries(&tenant.name, &hook.id)
                    .collect::<db::Result<Vec<_>>>()?;
                let mut batch = Batch::new();
                for id in super::to_prune(&all, cutoff, super::MAX_FINISHED_DELIVERIES) {
                    batch.del_delivery(&tenant.name, &hook.id, id);
                    deleted += 1;
                }
                if !batch.is_empty() {
                    db.commit(batch, Durability::Lazy).await?;
                }
            }
        }
        Ok(deleted)
    }

    /// What is due now and not in flight (marked in flight here; at most `concurrency`),
    /// and the due time of the next entry after those.
    #[allow(clippy::type_complexity)]
    fn scan(&self) -> db::Result<(Vec<(u64, OutboxRecord)>, Option<u64>)> {
        let now = self.shared.timers.clock().now_ms();
        let mut in_flight = self.in_flight.lock().expect("in flight");
        let mut due = Vec::new();
        for entry in self.shared.db.outbox() {
            let (due_ms, id, rec) = entry?;
            if in_flight.contains(&id) {
                continue;
            }
            if due_ms > now || due.len() >= self.opts.concurrency.max(1) {
                return Ok((due, Some(due_ms)));
            }
            in_flight.insert(id);
            due.push((due_ms, rec));
        }
        Ok((due, None))
    }

    /// One attempt of the delivery `entry` names, due at `due_ms`, and its record.
    #[tracing::instrument(skip_all, fields(tenant = %entry.tenant, webhook = %entry.webhook, delivery = %entry.delivery))]
    async fn attempt(&self, due_ms: u64, entry: &OutboxRecord) -> db::Result<()> {
        let db = &self.shared.db;
        let mut batch = Batch::new();
        batch.del_outbox(due_ms, &entry.delivery);
        let d = db.delivery(&entry.tenant, &entry.webhook, &entry.delivery)?;
        let Some(d) =
            d.filter(|d| d.status == DeliveryStatus::Pending && d.next_attempt_ms == Some(due_ms))
        else {
            // Stale: the delivery moved on (a manual retry) or is gone.
            return db.commit(batch, Durability::Lazy).await;
        };
        let Some(hook) = db.webhook(&entry.tenant, &entry.webhook)? else {
            // Deleted, with its deliveries: only this entry was left.
            return db.commit(batch, Durability::Lazy).await;
        };
        if !hook.enabled {
            let mut d = d;
            d.status = DeliveryStatus::Failed;
            d.next_attempt_ms = None;
            d.last_error = Some("the webhook is disabled".into());
            batch.put_delivery(&d);
            self.count(&entry.tenant, false);
            return db.commit(batch, Durability::Sync).await;
        }
        // Durability at the point of output: the outbox entry and the terminal batch it came
        // with were written without waiting for the disk; they are on disk before the
        // destination hears of them.
        db.durable_barrier().await?;
        let result = self.send(&hook, &d).await;
        let now = self.shared.timers.clock().now_ms();
        tracing::info!(attempt = d.attempts + 1, result = ?result, "webhook attempt");
        let (d, disable) = after_attempt(d, &result, &self.opts.schedule, now);
        // Deleted meanwhile (with its deliveries): record nothing that would outlive it.
        let Some(mut h) = db.webhook(&entry.tenant, &entry.webhook)? else {
            return db.commit(batch, Durability::Lazy).await;
        };
        batch.put_delivery(&d);
        if disable {
            h.enabled = false;
            h.disabled_reason = Some(format!(
                "its destination answered 410 Gone to delivery {} at {}",
                d.id,
                super::timestamp(now)
            ));
            h.updated_ms = now;
            batch.put_webhook(&h);
            tracing::warn!("webhook disabled: its destination answered 410 Gone");
        }
        db.commit(batch, Durability::Sync).await?;
        match d.status {
            DeliveryStatus::Delivered => self.count(&entry.tenant, true),
            DeliveryStatus::Failed => self.count(&entry.tenant, false),
            DeliveryStatus::Pending => {
                let m = self.metrics.tenant(&entry.tenant);
                m.webhook_retries.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }

    fn count(&self, tenant: &str, delivered: bool) {
        let m = self.metrics.tenant(tenant);
        if delivered {
            m.webhooks_delivered.fetch_add(1, Relaxed);
        } else {
            m.webhooks_failed.fetch_add(1, Relaxed);
        }
    }

    /// Send one attempt; never longer than `Options::timeout`, resolution included.
    async fn send(&self, hook: &db::WebhookRecord, d: &db::DeliveryRecord) -> AttemptResult {
        let timeout = self.opts.timeout;
        match tokio::time::timeout(timeout, self.send_inner(hook, d)).await {
            Ok(r) => r,
            Err(_) => AttemptResult::Error(format!("no answer within {} s", timeout.as_secs_f64())),
        }
    }

    async fn send_inner(&self, hook: &db::WebhookRecord, d: &db::DeliveryRecord) -> AttemptResult {
        let uri: http::Uri = match hook.url.parse() {
            Ok(u) => u,
            Err(e) => return AttemptResult::Error(format!("the URL does not parse: {e}")),
        };
        let allow = tenant_allowlist(&self.shared, &hook.tenant);
        let addrs = match allow.destination(&uri, self.opts.timeout).await {
            Ok(a) => a,
            Err(why) => {
                // The host only: a URL may carry a token (Slack's do).
                tracing::warn!(
                    host = uri.host().unwrap_or(""),
                    "webhook delivery refused: {why}"
                );
                return AttemptResult::Error(format!("refused: {why}"));
            }
        };
        let mut client = reqwest::Client::builder()
            // A redirect could lead anywhere: outside the allowlist, into this host.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.opts.timeout)
            .user_agent(concat!("durable-host-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = uri
            .host()
            .filter(|h| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
        {
            // Connect to the addresses that were checked, not to a second resolution.
            client = client.resolve_to_addrs(host, &addrs);
        }
        let client = match client.build() {
            Ok(c) => c,
            Err(e) => return AttemptResult::Error(format!("building the client: {e}")),
        };
        let ts = self.shared.timers.clock().now_ms() / 1000;
        let body = body_for(hook.format, &d.payload);
        let signature = sign::signature(&hook.secret, &d.id, ts, &body);
        let sent = client
            .post(hook.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => AttemptResult::Delivered(r.status().as_u16()),
            Ok(r) if r.status().as_u16() == 410 => AttemptResult::Gone,
            Ok(r) => AttemptResult::Status(r.status().as_u16()),
            Err(e) if e.is_timeout() => AttemptResult::Error(format!(
                "no answer within {} s",
                self.opts.timeout.as_secs_f64()
            )),
            Err(e) => {
                use std::error::Error as _;
                let mut msg = e.to_string();
                let mut src = e.source();
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                AttemptResult::Error(msg)
            }
        }
    }
}
