//! API keys end to end: revocation and expiry take effect on the next request; a wrong
//! secret, an unknown key and a malformed header are the same 401 with `WWW-Authenticate:
//! Bearer`; no secret is stored in clear anywhere under the data directory (its store and
//! write-ahead log, after a crash and after a clean stop) nor shown after creation; the
//! bootstrap writes `admin.key` (0600) once; `--insecure-no-auth` serves only on loopback.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::isolation::{call, new_key, raw, tenant_with_owner, As, Key, Resp};
use crate::support::{try_serve_with, Server, BIN};

/// The secret of a key: the hex after the second `_`.
fn secret(key: &str) -> &str {
    let mut parts = key.splitn(3, '_');
    assert_eq!(parts.next(), Some("dh"), "{key}");
    let id = parts.next().unwrap();
    assert!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    let s = parts.next().unwrap();
    assert!(
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    s
}

fn whoami(s: &Server, key: &str) -> Resp {
    call(s, Some(key), "GET", "/v1/whoami", None, &[])
}

/// A 401 as the contract says: code `unauthorized`, `WWW-Authenticate: Bearer`.
fn assert_401(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r}");
    assert_eq!(r.json()["error"]["code"], "unauthorized", "{what}: {r}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
}

/// A well-formed key that no server ever issued.
fn unknown_key() -> String {
    format!(
        "dh_{}_{}",
        hex::encode(rand::random::<[u8; 6]>()),
        hex::encode(rand::random::<[u8; 32]>())
    )
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn a_revoked_key_is_refused_on_the_very_next_request() {
    let s = Server::start();
    let owner = tenant_with_owner(&s, "acme");
    let o = As {
        s: &s,
        key: owner.key.clone(),
    };
    let unknown = whoami(&s, &unknown_key());
    assert_401(&unknown, "an unknown key");
    // By the owner and by the admin; each key's last good request immediately before.
    for (i, by) in [&owner.key, &s.admin_key]
        .into_iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let k = new_key(
            &s,
            &owner.key,
            "acme",
            if i % 2 == 0 { "reader" } else { "developer" },
        );
        assert_eq!(whoami(&s, &k.key).status, 200);
        let r = call(
            &s,
            Some(by),
            "DELETE",
            &format!("/v1/tenants/acme/keys/{}", k.id),
            None,
            &[],
        );
        assert_eq!(r.status, 204, "{r}");
        let after = whoami(&s, &k.key);
        assert_401(&after, "a revoked key");
        assert_eq!(
            after.body, unknown.body,
            "a revoked key answers unlike an unknown one"
        );
        // Revoked for every route, not only the one tried.
        let r = call(&s, Some(&k.key), "GET", "/v1/executions", None, &[]);
        assert_401(&r, "a revoked key on /v1/executions");
        let listed = o.get("/v1/tenants/acme/keys").text();
        assert!(
            !listed.contains(&k.id),
            "a revoked key is still listed: {listed}"
        );
        // Revoking it again: it is gone.
        let r = o.call("DELETE", &format!("/v1/tenants/acme/keys/{}", k.id), None);
        assert_eq!(r.status, 404, "{r}");
    }
    // A revoked owner key can do nothing, not even revoke another key.
    let second = new_key(&s, &s.admin_key, "acme", "owner");
    let victim = new_key(&s, &s.admin_key, "acme", "reader");
    let r = o.call(
        "DELETE",
        &format!("/v1/tenants/acme/keys/{}", second.id),
        None,
    );
    assert_eq!(r.status, 204, "an owner may revoke another owner key: {r}");
    let r = call(
        &s,
        Some(&second.key),
        "DELETE",
        &format!("/v1/tenants/acme/keys/{}", victim.id),
        None,
        &[],
    );
    assert_401(&r, "a revoked owner key");
    assert_eq!(whoami(&s, &victim.key).status, 200);
}

#[test]
fn an_expired_key_is_refused() {
    let s = Server::start();
    tenant_with_owner(&s, "acme");
    let expires = time::OffsetDateTime::now_utc() + Duration::from_secs(2);
    let body = json!({"role": "reader", "name": "short-lived", "expires_at": rfc3339(expires)});
    let r = call(
        &s,
        Some(&s.admin_key),
        "POST",
        "/v1/tenants/acme/keys",
        Some(body.to_string().into_bytes()),
        &[],
    );
    assert_eq!(r.status, 201, "{r}");
    let v = r.json();
    let key = v["key"].as_str().unwrap().to_string();
    let at = v["expires_at"]
        .as_str()
        .expect("expires_at is shown")
        .to_string();
    let parsed =
        time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(
        (parsed - expires).abs() < time::Duration::milliseconds(2),
        "{at}"
    );
    let listed = call(
        &s,
        Some(&s.admin_key),
        "GET",
        "/v1/tenants/acme/keys",
        None,
        &[],
    )
    .json();
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == v["key_id"])
        .cloned();
    assert_eq!(entry.unwrap()["expires_at"], at.as_str(), "{listed}");

    let r = whoami(&s, &key);
    assert_eq!(r.status, 200, "before its expiry: {r}");
    assert_eq!(r.json()["role"], "reader");
    // Past the expiry (the server's clock is this machine's).
    let past = expires + Duration::from_millis(300);
    let now = time::OffsetDateTime::now_utc();
    if past > now {
        std::thread::sleep((past - now).try_into().unwrap());
    }
    let r = whoami(&s, &key);
    assert_401(&r, "an expired key");
    assert_eq!(r.body, whoami(&s, &unknown_key()).body);
    assert_401(
        &call(&s, Some(&key), "GET", "/v1/executions", None, &[]),
        "an expired key on /v1/executions",
    );

    // An expiry already past is refused at creation.
    let body = json!({"role": "reader", "name": "stale", "expires_at": "2001-01-01T00:00:00Z"});
    let r = call(
        &s,
        Some(&s.admin_key),
        "POST",
        "/v1/tenants/acme/keys",
        Some(body.to_string().into_bytes()),
        &[],
    );
    assert_eq!(r.status, 400, "{r}");
}

#[test]
fn a_wrong_secret_is_the_same_401_as_an_unknown_key() {
    let s = Server::start();
    let owner = tenant_with_owner(&s, "acme");
    let real_id = &owner.id;
    let unknown = whoami(&s, &unknown_key());
    assert_401(&unknown, "an unknown key");
    let good = secret(&owner.key).to_string();
    let mut flipped = good.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    let wrong = [
        hex::encode(rand::random::<[u8; 32]>()),
        String::from_utf8(flipped).unwrap(),
        good.to_uppercase(),
    ];
    for w in &wrong {
        if *w == good {
            continue; // an all-digit secret uppercases to itself
        }
        let r = whoami(&s, &format!("dh_{real_id}_{w}"));
        assert_401(&r, "a wrong secret for a real key id");
        assert_eq!(
            r.body, unknown.body,
            "a real key id answers unlike an unknown one"
        );
    }
    // The real key itself is fine, then.
    assert_eq!(whoami(&s, &owner.key).status, 200);
}

#[test]
fn a_missing_or_malformed_authorization_header_is_401() {
    let s = Server::start();
    let key = &s.admin_key;
    let basic = format!("Basic {key}");
    let token = format!("Token {key}");
    let extra = format!("Bearer {key} {key}");
    let glued = format!("Bearer{key}");
    let cut = format!("Bearer {}", &key[..key.len() - 1]);
    let long = format!("Bearer {key}0");
    let cases: Vec<Option<&str>> = vec![
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some("Basic dXNlcjpwYXNzd29yZA=="),
        Some(&basic),
        Some(key),
        Some(&token),
        Some(&extra),
        Some(&glued),
        Some(&cut),
        Some(&long),
        Some("Bearer dh_"),
        Some("Bearer dh__"),
    ];
    for c in &cases {
        for path in [
            "/v1/whoami",
            "/v1/functions",
            "/metrics",
            "/v1/openapi.json",
        ] {
            let r = raw(&s, *c, "GET", path, None, &[]);
            assert_401(&r, &format!("Authorization {c:?} on {path}"));
        }
    }
    // The scheme's name is case-insensitive (RFC 9110); the key as it is, then, is good.
    let r = raw(
        &s,
        Some(&format!("bearer {key}")),
        "GET",
        "/v1/whoami",
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{r}");
    // /healthz alone needs no key, and takes a bad one without complaint.
    assert_eq!(raw(&s, None, "GET", "/healthz", None, &[]).status, 200);
    assert_eq!(
        raw(&s, Some("Basic x"), "GET", "/healthz", None, &[]).status,
        200
    );
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(files(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

fn holds(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Search every file of `data` but `admin.key` for each key's secret (as text, upper case
/// and raw bytes) and the whole key: none may be there. Each key's public id must be
/// found somewhere (else the search looked at nothing). Returns the files searched.
fn assert_no_secret(data: &Path, keys: &[Key]) -> Vec<PathBuf> {
    let admin_key = data.join("admin.key");
    let searched: Vec<PathBuf> = files(data)
        .into_iter()
        .filter(|p| *p != admin_key)
        .collect();
    let contents: Vec<(PathBuf, Vec<u8>)> = searched
        .iter()
        .map(|p| {
            let mut b = Vec::new();
            std::fs::File::open(p).unwrap().read_to_end(&mut b).unwrap();
            (p.clone(), b)
        })
        .collect();
    for k in keys {
        let sec = secret(&k.key);
        let needles: [(&str, Vec<u8>); 4] = [
            ("the whole key", k.key.clone().into_bytes()),
            ("the secret", sec.as_bytes().to_vec()),
            ("the secret in upper case", sec.to_uppercase().into_bytes()),
            ("the secret's bytes", hex::decode(sec).unwrap()),
        ];
        for (what, needle) in &needles {
            for (p, b) in &contents {
                assert!(
                    !holds(b, needle),
                    "{what} of key {} is in {}",
                    k.id,
                    p.display()
                );
            }
        }
        assert!(
            contents.iter().any(|(_, b)| holds(b, k.id.as_bytes())),
            "key id {} is in no file of {:?}: the search read nothing of the store",
            k.id,
            searched
        );
    }
    let names: Vec<String> = searched
        .iter()
        .map(|p| p.strip_prefix(data).unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("db")),
        "no store files in {names:?}"
    );
    searched
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn no_secret_is_stored_in_clear_nor_shown_again() {
    let mut s = Server::start();
    let bootstrap = Key {
        id: s.admin_key.split('_').nth(1).unwrap().to_string(),
        key: s.admin_key.clone(),
    };
    let mut keys = vec![bootstrap];
    for t in ["acme", "globex"] {
        keys.push(tenant_with_owner(&s, t));
        for role in ["admin", "developer", "invoker", "callback", "reader"] {
            keys.push(new_key(&s, &s.admin_key, t, role));
        }
    }
    // Nothing shows a secret after its creation.
    let mut shown = String::new();
    for path in [
        "/v1/tenants",
        "/v1/tenants/acme",
        "/v1/tenants/acme/keys",
        "/v1/tenants/globex/keys",
        "/v1/tenants/default/keys",
        "/v1/whoami",
    ] {
        let r = call(&s, Some(&s.admin_key), "GET", path, None, &[]);
        assert_eq!(r.status, 200, "{path}: {r}");
        shown.push_str(&r.text());
    }
    for k in &keys {
        assert!(shown.contains(&k.id), "key {} is not listed", k.id);
        assert!(
            !shown.contains(secret(&k.key)),
            "a secret is shown: {shown}"
        );
    }
    let listed = call(
        &s,
        Some(&s.admin_key),
        "GET",
        "/v1/tenants/acme/keys",
        None,
        &[],
    )
    .json();
    for k in listed["keys"].as_array().unwrap() {
        assert!(k.get("key").is_none() && k.get("secret").is_none(), "{k}");
    }

    // After a crash: the write-ahead log and the store as they were left.
    let data = s.data.path().to_path_buf();
    let mut searched = Vec::new();
    s.restart_after(|d| searched = assert_no_secret(d, &keys));
    eprintln!("after kill -9, searched {searched:?}");
    // The keys survived the crash, and still work.
    for k in &keys {
        assert_eq!(
            whoami(&s, &k.key).status,
            200,
            "key {} after a restart",
            k.id
        );
    }
    // After a clean stop.
    s.stop();
    let searched = assert_no_secret(&data, &keys);
    eprintln!("after a clean stop, searched {searched:?}");
    // admin.key holds the bootstrap key alone, readable by its owner only.
    let admin_key = data.join("admin.key");
    assert_eq!(mode(&admin_key), 0o600);
    assert_eq!(
        std::fs::read_to_string(&admin_key).unwrap(),
        format!("{}\n", keys[0].key)
    );
}

#[test]
fn the_bootstrap_writes_admin_key_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let log = try_serve_with(&data, &[], &[("RUST_LOG", "info")])
        .unwrap_or_else(|(st, err)| panic!("the host did not start ({st}): {err}"));
    let path = data.join("admin.key");
    let key = std::fs::read_to_string(&path).unwrap();
    assert!(
        key.ends_with('\n') && key.matches('\n').count() == 1,
        "{key:?}"
    );
    let key = key.trim_end().to_string();
    secret(&key);
    assert_eq!(mode(&path), 0o600);
    // The log names the file, never the key.
    assert!(log.contains(&path.display().to_string()), "{log}");
    assert!(!log.contains(secret(&key)), "the log shows the key: {log}");
    let meta = std::fs::metadata(&path).unwrap();
    let (ino, mtime) = (meta.ino(), meta.mtime_nsec() + meta.mtime() * 1_000_000_000);

    let mut s = Server::start_in(Arc::new(dir), &[]);
    assert_eq!(s.admin_key, key);
    let me = whoami(&s, &key).json();
    assert_eq!(me["tenant"], "default", "{me}");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["key_id"], key.split('_').nth(1).unwrap());
    // A crash and a clean stop later: the same file, untouched, the same single key.
    s.crash_and_restart();
    s.stop();
    let s = Server::start_in(s.data.clone(), &[]);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.ino(), ino, "admin.key was replaced");
    assert_eq!(meta.mtime_nsec() + meta.mtime() * 1_000_000_000, mtime);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{key}\n"));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(whoami(&s, &key).status, 200);
    let listed = call(&s, Some(&key), "GET", "/v1/tenants/default/keys", None, &[]).json();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1, "{listed}");
    let tenants = call(&s, Some(&key), "GET", "/v1/tenants", None, &[]).json();
    assert_eq!(tenants["tenants"].as_array().unwrap().len(), 1, "{tenants}");
}

/// `serve --listen <listen> --insecure-no-auth` on a new data directory, which must exit
/// (bounded): its exit status and stderr, and whether it wrote anything.
fn refused(listen: &str) -> (std::process::ExitStatus, String, bool) {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            listen,
            "--insecure-no-auth",
            "--data-dir",
        ])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--insecure-no-auth on {listen}: the host did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let wrote = std::fs::read_dir(data.path()).unwrap().next().is_some();
    (status, err, wrote)
}

#[test]
fn insecure_no_auth_serves_only_on_loopback() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (status, err, wrote) = refused(listen);
        assert!(!status.success(), "{listen}: {status}");
        assert!(!err.contains("listening on"), "{listen}: {err}");
        assert!(
            err.contains("--insecure-no-auth") && err.contains("loopback"),
            "{listen}: the refusal does not say why: {err}"
        );
        assert!(
            !wrote,
            "{listen}: the refused host wrote to its data directory"
        );
    }

    // On loopback: every request is an admin's, without a key; it warns at start.
    let dir = tempfile::tempdir().unwrap();
    let log = try_serve_with(dir.path(), &["--insecure-no-auth"], &[])
        .unwrap_or_else(|(st, err)| panic!("refused on loopback ({st}): {err}"));
    assert!(
        log.contains("--insecure-no-auth"),
        "no warning at start: {log}"
    );
    let s = Server::start_with(&["--insecure-no-auth"]);
    let r = raw(&s, None, "GET", "/v1/whoami", None, &[]);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.json(),
        json!({"tenant": "default", "role": "admin", "key_id": null})
    );
    let r = raw(
        &s,
        None,
        "POST",
        "/v1/tenants",
        Some(br#"{"name":"acme"}"#.to_vec()),
        &[],
    );
    assert_eq!(r.status, 201, "{r}");
    let r = raw(
        &s,
        None,
        "GET",
        "/v1/whoami",
        None,
        &[("Durable-Tenant", "acme")],
    );
    assert_eq!(r.json()["tenant"], "acme", "{r}");
    assert_eq!(raw(&s, None, "GET", "/metrics", None, &[]).status, 200);
}
