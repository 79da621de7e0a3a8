//! Fair scheduling between tenants (DESIGN.md section 8): with two resident slots, tenant A
//! queues 2,000 executions of a multi-step guest while tenant B runs 50 short ones, one
//! after another; B's median latency stays within a generous bound of B's alone, measured
//! in the same test. A first-come-first-served queue would make B wait for A's backlog
//! (seconds); a fair one, for about one of A's activations.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::isolation::{call, tenant_with_owner, As};
use crate::support::{scenario, Server};

/// A's backlog: executions of `steps` with `A_STEPS` durable steps each.
const A_EXECUTIONS: usize = 2_000;
const A_STEPS: u64 = 10;
/// B's runs, measured alone and behind A's backlog.
const B_RUNS: usize = 50;
const RESIDENT: &str = "2";

/// `n` sequential runs of a one-step execution for `who` (invoke with `?wait`): each
/// latency, sorted.
fn latencies(who: &As, n: usize) -> Vec<Duration> {
    let input = scenario("step-basic", json!({"name": "b"}));
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let r = who.post("/v1/functions/work/invoke?wait=30", &input);
            let d = t.elapsed();
            assert_eq!(r.status, 200, "{r}");
            assert_eq!(r.json()["status"], "succeeded", "{r}");
            d
        })
        .collect();
    v.sort();
    v
}

fn p(v: &[Duration], pct: usize) -> Duration {
    v[(v.len() - 1) * pct / 100]
}

/// A gauge or counter of /metrics (the admin key), summed over its labels.
fn metric(s: &Server, name: &str) -> f64 {
    let r = call(s, Some(&s.admin_key), "GET", "/metrics", None, &[]);
    assert_eq!(r.status, 200, "{r}");
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let base = key.split('{').next()?;
            (base == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// How many of `tenant`'s executions have `status` (one page of up to 1,000 is enough to
/// tell "many" from "few": the count is capped at 1,000).
fn count(who: &As, status: &str) -> usize {
    let r = who.get(&format!("/v1/executions?status={status}&limit=1000"));
    assert_eq!(r.status, 200, "{r}");
    r.json()["executions"].as_array().unwrap().len()
}

#[test]
fn a_tenants_backlog_does_not_delay_another_tenant() {
    let started = Instant::now();
    let s = Server::start_with(&["--max-resident", RESIDENT]);
    let a = As {
        s: &s,
        key: tenant_with_owner(&s, "backlog").key,
    };
    let b = As {
        s: &s,
        key: tenant_with_owner(&s, "interactive").key,
    };
    a.deploy("work", "conformance_guest");
    b.deploy("work", "conformance_guest");
    // Warm up both (the first activation of a function loads it).
    a.run("work", &scenario("steps", json!({"count": A_STEPS})));
    latencies(&b, 5);

    let alone = latencies(&b, B_RUNS);

    // A's backlog, invoked from a few clients at once.
    let t = Instant::now();
    let input: Value = scenario("steps", json!({"count": A_STEPS}));
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (a, input) = (&a, &input);
            scope.spawn(move || {
                for _ in (i..A_EXECUTIONS).step_by(8) {
                    a.invoke("work", input);
                }
            });
        }
    });
    let queued_in = t.elapsed();
    let queued_before = metric(&s, "durable_queued_activations");
    assert!(
        queued_before >= 500.0,
        "A's backlog is not real: {queued_before} queued after invoking {A_EXECUTIONS}"
    );

    let t = Instant::now();
    let behind = latencies(&b, B_RUNS);
    let b_took = t.elapsed();
    let queued_after = metric(&s, "durable_queued_activations");
    let a_done = count(&a, "succeeded");
    // The backlog lasted the whole of B's runs.
    assert!(
        queued_after >= 100.0,
        "A's backlog ran out while B ran: {queued_after} queued at the end"
    );

    let (p50_alone, p50_behind) = (p(&alone, 50), p(&behind, 50));
    let slowest = *behind.last().unwrap();
    eprintln!(
        "fairness: B p50 alone {p50_alone:?} (p90 {:?}); behind A's backlog {p50_behind:?} \
         (p90 {:?}, max {slowest:?}), ratio {:.2}; A queued {A_EXECUTIONS} in {queued_in:?}, {queued_before} \
         waiting before B's runs, {queued_after} after ({b_took:?}); A finished {a_done} \
         meanwhile (of the first 1,000 counted)",
        p(&alone, 90),
        p(&behind, 90),
        p50_behind.as_secs_f64() / p50_alone.as_secs_f64()
    );
    // Generous: one of A's activations (10 durable steps) plus noise, never A's backlog
    // (about 1,000 activations per slot).
    let bound = p50_alone * 5 + Duration::from_millis(250);
    assert!(
        p50_behind <= bound,
        "B's p50 behind A's backlog is {p50_behind:?}, over {bound:?} (alone: {p50_alone:?})"
    );
    // And no single run waited for the backlog (first come, first served: the first of B's
    // runs would wait for all of it, about 10 s here, and the rest none).
    assert!(
        slowest <= Duration::from_secs(3),
        "one of B's runs took {slowest:?} behind A's backlog"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
