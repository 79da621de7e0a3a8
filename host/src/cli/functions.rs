//! `deploy`, `functions` and `delete`: the function registry over HTTP.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;

use super::client::Request;
use super::{render, Ctx, Error, Exit};

/// How long an upload may take: the server compiles the component before it answers.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// `deploy NAME FILE`: `PUT /v1/functions/{name}` with the file's bytes.
pub fn deploy(ctx: &Ctx, name: &str, file: &Path) -> Result<Exit, Error> {
    let bytes = std::fs::read(file)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
    let path = ["v1", "functions", name];
    let reply = ctx.client.send(
        Request::new(Method::PUT, &path)
            .body(bytes, "application/wasm")
            .timeout(Some(DEPLOY_TIMEOUT)),
    )?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&render::deployed(&reply.body, reply.status == 201))?;
    }
    Ok(Exit::Success)
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
