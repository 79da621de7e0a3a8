//! `tenants create|list|get|update|delete`: tenants and their quotas over HTTP (admin
//! keys only; the server says so with a 403 otherwise).
//!
//! Quotas are given as `--quota KEY=VALUE`, the value read as JSON where it parses
//! (`max_functions=10`, `invocations_per_second=2.5`, `outbound_allowlist=["a:80"]`,
//! `memory_limit_mb=null` to go back to the server's default) and as a string otherwise;
//! checked before anything is sent. Quota names are left to the server, which knows them.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::Request;
use super::{render, Ctx, Error, Exit};

#[derive(Subcommand)]
pub enum Command {
    /// Create a tenant, with quotas of its own or the server's defaults.
    Create {
        /// The tenant's name: 1-63 of a-z, 0-9 and '-', starting with a letter or digit.
        name: String,
        /// A quota other than the server's default (repeatable), e.g. max_functions=10.
        #[arg(long = "quota", value_name = "KEY=VALUE", value_parser = parse_quota)]
        quotas: Vec<Quota>,
    },
    /// List the tenants, with what they use of their main quotas.
    List,
    /// Show a tenant: every quota's effective value, with the usage beside those counted.
    Get {
        /// The tenant's name.
        name: String,
    },
    /// Change a tenant's quotas (`KEY=null` resets one to the server's default).
    Update {
        /// The tenant's name.
        name: String,
        /// The new value of a quota (repeatable), e.g. invocations_per_second=2.5.
        #[arg(
            long = "quota",
            value_name = "KEY=VALUE",
            value_parser = parse_quota,
            required = true
        )]
        quotas: Vec<Quota>,
    },
    /// Delete a tenant and its keys; refused (409) while it has functions or running or
    /// suspended executions.
    Delete {
        /// The tenant's name.
        name: String,
    },
}

/// One `--quota KEY=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    pub key: String,
    pub value: Value,
}

/// `KEY=VALUE`: the key a quota's name (lowercase letters, digits and `_`), the value JSON
/// where it parses and a string otherwise; an empty value is refused (`null` resets).
pub fn parse_quota(s: &str) -> Result<Quota, String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} is not KEY=VALUE (for example max_functions=10)"
        ));
    };
    let key = key.trim();
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "{key:?} is not a quota name (lowercase letters, digits and '_', such as \
             max_functions)"
        ));
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(format!(
            "no value for {key}: give one, or {key}=null for the server's default"
        ));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
    Ok(Quota {
        key: key.to_string(),
        value,
    })
}

/// The `quotas` object of a request body; a quota given twice is refused.
pub fn quotas_object(quotas: &[Quota]) -> Result<Map<String, Value>, Error> {
    let mut map = Map::new();
    for q in quotas {
        if map.insert(q.key.clone(), q.value.clone()).is_some() {
            return Err(Error::Usage(format!(
                "--quota {} is given more than once",
                q.key
            )));
        }
    }
    Ok(map)
}

pub fn run(ctx: &Ctx, command: Command) -> Result<Exit, Error> {
    match command {
        Command::Create { name, quotas } => create(ctx, &name, &quotas),
        Command::List => list(ctx),
        Command::Get { name } => get(ctx, &name),
        Command::Update { name, quotas } => update(ctx, &name, &quotas),
        Command::Delete { name } => delete(ctx, &name),
    }
}

/// `tenants create NAME [--quota K=V]...`: `POST /v1/tenants`.
fn create(ctx: &Ctx, name: &str, quotas: &[Quota]) -> Result<Exit, Error> {
    let mut body = json!({ "name": name });
    if !quotas.is_empty() {
        body["quotas"] = Value::Object(quotas_object(quotas)?);
    }
    let reply = ctx
        .client
        .send(Request::post(&["v1", "tenants"]).json(body.to_string()))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&format!(
            "created tenant {}\n\n",
            render::field(&reply.body, "name")
        ))?;
        ctx.print(&render::tenant(&reply.body))?;
    }
    Ok(Exit::Success)
}

/// `tenants list`: every tenant, as a table.
fn list(ctx: &Ctx) -> Result<Exit, Error> {
    let reply = ctx.client.send(Request::get(&["v1", "tenants"]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&render::tenants_table(reply.array("tenants")?))?;
    }
    Ok(Exit::Success)
}

/// `tenants get NAME`: one tenant, its quotas and usage.
fn get(ctx: &Ctx, name: &str) -> Result<Exit, Error> {
    let reply = ctx.client.send(Request::get(&["v1", "tenants", name]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&render::tenant(&reply.body))?;
    }
    Ok(Exit::Success)
}

/// `tenants update NAME --quota K=V...`: `PATCH /v1/tenants/{name}`.
fn update(ctx: &Ctx, name: &str, quotas: &[Quota]) -> Result<Exit, Error> {
    let body = json!({ "quotas": quotas_object(quotas)? });
    let path = ["v1", "tenants", name];
    let reply = ctx
        .client
        .send(Request::new(Method::PATCH, &path).json(body.to_string()))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&format!("updated tenant {name}\n\n"))?;
        ctx.print(&render::tenant(&reply.body))?;
    }
    Ok(Exit::Success)
}

/// `tenants delete NAME`: 204, no body (nothing is printed with `--json`).
fn delete(ctx: &Ctx, name: &str) -> Result<Exit, Error> {
    ctx.client
        .send(Request::new(Method::DELETE, &["v1", "tenants", name]))?;
    if !ctx.json {
        ctx.print(&format!("deleted tenant {name}\n"))?;
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_values_are_json_where_they_parse_and_strings_otherwise() {
        for (arg, key, value) in [
            ("max_functions=10", "max_functions", json!(10)),
            (
                "invocations_per_second=2.5",
                "invocations_per_second",
                json!(2.5),
            ),
            (
                r#"outbound_allowlist=["a:80","b.example:443"]"#,
                "outbound_allowlist",
                json!(["a:80", "b.example:443"]),
            ),
            ("outbound_allowlist=[]", "outbound_allowlist", json!([])),
            ("memory_limit_mb=null", "memory_limit_mb", Value::Null),
            (" max_functions = 3 ", "max_functions", json!(3)),
            ("note=hello", "note", json!("hello")),
            // Only the first '=' splits.
            ("note=a=b", "note", json!("a=b")),
            ("flag=true", "flag", json!(true)),
        ] {
            assert_eq!(
                parse_quota(arg),
                Ok(Quota {
                    key: key.into(),
                    value
                }),
                "{arg}"
            );
        }
    }

    #[test]
    fn a_bad_quota_is_refused_with_why() {
        for (arg, want) in [
            ("max_functions", "is not KEY=VALUE"),
            ("", "is not KEY=VALUE"),
            ("=10", "is not a quota name"),
            ("Max_Functions=10", "is not a quota name"),
            ("max-functions=10", "is not a quota name"),
            ("max_functions=", "no value for max_functions"),
            ("max_functions=  ", "no value for max_functions"),
        ] {
            let e = parse_quota(arg).unwrap_err();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }

    #[test]
    fn a_quota_given_twice_is_refused() {
        let q = |s| parse_quota(s).unwrap();
        let map = quotas_object(&[q("max_functions=1"), q("memory_limit_mb=null")]).unwrap();
        assert_eq!(
            Value::Object(map),
            json!({"max_functions": 1, "memory_limit_mb": null})
        );
        let e = quotas_object(&[q("max_functions=1"), q("max_functions=2")])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--quota max_functions is given more than once");
    }
}
