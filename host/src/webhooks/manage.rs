//! Webhook changes and reads for the API: create (with a new secret), list, get, change,
//! delete (with its deliveries and their outbox entries, in one batch), the deliveries
//! list, a manual retry and the test event. Every change is fsynced before the caller is
//! answered; everything is read and written under the caller's tenant, so another
//! tenant's webhook or delivery is `NotFound`, as if it did not exist.

use super::{sign, Error, Service, EVENTS, MAX_URL_BYTES, MAX_WEBHOOKS_PER_TENANT, TEST_EVENT};
use crate::db::{Batch, DeliveryRecord, DeliveryStatus, Durability, WebhookFormat, WebhookRecord};
use crate::host_api::tenant_allowlist;

/// What a webhook is: validated by `Service::check`.
#[derive(Clone, Debug)]
pub struct Spec {
    pub url: String,
    pub events: Vec<String>,
    pub functions: Option<Vec<String>>,
    pub format: WebhookFormat,
}

/// A change: `None` leaves a field as it is; `functions: Some(None)` means every function.
#[derive(Clone, Debug, Default)]
pub struct Change {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub functions: Option<Option<Vec<String>>>,
    pub format: Option<WebhookFormat>,
    pub enabled: Option<bool>,
}

/// The most deliveries one list answers.
pub const MAX_DELIVERY_PAGE: usize = 1000;

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("webhook {id:?} not found"))
}

impl Service {
    fn now(&self) -> u64 {
        self.shared.timers.clock().now_ms()
    }

    /// Refuse a URL that is not http(s), or whose `HOST:PORT` the tenant's outbound
    /// allowlist (the server's `--allow-outbound` restricted to the tenant's list) lacks.
    fn check(&self, tenant: &str, spec: &Spec) -> Result<(), Error> {
        let url = &spec.url;
        if url.len() > MAX_URL_BYTES {
            return Err(Error::BadRequest(format!(
                "the url is {} bytes; the limit is {MAX_URL_BYTES}",
                url.len()
            )));
        }
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::BadRequest(format!("url {url:?} does not parse: {e}")))?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.host().is_none_or(str::is_empty) {
            return Err(Error::BadRequest(format!(
                "url {url:?}: expected an absolute http:// or https:// URL"
            )));
        }
        if !tenant_allowlist(&self.shared, tenant).allows_uri(&uri) {
            return Err(Error::BadRequest(format!(
                "url {url:?}: its host and port are not in the outbound allowlist (the \
                 server's --allow-outbound, restricted to the tenant's outbound_allowlist); \
                 webhooks reach only what guests may reach"
            )));
        }
        if spec.events.is_empty() {
            return Err(Error::BadRequest(format!(
                "events: name at least one of {}",
                EVENTS.join(", ")
            )));
        }
        for e in &spec.events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(Error::BadRequest(format!(
                    "event {e:?} is not one of {}",
                    EVENTS.join(", ")
                )));
            }
        }
        for f in spec.functions.iter().flatten() {
            let ok = !f.is_empty()
                && f.len() <= 64
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(Error::BadRequest(format!(
                    "functions: {f:?} is not a function name"
                )));
            }
        }
        Ok(())
    }

    fn normalized(mut spec: Spec) -> Spec {
        spec.events.sort();
        spec.events.dedup();
        if let Some(fs) = &mut spec.functions {
            fs.sort();
            fs.dedup();
        }
        spec
    }

    /// A new webhook and its secret (`whsec_...`), which is shown this once.
    pub async fn create(&self, tenant: &str, spec: Spec) -> Result<(WebhookRecord, String), Error> {
        self.check(tenant, &spec)?;
        let spec = Self::normalized(spec);
        if self.shared.db.webhooks(tenant)?.len() >= MAX_WEBHOOKS_PER_TENANT {
            return Err(Error::Limit(format!(
                "a tenant may have at most {MAX_WEBHOOKS_PER_TENANT} webhooks"
            )));
        }
        let now = self.now();
        let rec = WebhookRecord {
            id: super::new_webhook_id(),
            tenant: tenant.to_string(),
            url: spec.url,
            events: spec.events,
            functions: spec.functions,
            format: spec.format,
            secret: sign::new_secret(),
            enabled: true,
            disabled_reason: None,
            created_ms: now,
            updated_ms: now,
        };
        let mut batch = Batch::new();
        batch.put_webhook(&rec);
        self.shared.db.commit(batch, Durability::Sync).await?;
        // The host only: a URL may carry a token (Slack's do).
        let host = rec.url.parse::<http::Uri>().ok();
        let host = host.as_ref().and_then(|u| u.host()).unwrap_or("");
        tracing::info!(tenant, webhook = %rec.id, host, "webhook created");
        let secret = sign::secret_string(&rec.secret);
        Ok((rec, secret))
    }

    pub fn get(&self, tenant: &str, id: &str) -> Result<WebhookRecord, Error> {
        self.shared
            .db
            .webhook(tenant, id)?
            .ok_or_else(|| not_found(id))
    }

    pub fn list(&self, tenant: &str) -> Result<Vec<WebhookRecord>, Error> {
        Ok(self.shared.db.webhooks(tenant)?)
    }

    pub async fn update(&self, tenant: &str, id: &str, c: Change) -> Result<WebhookRecord, Error> {
        let mut rec = self.get(tenant, id)?;
        let spec = Spec {
            url: c.url.unwrap_or(rec.url.clone()),
            events: c.events.unwrap_or(rec.events.clone()),
            functions: c.functions.unwrap_or(rec.functions.clone()),
            format: c.format.unwrap_or(rec.format),
        };
        self.check(tenant, &spec)?;
        let spec = Self::normalized(spec);
        rec.url = spec.url;
        rec.events = spec.events;
        rec.functions = spec.functions;
        rec.format = spec.format;
        if let Some(enabled) = c.enabled {
            rec.enabled = enabled;
            if enabled {
                rec.disabled_reason = None;
            } else if rec.disabled_reason.is_none() {
                rec.disabled_reason = Some("disabled by a request".into());
            }
        }
        rec.updated_ms = self.now();
        let mut batch = Batch::new();
        batch.put_webhook(&rec);
        self.shared.db.commit(batch, Durability::Sync).await?;
        Ok(rec)
    }

    /// Delete a webhook with its deliveries (pending ones are not sent).
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), Error> {
        self.get(tenant, id)?;
        let mut batch = Batch::new();
        for d in self.shared.db.deliveries(tenant, id) {
            let d = d?;
            if let Some(due) = d.next_attempt_ms {
                batch.del_outbox(due, &d.id);
            }
            batch.del_delivery(tenant, id, &d.id);
        }
        batch.del_webhook(tenant, id);
        self.shared.db.commit(batch, Durability::Sync).await?;
        tracing::info!(tenant, webhook = %id, "webhook deleted");
        Ok(())
    }

    /// A webhook's deliveries, newest first, optionally only those in `status`.
    pub fn deliveries(
        &self,
        tenant: &str,
        id: &str,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, Error> {
        self.get(tenant, id)?;
        let mut out = Vec::new();
        for d in self.shared.db.deliveries(tenant, id) {
            let d = d?;
            if status.is_none_or(|s| s == d.status) {
                out.push(d);
                if out.len() >= limit.min(MAX_DELIVERY_PAGE) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Send a delivery that failed (or was delivered) once more, now: one attempt.
    pub async fn retry(
        &self,
        tenant: &str,
        id: &str,
        delivery: &str,
    ) -> Result<DeliveryRecord, Error> {
        let hook = self.get(tenant, id)?;
        let mut d = self
            .shared
            .db
            .delivery(tenant, id, delivery)?
            .ok_or_else(|| Error::NotFound(format!("delivery {delivery:?} not found")))?;
        if d.status == DeliveryStatus::Pending {
            return Err(Error::Conflict(format!(
                "delivery {delivery:?} is pending already: its next attempt is scheduled"
            )));
        }
        if !hook.enabled {
            return Err(Error::Conflict(format!(
                "webhook {id:?} is disabled: enable it first (PATCH {{\"enabled\": true}})"
            )));
        }
        let now = self.now();
        d.status = DeliveryStatus::Pending;
        d.next_attempt_ms = Some(now);
        d.max_attempts = d.attempts.saturating_add(1);
        let mut batch = Batch::new();
        batch.put_delivery(&d);
        self.shared.db.commit(batch, Durability::Sync).await?;
        self.outbox.wake();
        Ok(d)
    }

    /// Send a `webhook.test` event to the webhook now (with the usual retries).
    pub async fn test(&self, tenant: &str, id: &str) -> Result<DeliveryRecord, Error> {
        let hook = self.get(tenant, id)?;
        if !hook.enabled {
            return Err(Error::Conflict(format!(
                "webhook {id:?} is disabled: enable it first (PATCH {{\"enabled\": true}})"
            )));
        }
        let now = self.now();
        let payload = serde_json::json!({
            "type": TEST_EVENT,
            "timestamp": super::timestamp(now),
            "data": {"webhook_id": hook.id, "message": "a test event from durable-host"},
        })
        .to_string();
        let d = self.outbox.delivery(&hook, TEST_EVENT, payload, now);
        let mut batch = Batch::new();
        batch.put_delivery(&d);
        self.shared.db.commit(batch, Durability::Sync).await?;
        self.outbox.wake();
        Ok(d)
    }
}
