//! `/metrics` latency histograms end to end: hello (a step, a 1 s wait, a step) runs a few
//! times, and each histogram's series agree with what the executions' histories show and
//! with the counters beside them.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// One histogram's series, by their labels other than `le`: the `(le, cumulative count)`
/// buckets in order, the sum and the count.
#[derive(Debug, Default)]
struct Series {
    buckets: Vec<(String, u64)>,
    sum: Option<f64>,
    count: Option<u64>,
}

fn histogram(text: &str, name: &str) -> BTreeMap<String, Series> {
    assert!(
        text.lines()
            .any(|l| l == format!("# TYPE {name} histogram")),
        "# TYPE {name} histogram in\n{text}"
    );
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let (metric, labels) = series.split_once('{').unwrap_or((series, "}"));
        let labels = labels.strip_suffix('}').expect("closed labels");
        let suffix = match metric.strip_prefix(name) {
            Some(s @ ("_bucket" | "_sum" | "_count")) => s,
            _ => continue,
        };
        let (mut rest, mut le) = (Vec::new(), None);
        for l in labels.split(',').filter(|l| !l.is_empty()) {
            match l.strip_prefix("le=") {
                Some(v) => le = Some(v.trim_matches('"').to_string()),
                None => rest.push(l),
            }
        }
        let s = out.entry(rest.join(",")).or_default();
        match suffix {
            "_bucket" => s
                .buckets
                .push((le.expect("a bucket has le"), value.parse().expect(line))),
            "_sum" => s.sum = Some(value.parse().expect(line)),
            _ => s.count = Some(value.parse().expect(line)),
        }
    }
    for (labels, s) in &out {
        let count = s
            .count
            .unwrap_or_else(|| panic!("{name}{{{labels}}}_count"));
        assert!(s.sum.is_some_and(|v| v >= 0.0), "{name}{{{labels}}}_sum");
        assert!(s.buckets.len() > 1, "{name}{{{labels}}} buckets");
        assert!(
            s.buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}{{{labels}}} buckets are cumulative: {:?}",
            s.buckets
        );
        let bounds: Vec<f64> = s.buckets[..s.buckets.len() - 1]
            .iter()
            .map(|(le, _)| le.parse().expect("a numeric le"))
            .collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?} ascend");
        assert_eq!(
            s.buckets.last().unwrap(),
            &("+Inf".to_string(), count),
            "{name}{{{labels}}} ends with +Inf = _count"
        );
    }
    out
}

fn total(h: &BTreeMap<String, Series>) -> u64 {
    h.values().map(|s| s.count.unwrap()).sum()
}

fn scrape(s: &Server) -> String {
    s.client()
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn latency_histograms_count_what_the_histories_show() {
    const RUNS: usize = 3;
    let s = Server::start();
    s.deploy("hello", "hello");
    let ids: Vec<String> = (0..RUNS).map(|_| s.invoke("hello", &json!({}))).collect();
    let (mut activations, mut steps) = (0, 0);
    for id in &ids {
        assert_eq!(s.wait_done(id)["status"], "succeeded");
        let types = types(&s.history(id));
        activations += types.iter().filter(|t| *t == "InvocationCompleted").count() as u64;
        steps += types.iter().filter(|t| *t == "StepStarted").count() as u64;
    }
    assert_eq!((activations, steps), (2 * RUNS as u64, 2 * RUNS as u64));

    // The last activation's timer is dropped as it returns, just after its end is visible:
    // wait (bounded) for the counts to settle, then check them all on one scrape.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&s);
        let a = total(&histogram(&text, "durable_activation_duration_seconds"));
        let f = total(&histogram(&text, "durable_fsync_duration_seconds"));
        let settled =
            a == activations && metric_in(&text, "durable_fsyncs_total") == Some(f as f64);
        if settled || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let labels = "tenant=\"default\",function=\"hello\"";
    for (name, want) in [
        ("durable_activation_duration_seconds", activations),
        ("durable_step_attempt_duration_seconds", steps),
        ("durable_instantiate_duration_seconds", activations),
    ] {
        let h = histogram(&text, name);
        assert_eq!(h.keys().collect::<Vec<_>>(), [labels], "{name}");
        assert_eq!(h[labels].count, Some(want), "{name}");
    }
    assert_eq!(
        metric_in(&text, "durable_activations_total"),
        Some(activations as f64)
    );
    // Every activation was queued once, first on invoke and then on its wait's timer.
    let waits = histogram(&text, "durable_queue_wait_seconds");
    assert_eq!(waits[labels].count, Some(activations), "{waits:?}");

    let commits = histogram(&text, "durable_commit_duration_seconds");
    let fsyncs = histogram(&text, "durable_fsync_duration_seconds");
    assert_eq!(commits.keys().collect::<Vec<_>>(), [""], "no labels");
    assert_eq!(fsyncs.keys().collect::<Vec<_>>(), [""], "no labels");
    assert!(total(&commits) > 0 && total(&fsyncs) > 0);
    // Both count the same fdatasyncs (the write-ahead log's; checkpoints are apart).
    assert_eq!(
        metric_in(&text, "durable_fsyncs_total"),
        Some(total(&fsyncs) as f64)
    );
    // A commit fsyncs at most once.
    assert!(total(&fsyncs) <= total(&commits));
}
