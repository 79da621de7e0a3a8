//! `keys create|list|revoke` and `whoami`: API keys over HTTP, and who the caller's key is.
//!
//! Whose keys: the tenant given to the command (`keys list TENANT`), else the global
//! `--tenant` (`DURABLE_TENANT`), else the caller's own tenant, asked of `GET /v1/whoami`.
//! Roles and expiries are checked before anything is sent; `--expires-in` becomes an
//! RFC 3339 `expires_at` from this machine's clock.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::client::Request;
use super::{render, Ctx, Error, Exit};

/// The roles a key may have (DESIGN.md section 8).
pub const ROLES: [&str; 6] = [
    "admin",
    "owner",
    "developer",
    "invoker",
    "callback",
    "reader",
];

/// The longest `--expires-in`: 100 years, far beyond any key's useful life, and well inside
/// what an RFC 3339 timestamp can say.
const MAX_EXPIRES_IN_SECS: u64 = 100 * 366 * 24 * 3600;

const TENANT_HELP: &str = "Whose keys: TENANT, else --tenant (DURABLE_TENANT), else the \
    tenant of the key making the request (from `durable-host whoami`). Owner keys manage \
    their own tenant's keys (not admin keys); admin keys any tenant's.";

#[derive(Subcommand)]
pub enum Command {
    /// Create a key and print it: the only time the whole key is shown.
    #[command(
        after_help = "The key's tenant: --tenant (DURABLE_TENANT), else the tenant of \
        the key making the request (from `durable-host whoami`). Owner keys create keys in \
        their own tenant (not admin keys); admin keys in any."
    )]
    Create(CreateArgs),
    /// List a tenant's keys (never their secrets).
    #[command(after_help = TENANT_HELP)]
    List {
        /// The tenant (default: see below).
        // Not the id `tenant`: that is the global --tenant's, which would then not reach
        // this subcommand.
        #[arg(id = "keys_tenant", value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// Revoke a key: it is refused from the next request on.
    #[command(after_help = TENANT_HELP)]
    Revoke {
        /// The key's id (the 12 hex characters after `dh_`).
        key_id: String,
        /// The key's tenant (default: see below).
        #[arg(id = "keys_tenant", value_name = "TENANT")]
        tenant: Option<String>,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// What the key may do.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(ROLES))]
    role: String,
    /// A name for people: what or who the key is for.
    #[arg(long)]
    name: String,
    /// When the key stops working, RFC 3339 (2026-01-31T00:00:00Z). Default: never.
    #[arg(long, value_name = "RFC3339", value_parser = parse_expires_at, conflicts_with = "expires_in")]
    expires_at: Option<OffsetDateTime>,
    /// How long the key works from now: a number and a unit, s, m, h, d or w, or several
    /// (30d, 12h, 90m, 1d12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires_in: Option<time::Duration>,
}

/// An RFC 3339 timestamp with its offset.
fn parse_expires_at(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-01-31T00:00:00Z ({e})"))
}

/// `30d`, `12h`, `90m`, `45s`, `2w`, or several of them run together (`1d12h`): positive,
/// at most [`MAX_EXPIRES_IN_SECS`].
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let bad =
        || format!("{s:?} is not a duration such as 30d, 12h, 90m or 1d12h (units: s m h d w)");
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let secs: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 24 * 3600,
            'w' => 7 * 24 * 3600,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(secs)
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= MAX_EXPIRES_IN_SECS)
            .ok_or_else(|| format!("{s:?} is longer than the longest expiry, 100 years"))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if total == 0 {
        return Err(format!(
            "{s:?} is no time at all: a key must work for a while"
        ));
    }
    Ok(time::Duration::seconds(total as i64))
}

/// The `expires_at` to send, in UTC: the given time, or now plus the duration.
fn expires_at(
    at: Option<OffsetDateTime>,
    in_: Option<time::Duration>,
    now: OffsetDateTime,
) -> Option<String> {
    let t = at.or_else(|| in_.map(|d| now + d))?;
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

/// The body of `POST /v1/tenants/{tenant}/keys`.
fn create_body(args: &CreateArgs, now: OffsetDateTime) -> Value {
    let mut body = json!({"role": args.role, "name": args.name});
    if let Some(t) = expires_at(args.expires_at, args.expires_in, now) {
        body["expires_at"] = Value::String(t);
    }
    body
}

pub fn run(ctx: &Ctx, command: Command) -> Result<Exit, Error> {
    match command {
        Command::Create(args) => create(ctx, &args),
        Command::List { tenant } => list(ctx, tenant),
        Command::Revoke { key_id, tenant } => revoke(ctx, &key_id, tenant),
    }
}

/// The tenant whose keys a command manages: the one given, else `--tenant`, else the
/// caller's own.
fn tenant_of(ctx: &Ctx, given: Option<String>) -> Result<String, Error> {
    if let Some(t) = given.or_else(|| ctx.tenant.clone()) {
        return Ok(t);
    }
    let reply = ctx.client.send(Request::get(&["v1", "whoami"]))?;
    match reply.body.get("tenant").and_then(Value::as_str) {
        Some(t) => Ok(t.to_string()),
        None => Err(Error::Response(format!(
            "GET /v1/whoami named no tenant: {}",
            reply.text.trim()
        ))),
    }
}

/// `keys create --role ROLE --name NAME [--expires-at T | --expires-in D]`.
fn create(ctx: &Ctx, args: &CreateArgs) -> Result<Exit, Error> {
    let body = create_body(args, OffsetDateTime::now_utc());
    let tenant = tenant_of(ctx, None)?;
    let path = ["v1", "tenants", tenant.as_str(), "keys"];
    let reply = ctx
        .client
        .send(Request::post(&path).json(body.to_string()))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&render::created_key(&tenant, &reply.body))?;
    }
    Ok(Exit::Success)
}

/// `keys list [TENANT]`: a table, without secrets.
fn list(ctx: &Ctx, tenant: Option<String>) -> Result<Exit, Error> {
    let tenant = tenant_of(ctx, tenant)?;
    let reply = ctx
        .client
        .send(Request::get(&["v1", "tenants", tenant.as_str(), "keys"]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        let keys = reply.array("keys")?;
        if keys.is_empty() {
            ctx.print(&format!("tenant {tenant} has no keys\n"))?;
        } else {
            ctx.print(&render::keys_table(keys))?;
        }
    }
    Ok(Exit::Success)
}

/// `keys revoke KEY_ID [TENANT]`: 204, no body (nothing is printed with `--json`).
fn revoke(ctx: &Ctx, key_id: &str, tenant: Option<String>) -> Result<Exit, Error> {
    let tenant = tenant_of(ctx, tenant)?;
    let path = ["v1", "tenants", tenant.as_str(), "keys", key_id];
    ctx.client.send(Request::new(Method::DELETE, &path))?;
    if !ctx.json {
        ctx.print(&format!("revoked key {key_id} of tenant {tenant}\n"))?;
    }
    Ok(Exit::Success)
}

/// `whoami`: the tenant, role and key id of the key in use, and where the key came from.
pub fn whoami(ctx: &Ctx) -> Result<Exit, Error> {
    let reply = ctx.client.send(Request::get(&["v1", "whoami"]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        let source = ctx.client.key_source();
        ctx.print(&render::whoami(&reply.body, source.as_deref()))?;
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use time::macros::datetime;

    #[test]
    fn durations_are_numbers_with_units_run_together() {
        for (arg, secs) in [
            ("30d", 30 * 86_400),
            ("12h", 12 * 3600),
            ("90m", 90 * 60),
            ("45s", 45),
            ("2w", 14 * 86_400),
            ("1d12h", 86_400 + 12 * 3600),
            ("1h30m15s", 3600 + 1800 + 15),
            (" 7d ", 7 * 86_400),
            ("0d1s", 1),
        ] {
            assert_eq!(
                parse_duration(arg),
                Ok(time::Duration::seconds(secs)),
                "{arg}"
            );
        }
    }

    #[test]
    fn a_bad_duration_is_refused_with_why() {
        for (arg, want) in [
            ("", "is not a duration"),
            ("30", "is not a duration"),
            ("d", "is not a duration"),
            ("30x", "is not a duration"),
            ("30 d", "is not a duration"),
            ("-5m", "is not a duration"),
            ("1.5h", "is not a duration"),
            ("30days", "is not a duration"),
            ("0s", "no time at all"),
            ("0d0h", "no time at all"),
            ("101000000000000000000000w", "is not a duration"),
            ("99999999999999w", "longer than the longest expiry"),
            ("36600d1s", "longer than the longest expiry"),
        ] {
            let e = parse_duration(arg).unwrap_err();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }

    /// `keys create` as clap sees it, alone.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateArgs,
    }

    fn parse(args: &[&str]) -> Result<CreateArgs, String> {
        let mut argv = vec!["keys-create"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn create_bodies_from_arguments() {
        let now = datetime!(2025-06-01 12:00:00 UTC);
        for (args, body) in [
            (
                vec!["--role", "invoker", "--name", "ci"],
                json!({"role": "invoker", "name": "ci"}),
            ),
            (
                vec!["--role", "owner", "--name", "acme", "--expires-in", "30d"],
                json!({"role": "owner", "name": "acme", "expires_at": "2025-07-01T12:00:00Z"}),
            ),
            (
                vec!["--role", "reader", "--name", "r", "--expires-in", "90m"],
                json!({"role": "reader", "name": "r", "expires_at": "2025-06-01T13:30:00Z"}),
            ),
            (
                vec![
                    "--role",
                    "callback",
                    "--name",
                    "hook",
                    "--expires-at",
                    "2026-01-31T02:00:00+02:00",
                ],
                json!({"role": "callback", "name": "hook", "expires_at": "2026-01-31T00:00:00Z"}),
            ),
        ] {
            let parsed = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(create_body(&parsed, now), body, "{args:?}");
        }
    }

    #[test]
    fn bad_create_arguments_are_refused_before_any_request() {
        for (args, want) in [
            (
                vec!["--role", "root", "--name", "x"],
                "invalid value 'root' for '--role <ROLE>'",
            ),
            (
                vec!["--role", "Admin", "--name", "x"],
                "invalid value 'Admin'",
            ),
            (vec!["--name", "x"], "--role <ROLE>"),
            (vec!["--role", "admin"], "--name <NAME>"),
            (
                vec!["--role", "admin", "--name", "x", "--expires-in", "soon"],
                "is not a duration",
            ),
            (
                vec![
                    "--role",
                    "admin",
                    "--name",
                    "x",
                    "--expires-at",
                    "2026-01-31",
                ],
                "is not an RFC 3339 time",
            ),
            (
                vec![
                    "--role",
                    "admin",
                    "--name",
                    "x",
                    "--expires-at",
                    "2026-01-31T00:00:00Z",
                    "--expires-in",
                    "1d",
                ],
                "cannot be used with",
            ),
        ] {
            let e = parse(&args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn every_role_is_accepted() {
        for role in ROLES {
            let parsed = parse(&["--role", role, "--name", "n"]).unwrap();
            assert_eq!(parsed.role, role);
        }
    }
}
