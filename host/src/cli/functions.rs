//! `deploy`, `functions` and `delete`: the function registry over HTTP.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::client::{Reply, Request};
use super::spinner::Spinner;
use super::{render, Ctx, Error, Exit};

/// How long an upload may take: the server compiles the component before it is ready.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// Files at least this large are uploaded in the background (`?async=true`) and polled
/// with a spinner: a component that bundles an interpreter compiles for seconds, and the
/// request then ends as soon as the bytes are in. Smaller ones compile in milliseconds.
const BACKGROUND_BYTES: usize = 4 * 1024 * 1024;

/// Between two looks at a background upload.
const POLL: Duration = Duration::from_millis(200);

/// `deploy NAME FILE`: `PUT /v1/functions/{name}` with the file's bytes (large files in the
/// background, then polled until compiled). The output is the same either way.
pub fn deploy(ctx: &Ctx, name: &str, file: &Path) -> Result<Exit, Error> {
    let bytes = std::fs::read(file)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
    let background = bytes.len() >= BACKGROUND_BYTES;
    let path = ["v1", "functions", name];
    let request = Request::new(Method::PUT, &path)
        .body(bytes, "application/wasm")
        .timeout(Some(DEPLOY_TIMEOUT))
        .query("async", background.then(|| "true".to_string()));
    let reply = {
        let _spinner = background.then(|| Spinner::start(format!("uploading {name}")));
        ctx.client.send(request)?
    };
    let upload = (reply.status == 202).then(|| reply.body["upload_id"].clone());
    let reply = if reply.status == 202 {
        let _spinner = Spinner::start(format!("compiling {name}"));
        compiled(ctx, name, &reply.body)?
    } else {
        reply
    };
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        let mut out = render::deployed(&reply.body, reply.status == 201);
        if let Some(Value::String(id)) = upload {
            out.push_str(&format!("compiled in the background: upload {id}\n"));
        }
        ctx.print(&out)?;
    }
    Ok(Exit::Success)
}

/// Poll the background upload `accepted` until it ends; ready: the version as the
/// synchronous upload answers it (with the function's settings and `created`), failed: the
/// error it would have answered.
fn compiled(ctx: &Ctx, name: &str, accepted: &Value) -> Result<Reply, Error> {
    let id = accepted["upload_id"]
        .as_str()
        .ok_or_else(|| Error::Response(format!("no upload_id in {accepted}")))?;
    let until = Instant::now() + DEPLOY_TIMEOUT;
    let upload = loop {
        let r = ctx
            .client
            .send(Request::get(&["v1", "functions", name, "uploads", id]))?;
        match r.body["status"].as_str() {
            Some("compiling") if Instant::now() < until => std::thread::sleep(POLL),
            Some("compiling") => {
                return Err(Error::Http(format!(
                    "upload {id} still compiling after {} s",
                    DEPLOY_TIMEOUT.as_secs()
                )))
            }
            Some("ready") => break r.body,
            Some("failed") => {
                let code = r.body["error"]["code"].as_str().unwrap_or("internal");
                return Err(Error::Api {
                    status: failed_status(code),
                    code: code.to_string(),
                    message: r.body["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    hint: None,
                });
            }
            _ => return Err(Error::Response(format!("unexpected upload: {}", r.text))),
        }
    };
    let f = ctx.client.send(Request::get(&["v1", "functions", name]))?;
    let mut v = f
        .array("versions")?
        .iter()
        .find(|v| v["version"] == upload["version"])
        .cloned()
        .ok_or_else(|| {
            Error::Response(format!("no version {} in {}", upload["version"], f.text))
        })?;
    let created = upload["created"].as_bool().unwrap_or(true);
    v["settings"] = f.body["settings"].clone();
    v["created"] = Value::Bool(created);
    Ok(Reply {
        status: if created { 201 } else { 200 },
        text: v.to_string(),
        body: v,
    })
}

/// The status the synchronous upload answers with an error of `code`.
fn failed_status(code: &str) -> u16 {
    match code {
        "invalid_component" | "bad_request" => 400,
        "payload_too_large" => 413,
        "quota_exceeded" => 429,
        "insufficient_storage" => 507,
        "interrupted" => 503,
        _ => 500,
    }
}

/// `functions`: every function, as a table.
pub fn list(ctx: &Ctx) -> Result<Exit, Error> {
    let reply = ctx.client.send(Request::get(&["v1", "functions"]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
        return Ok(Exit::Success);
    }
    let functions = reply.array("functions")?;
    if functions.is_empty() {
        ctx.print("no functions deployed\n")?;
    } else {
        ctx.print(&render::functions_table(functions))?;
    }
    Ok(Exit::Success)
}

/// `functions NAME`: one function with its versions.
pub fn describe(ctx: &Ctx, name: &str) -> Result<Exit, Error> {
    let reply = ctx.client.send(Request::get(&["v1", "functions", name]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&render::function(&reply.body))?;
    }
    Ok(Exit::Success)
}

/// `delete NAME`: 204, no body (nothing is printed with `--json`).
pub fn delete(ctx: &Ctx, name: &str) -> Result<Exit, Error> {
    ctx.client
        .send(Request::new(Method::DELETE, &["v1", "functions", name]))?;
    if !ctx.json {
        ctx.print(&format!("deleted function {name}\n"))?;
    }
    Ok(Exit::Success)
}
