//! Roles: every role's key on every operation of /v1/openapi.json, in its own tenant, on
//! objects that exist (made afresh where the operation consumes them): allowed (2xx) or
//! 403 `forbidden`, as DESIGN.md section 8's table says. The expectation is written here
//! as data (the class of each route, the classes each role may use), not taken from the
//! server's own `Role::may`. Without a key every operation but /healthz is 401.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::isolation::{
    call, new_key, spec_operations, tenant_with_owner, As, Key, Resp, WEBHOOK_DEST,
};
use crate::support::{guest_bytes, scenario, Server};

/// What an operation needs, in the words of DESIGN.md section 8's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// Nothing: no key either (`/healthz`).
    Nothing,
    /// Any valid key (`whoami`).
    AnyKey,
    /// "tenants, quotas, any tenant's keys, /metrics": admin keys only.
    Admin,
    /// Its own tenant's keys and view: "owner: everything inside its own tenant, including
    /// its keys".
    TenantKeys,
    ReadFunctions,
    WriteFunctions,
    Invoke,
    ReadExecutions,
    /// "executions (read, stop, redrive, fork)": stop, redrive, fork, bulk redrive.
    ControlExecutions,
    /// "complete and heartbeat callbacks".
    Callbacks,
    /// "webhooks" (developer, owner, admin).
    Webhooks,
    /// "schedules" (developer, owner, admin).
    Schedules,
}

use Needs::*;

/// Every operation of the API and what it needs. The test fails if the spec and this
/// table disagree, so a new route must be classed here.
const ROUTES: &[(&str, &str, Needs)] = &[
    ("GET", "/healthz", Nothing),
    ("GET", "/metrics", Admin),
    ("GET", "/v1/functions", ReadFunctions),
    ("GET", "/v1/functions/{name}", ReadFunctions),
    ("PUT", "/v1/functions/{name}", WriteFunctions),
    ("PATCH", "/v1/functions/{name}", WriteFunctions),
    ("DELETE", "/v1/functions/{name}", WriteFunctions),
    ("GET", "/v1/functions/{name}/uploads/{id}", ReadFunctions),
    ("POST", "/v1/functions/{name}/invoke", Invoke),
    ("GET", "/v1/executions", ReadExecutions),
    ("GET", "/v1/executions/{id}", ReadExecutions),
    ("GET", "/v1/executions/{id}/history", ReadExecutions),
    ("GET", "/v1/executions/{id}/logs", ReadExecutions),
    ("GET", "/v1/executions/{id}/events", ReadExecutions),
    ("POST", "/v1/executions/{id}/stop", ControlExecutions),
    ("POST", "/v1/executions/{id}/redrive", ControlExecutions),
    ("POST", "/v1/executions/{id}/fork", ControlExecutions),
    ("POST", "/v1/executions/redrive", ControlExecutions),
    ("GET", "/v1/jobs", ReadExecutions),
    ("GET", "/v1/jobs/{job_id}", ReadExecutions),
    ("POST", "/v1/callbacks/{id}/succeed", Callbacks),
    ("POST", "/v1/callbacks/{id}/fail", Callbacks),
    ("POST", "/v1/callbacks/{id}/heartbeat", Callbacks),
    ("POST", "/v1/tenants", Admin),
    ("GET", "/v1/tenants", Admin),
    ("GET", "/v1/tenants/{tenant}", TenantKeys),
    ("PATCH", "/v1/tenants/{tenant}", Admin),
    ("DELETE", "/v1/tenants/{tenant}", Admin),
    ("POST", "/v1/tenants/{tenant}/keys", TenantKeys),
    ("GET", "/v1/tenants/{tenant}/keys", TenantKeys),
    ("DELETE", "/v1/tenants/{tenant}/keys/{key_id}", TenantKeys),
    ("GET", "/v1/whoami", AnyKey),
    ("POST", "/v1/webhooks", Webhooks),
    ("GET", "/v1/webhooks", Webhooks),
    ("GET", "/v1/webhooks/{id}", Webhooks),
    ("PATCH", "/v1/webhooks/{id}", Webhooks),
    ("DELETE", "/v1/webhooks/{id}", Webhooks),
    ("GET", "/v1/webhooks/{id}/deliveries", Webhooks),
    (
        "POST",
        "/v1/webhooks/{id}/deliveries/{delivery}/retry",
        Webhooks,
    ),
    ("POST", "/v1/webhooks/{id}/test", Webhooks),
    ("GET", "/v1/schedules", Schedules),
    ("PUT", "/v1/schedules/{name}", Schedules),
    ("GET", "/v1/schedules/{name}", Schedules),
    ("PATCH", "/v1/schedules/{name}", Schedules),
    ("DELETE", "/v1/schedules/{name}", Schedules),
    ("POST", "/v1/schedules/{name}/trigger", Schedules),
];

/// DESIGN.md section 8: what each role may use (`Nothing` needs no role).
const ROLES: &[(&str, &[Needs])] = &[
    (
        "admin",
        &[
            AnyKey,
            Admin,
            TenantKeys,
            ReadFunctions,
            WriteFunctions,
            Invoke,
            ReadExecutions,
            ControlExecutions,
            Callbacks,
            Webhooks,
            Schedules,
        ],
    ),
    (
        "owner",
        &[
            AnyKey,
            TenantKeys,
            ReadFunctions,
            WriteFunctions,
            Invoke,
            ReadExecutions,
            ControlExecutions,
            Callbacks,
            Webhooks,
            Schedules,
        ],
    ),
    (
        "developer",
        &[
            AnyKey,
            ReadFunctions,
            WriteFunctions,
            Invoke,
            ReadExecutions,
            ControlExecutions,
            Callbacks,
            Webhooks,
            Schedules,
        ],
    ),
    ("invoker", &[AnyKey, Invoke, ReadExecutions]),
    ("callback", &[AnyKey, Callbacks]),
    ("reader", &[AnyKey, ReadFunctions, ReadExecutions]),
];

const TEAM: &str = "team";
const FUNCTION: &str = "rfn";
/// The fixture's schedule (paused: it fires when triggered only).
const SCHEDULE: &str = "rsched";

/// The tenant, a key of each role in it, and what stays: a function, a finished execution
/// (with logs), a callback with a heartbeat timeout.
struct Fixture<'a> {
    s: &'a Server,
    keys: Vec<(&'static str, Key)>,
    finished: String,
    heartbeat_cb: String,
    webhook: String,
}

impl Fixture<'_> {
    /// The bootstrap admin acting in `TEAM`: what sets up each case.
    fn setup(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Resp {
        call(
            self.s,
            Some(&self.s.admin_key),
            method,
            path,
            body,
            &[("Durable-Tenant", TEAM)],
        )
    }

    fn admin(&self) -> As<'_> {
        As {
            s: self.s,
            key: self.keys[0].1.key.clone(),
        }
    }

    /// A new execution of `input`, once it is suspended.
    fn suspended(&self, input: Value) -> String {
        let a = self.admin();
        let id = a.invoke(FUNCTION, &input);
        a.wait_status(&id, &["suspended"]);
        id
    }

    /// The callback of a new execution that waits for one.
    fn pending_callback(&self, params: Value) -> String {
        let a = self.admin();
        let id = a.invoke(FUNCTION, &scenario("callback", params));
        let cb = a.callback_id(&id);
        a.wait_status(&id, &["suspended"]);
        cb
    }

    /// A new schedule of `TEAM`, paused, named `name`.
    fn new_schedule(&self, name: &str) -> String {
        let body = json!({"function": FUNCTION, "cron": "0 0 1 1 *", "overlap": "skip",
                          "catch_up": "none", "paused": true,
                          "input": scenario("echo", json!({"value": 1}))});
        let path = format!("/v1/schedules/{name}");
        let r = self.setup("PUT", &path, Some(body.to_string().into_bytes()));
        assert_eq!(r.status, 201, "{r}");
        name.to_string()
    }

    /// A new webhook of `TEAM` (to a port nobody listens on).
    fn new_webhook(&self) -> String {
        let body =
            json!({"url": format!("http://{WEBHOOK_DEST}/"), "events": ["execution.failed"]});
        let r = self.setup("POST", "/v1/webhooks", Some(body.to_string().into_bytes()));
        assert_eq!(r.status, 201, "{r}");
        r.json()["id"].as_str().unwrap().to_string()
    }

    /// A failed delivery of the fixture's webhook (a test event whose attempts all failed).
    fn failed_delivery(&self) -> String {
        let r = self.setup("POST", &format!("/v1/webhooks/{}/test", self.webhook), None);
        assert_eq!(r.status, 202, "{r}");
        let id = r.json()["id"].as_str().unwrap().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let r = self.setup(
                "GET",
                &format!("/v1/webhooks/{}/deliveries?status=failed", self.webhook),
                None,
            );
            if r.json()["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == id.as_str())
            {
                return id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "delivery {id} never failed"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The request `role`'s key makes for the operation, with what it acts on made first.
    fn request(&self, op: (&str, &str), role: &str) -> (String, Option<Vec<u8>>) {
        let j = |v: Value| Some(v.to_string().into_bytes());
        match op {
            ("GET", "/healthz") => ("/healthz".into(), None),
            ("GET", "/metrics") => ("/metrics".into(), None),
            ("GET", "/v1/functions") => ("/v1/functions".into(), None),
            ("GET", "/v1/functions/{name}") => (format!("/v1/functions/{FUNCTION}"), None),
            ("PUT", "/v1/functions/{name}") => (
                format!("/v1/functions/up-{role}"),
                Some(guest_bytes("hello")),
            ),
            ("PATCH", "/v1/functions/{name}") => (
                format!("/v1/functions/{FUNCTION}"),
                j(json!({"retention_secs": 3600})),
            ),
            ("DELETE", "/v1/functions/{name}") => {
                let name = format!("doomed-{role}");
                let r = self.setup(
                    "PUT",
                    &format!("/v1/functions/{name}"),
                    Some(guest_bytes("hello")),
                );
                assert_eq!(r.status, 201, "{r}");
                (format!("/v1/functions/{name}"), None)
            }
            ("POST", "/v1/functions/{name}/invoke") => (
                format!("/v1/functions/{FUNCTION}/invoke"),
                j(scenario("echo", json!({"value": role}))),
            ),
            ("GET", "/v1/executions") => ("/v1/executions".into(), None),
            ("GET", "/v1/executions/{id}") => (format!("/v1/executions/{}", self.finished), None),
            ("GET", "/v1/executions/{id}/history") => {
                (format!("/v1/executions/{}/history", self.finished), None)
            }
            ("GET", "/v1/executions/{id}/logs") => {
                (format!("/v1/executions/{}/logs", self.finished), None)
            }
            ("GET", "/v1/executions/{id}/events") => {
                (format!("/v1/executions/{}/events", self.finished), None)
            }
            ("POST", "/v1/executions/{id}/stop") => {
                let id = self.suspended(scenario("wait", json!({"ms": 600_000})));
                (format!("/v1/executions/{id}/stop"), None)
            }
            ("POST", "/v1/executions/{id}/redrive") => {
                let id = self.suspended(scenario("wait", json!({"ms": 600_000})));
                let r = self.setup("POST", &format!("/v1/executions/{id}/stop"), None);
                assert_eq!(r.status, 200, "{r}");
                (format!("/v1/executions/{id}/redrive"), None)
            }
            ("POST", "/v1/executions/{id}/fork") => {
                (format!("/v1/executions/{}/fork", self.finished), None)
            }
            ("POST", "/v1/executions/redrive") => (
                "/v1/executions/redrive".into(),
                j(json!({"function": FUNCTION, "status": "timed_out"})),
            ),
            ("GET", "/v1/jobs") => ("/v1/jobs".into(), None),
            ("GET", "/v1/functions/{name}/uploads/{id}") => {
                let name = format!("uploaded-{role}");
                let path = format!("/v1/functions/{name}?async=true");
                let r = self.setup("PUT", &path, Some(guest_bytes("hello")));
                assert_eq!(r.status, 202, "{r}");
                let id = r.json()["upload_id"].as_str().unwrap().to_string();
                (format!("/v1/functions/{name}/uploads/{id}"), None)
            }
            ("GET", "/v1/jobs/{job_id}") => {
                let body = json!({"function": FUNCTION, "status": "timed_out"});
                let r = self.setup("POST", "/v1/executions/redrive", j(body));
                assert_eq!(r.status, 202, "{r}");
                (
                    format!("/v1/jobs/{}", r.json()["job_id"].as_str().unwrap()),
                    None,
                )
            }
            ("POST", "/v1/callbacks/{id}/succeed") => {
                let cb = self.pending_callback(json!({}));
                (format!("/v1/callbacks/{cb}/succeed"), j(json!(role)))
            }
            ("POST", "/v1/callbacks/{id}/fail") => {
                let cb = self.pending_callback(json!({"catch": true}));
                (
                    format!("/v1/callbacks/{cb}/fail"),
                    j(json!({"error_type": "No", "error_message": role})),
                )
            }
            ("POST", "/v1/callbacks/{id}/heartbeat") => (
                format!("/v1/callbacks/{}/heartbeat", self.heartbeat_cb),
                None,
            ),
            ("POST", "/v1/tenants") => (
                "/v1/tenants".into(),
                j(json!({"name": format!("by-{role}")})),
            ),
            ("GET", "/v1/tenants") => ("/v1/tenants".into(), None),
            ("GET", "/v1/tenants/{tenant}") => (format!("/v1/tenants/{TEAM}"), None),
            ("PATCH", "/v1/tenants/{tenant}") => (
                format!("/v1/tenants/{TEAM}"),
                j(json!({"quotas": {"max_functions": 1000}})),
            ),
            ("DELETE", "/v1/tenants/{tenant}") => {
                let name = format!("doomed-{role}");
                let r = self.setup("POST", "/v1/tenants", j(json!({ "name": name })));
                assert_eq!(r.status, 201, "{r}");
                (format!("/v1/tenants/{name}"), None)
            }
            ("POST", "/v1/tenants/{tenant}/keys") => (
                format!("/v1/tenants/{TEAM}/keys"),
                j(json!({"role": "reader", "name": format!("made by {role}")})),
            ),
            ("GET", "/v1/tenants/{tenant}/keys") => (format!("/v1/tenants/{TEAM}/keys"), None),
            ("DELETE", "/v1/tenants/{tenant}/keys/{key_id}") => {
                let k = new_key(self.s, &self.s.admin_key, TEAM, "reader");
                (format!("/v1/tenants/{TEAM}/keys/{}", k.id), None)
            }
            ("GET", "/v1/whoami") => ("/v1/whoami".into(), None),
            ("POST", "/v1/webhooks") => (
                "/v1/webhooks".into(),
                j(
                    json!({"url": format!("http://{WEBHOOK_DEST}/{role}"), "events": ["execution.failed"]}),
                ),
            ),
            ("GET", "/v1/webhooks") => ("/v1/webhooks".into(), None),
            ("GET", "/v1/webhooks/{id}") => (format!("/v1/webhooks/{}", self.webhook), None),
            ("PATCH", "/v1/webhooks/{id}") => (
                format!("/v1/webhooks/{}", self.webhook),
                j(json!({"events": ["execution.failed", "execution.timed_out"]})),
            ),
            ("DELETE", "/v1/webhooks/{id}") => {
                (format!("/v1/webhooks/{}", self.new_webhook()), None)
            }
            ("GET", "/v1/webhooks/{id}/deliveries") => {
                (format!("/v1/webhooks/{}/deliveries", self.webhook), None)
            }
            ("POST", "/v1/webhooks/{id}/deliveries/{delivery}/retry") => (
                format!(
                    "/v1/webhooks/{}/deliveries/{}/retry",
                    self.webhook,
                    self.failed_delivery()
                ),
                None,
            ),
            ("POST", "/v1/webhooks/{id}/test") => {
                (format!("/v1/webhooks/{}/test", self.webhook), None)
            }
            ("GET", "/v1/schedules") => ("/v1/schedules".into(), None),
            ("PUT", "/v1/schedules/{name}") => (
                format!("/v1/schedules/by-{role}"),
                j(
                    json!({"function": FUNCTION, "cron": "0 0 1 1 *", "overlap": "skip",
                         "catch_up": "none", "paused": true}),
                ),
            ),
            ("GET", "/v1/schedules/{name}") => (format!("/v1/schedules/{SCHEDULE}"), None),
            ("PATCH", "/v1/schedules/{name}") => (
                format!("/v1/schedules/{SCHEDULE}"),
                j(json!({"paused": true})),
            ),
            ("DELETE", "/v1/schedules/{name}") => (
                format!(
                    "/v1/schedules/{}",
                    self.new_schedule(&format!("doomed-{role}"))
                ),
                None,
            ),
            ("POST", "/v1/schedules/{name}/trigger") => {
                (format!("/v1/schedules/{SCHEDULE}/trigger"), None)
            }
            other => panic!("no request for {other:?}: add one to Fixture::request"),
        }
    }
}

#[test]
fn each_role_may_do_what_the_design_table_says_and_nothing_else() {
    // Deliveries to WEBHOOK_DEST fail at once (nobody listens) and give up after 2 attempts.
    let s = Server::start_with(&[
        "--allow-outbound",
        WEBHOOK_DEST,
        "--webhook-retry-schedule",
        "1ms",
    ]);
    let spec = spec_operations(&s);
    let classed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(classed.len(), ROUTES.len(), "a route is classed twice");
    let unclassed: Vec<_> = spec.difference(&classed).collect();
    let stale: Vec<_> = classed.difference(&spec).collect();
    assert!(
        unclassed.is_empty() && stale.is_empty(),
        "ROUTES must class exactly the spec's operations: unclassed {unclassed:?}, not in the \
         spec {stale:?}"
    );

    let owner = tenant_with_owner(&s, TEAM);
    let mut keys = vec![("admin", new_key(&s, &s.admin_key, TEAM, "admin"))];
    keys.push(("owner", owner));
    for role in ["developer", "invoker", "callback", "reader"] {
        keys.push((role, new_key(&s, &s.admin_key, TEAM, role)));
    }
    let mut fx = Fixture {
        s: &s,
        keys,
        finished: String::new(),
        heartbeat_cb: String::new(),
        webhook: String::new(),
    };
    let a = fx.admin();
    a.deploy(FUNCTION, "conformance_guest");
    fx.finished = a.run(FUNCTION, &scenario("stdout", json!({"text": "hi"})))["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    fx.heartbeat_cb = fx.pending_callback(json!({"heartbeat_timeout_ms": 600_000}));
    fx.webhook = fx.new_webhook();
    fx.new_schedule(SCHEDULE);

    let mut failures = Vec::new();
    let mut tally = (0, 0);
    for (role, key) in &fx.keys {
        let may = ROLES
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, m)| *m)
            .unwrap();
        for (method, template, needs) in ROUTES {
            let allowed = *needs == Nothing || may.contains(needs);
            let (path, body) = fx.request((method, template), role);
            let r = call(&s, Some(&key.key), method, &path, body, &[]);
            let ok = if allowed {
                tally.0 += 1;
                (200..300).contains(&r.status)
            } else {
                tally.1 += 1;
                r.status == 403
                    && r.json()["error"]["code"] == "forbidden"
                    && r.header("www-authenticate").is_none()
            };
            if !ok {
                let want = if allowed { "2xx" } else { "403 forbidden" };
                failures.push(format!("{role} {method} {path}: want {want}, got {r}"));
            }
            if *template == "/v1/whoami" && r.json()["role"] != *role {
                failures.push(format!("{role}: whoami says {r}"));
            }
        }
    }
    // The description itself is not among its own paths: any key, whatever its role.
    for (role, key) in &fx.keys {
        let r = call(&s, Some(&key.key), "GET", "/v1/openapi.json", None, &[]);
        if r.status != 200 {
            failures.push(format!("{role} GET /v1/openapi.json: got {r}"));
        }
    }
    let r = call(&s, None, "GET", "/v1/openapi.json", None, &[]);
    if r.status != 401 {
        failures.push(format!("no key GET /v1/openapi.json: got {r}"));
    }
    // No key at all: 401 everywhere but /healthz.
    for (method, template, needs) in ROUTES {
        let (path, body) = fx.request((method, template), "nobody");
        let r = call(&s, None, method, &path, body, &[]);
        let ok = if *needs == Nothing {
            r.status == 200
        } else {
            r.status == 401
                && r.json()["error"]["code"] == "unauthorized"
                && r.header("www-authenticate") == Some("Bearer")
        };
        if !ok {
            failures.push(format!("no key {method} {path}: got {r}"));
        }
    }
    eprintln!(
        "roles matrix: {} roles x {} operations: {} allowed, {} forbidden, {} failures",
        fx.keys.len(),
        ROUTES.len(),
        tally.0,
        tally.1,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_owner_manages_its_own_tenant_but_not_admin_keys_nor_other_tenants() {
    let s = Server::start();
    let owner = tenant_with_owner(&s, TEAM);
    tenant_with_owner(&s, "other");
    let admin_in_team = new_key(&s, &s.admin_key, TEAM, "admin");
    let o = As {
        s: &s,
        key: owner.key.clone(),
    };

    // It may not create an admin key, nor revoke one of its own tenant.
    let r = o.post(
        &format!("/v1/tenants/{TEAM}/keys"),
        &json!({"role": "admin", "name": "escalate"}),
    );
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(r.json()["error"]["code"], "forbidden");
    let r = o.call(
        "DELETE",
        &format!("/v1/tenants/{TEAM}/keys/{}", admin_in_team.id),
        None,
    );
    assert_eq!(r.status, 403, "{r}");
    let r = call(&s, Some(&admin_in_team.key), "GET", "/v1/whoami", None, &[]);
    assert_eq!(r.status, 200, "the admin key was revoked after all: {r}");
    let listed = o.get(&format!("/v1/tenants/{TEAM}/keys")).json();
    let roles: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "admin").count(),
        1,
        "{listed}"
    );

    // Other roles it may create and revoke.
    for role in ["owner", "developer", "invoker", "callback", "reader"] {
        let k = new_key(&s, &owner.key, TEAM, role);
        let r = call(&s, Some(&k.key), "GET", "/v1/whoami", None, &[]);
        assert_eq!(r.json()["role"], role, "{r}");
        let r = o.call("DELETE", &format!("/v1/tenants/{TEAM}/keys/{}", k.id), None);
        assert_eq!(r.status, 204, "{r}");
    }

    // Its own tenant's view, with usage; another tenant's (existing or not) is not found.
    let r = o.get(&format!("/v1/tenants/{TEAM}"));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["name"], TEAM);
    assert!(r.json()["usage"].is_object(), "{r}");
    let other = o.get("/v1/tenants/other");
    let never = o.get("/v1/tenants/nevah");
    assert_eq!(other.status, 404, "{other}");
    assert_eq!(never.status, 404, "{never}");
    assert_eq!(
        other.text().replace("other", "nevah"),
        never.text(),
        "another tenant's 404 differs from a never-existing one's"
    );
    // And it may not list tenants, nor change its own quotas.
    assert_eq!(o.get("/v1/tenants").status, 403);
    let r = o.call(
        "PATCH",
        &format!("/v1/tenants/{TEAM}"),
        Some(
            json!({"quotas": {"max_functions": 1}})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(r.status, 403, "{r}");
}
