//! Idempotency under concurrency and the API's edges (findings 1 and 13).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Barrier;

use serde_json::{json, Value};

use crate::support::*;

/// One invoke with an `Idempotency-Key` and a raw body: (status, answer).
fn keyed_invoke(
    client: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    body: &str,
) -> (u16, Value) {
    let resp = client
        .post(format!("{url}/v1/functions/conf/invoke"))
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .expect("invoke");
    let status = resp.status().as_u16();
    (status, resp.json().expect("a JSON answer"))
}

/// Every execution of the server, through every page.
fn all_executions(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/v1/executions?limit=1000".to_string();
    loop {
        let (st, page) = s.get(&path);
        assert_eq!(st, 200, "{page}");
        out.extend(page["executions"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/executions?limit=1000&cursor={c}"),
            None => return out,
        }
    }
}

/// `rounds` rounds; in each, `at_once` threads send their invoke for the round's key
/// together (a barrier per round). `body(round, thread)` is the raw body each sends (any
/// spacing). Returns, per key, every thread's (thread, status, answer).
fn race(
    s: &Server,
    prefix: &str,
    rounds: usize,
    at_once: usize,
    body: impl Fn(usize, usize) -> String + Sync,
) -> BTreeMap<String, Vec<(usize, u16, Value)>> {
    let barrier = Barrier::new(at_once);
    let answers = std::sync::Mutex::new(BTreeMap::<String, Vec<(usize, u16, Value)>>::new());
    std::thread::scope(|scope| {
        for t in 0..at_once {
            let (barrier, answers, body) = (&barrier, &answers, &body);
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for round in 0..rounds {
                    let key = format!("{prefix}-{round}");
                    barrier.wait();
                    let (st, v) = keyed_invoke(&client, &s.url, &key, &body(round, t));
                    answers
                        .lock()
                        .unwrap()
                        .entry(key)
                        .or_default()
                        .push((t, st, v));
                }
            });
        }
    });
    answers.into_inner().unwrap()
}

/// Same key, same JSON value (spacing varies by thread): every answer is a 2xx naming the
/// same execution, and exactly one execution exists per key. Before the fix a claim whose
/// execution was not written yet was taken over as a crash leftover: 159 of 200 keys got
/// two executions with 2 at once, up to 24 for one key with 50 at once.
#[test]
fn finding_01_concurrent_invokes_with_one_key_create_exactly_one_execution() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let body = |round: usize, t: usize| {
        let space = " ".repeat(t % 3);
        format!(r#"{{"scenario":{space}"echo", "value":{space}{round}}}"#)
    };
    let mut keys = BTreeMap::new();
    for (prefix, rounds, at_once) in [("eight", 100, 8), ("fifty", 1, 50)] {
        let answers = race(&s, prefix, rounds, at_once, body);
        assert_eq!(answers.len(), rounds);
        for (key, answers) in answers {
            assert_eq!(answers.len(), at_once);
            let ids: BTreeSet<&str> = answers
                .iter()
                .map(|(_, st, v)| {
                    assert!(*st == 200 || *st == 202, "{key}: {st} {v}");
                    v["execution_id"].as_str().unwrap()
                })
                .collect();
            assert_eq!(ids.len(), 1, "{key}: {} executions: {ids:?}", ids.len());
            keys.insert(key, ids.into_iter().next().unwrap().to_string());
        }
    }
    // Nothing else was created: one execution per key, the one every answer named.
    let listed: BTreeSet<String> = all_executions(&s)
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_string())
        .collect();
    let named: BTreeSet<String> = keys.values().cloned().collect();
    assert_eq!(listed.len(), 101);
    assert_eq!(listed, named);
    // Each ran once, with its own input.
    let id = &keys["eight-7"];
    let ex = s.wait_done(id);
    assert_eq!(
        (&ex["status"], &ex["output"]),
        (&json!("succeeded"), &json!(7))
    );
    let started = types(&s.history(id))
        .iter()
        .filter(|t| *t == "ExecutionStarted")
        .count();
    assert_eq!(started, 1);
}

/// Same key, two different inputs raced: one input wins; every request with it is answered
/// with the one execution, every request with the other gets 409, and nothing else is
/// created.
#[test]
fn finding_01_concurrent_invokes_with_one_key_and_different_inputs_get_409() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let (rounds, at_once) = (30, 8);
    let input =
        |round: usize, t: usize| format!(r#"{{"scenario":"echo","value":[{round},{}]}}"#, t % 2);
    let answers = race(&s, "mixed", rounds, at_once, input);
    let mut ids = BTreeSet::new();
    for (key, answers) in answers {
        assert_eq!(answers.len(), at_once);
        let created: BTreeSet<(&str, u64)> = answers
            .iter()
            .filter(|(_, st, _)| *st == 200 || *st == 202)
            .map(|(_, _, v)| {
                let input = v["input"]["value"][1].as_u64().unwrap();
                (v["execution_id"].as_str().unwrap(), input)
            })
            .collect();
        assert_eq!(created.len(), 1, "{key}: {answers:?}");
        let (id, won) = created.into_iter().next().unwrap();
        // Exactly the requests with the winning input were answered with its execution.
        for (t, st, v) in &answers {
            if (t % 2) as u64 == won {
                assert!(*st == 200 || *st == 202, "{key}: {st} {v}");
            } else {
                assert_eq!(
                    (*st, &v["error"]["code"]),
                    (409, &json!("conflict")),
                    "{key}: {v}"
                );
            }
        }
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), rounds);
    assert_eq!(all_executions(&s).len(), rounds);
}
