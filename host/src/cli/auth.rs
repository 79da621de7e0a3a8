//! Which API key the client sends, and where it came from: `--api-key`, else
//! `DURABLE_API_KEY`, else the `admin.key` file the server writes on its first start
//! (`$DURABLE_DATA_DIR/admin.key` when that variable is set, else `./durable-data/admin.key`
//! when it exists).
//!
//! The key is a secret: [`ApiKey`] never shows it in `Debug` or `Display`, and no message
//! here or in the client quotes it; only its source is named.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Error;

/// The variable that gives the key when `--api-key` does not.
pub const KEY_ENV: &str = "DURABLE_API_KEY";

/// The variable naming the server's data directory (shared with `serve --data-dir`).
pub const DATA_DIR_ENV: &str = "DURABLE_DATA_DIR";

/// Where `serve` keeps its data when `--data-dir` is not given.
pub const DEFAULT_DATA_DIR: &str = "./durable-data";

/// The file in the data directory that holds the bootstrap admin key.
pub const KEY_FILE: &str = "admin.key";

/// How to give a key, for the message of a 401.
pub const HOW_TO_GIVE_A_KEY: &str = "give one with --api-key KEY, with DURABLE_API_KEY, or \
    in the admin.key file of the server's data directory ($DURABLE_DATA_DIR/admin.key, else \
    ./durable-data/admin.key)";

/// An API key: sent, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where the key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("--api-key"),
            Source::Env => f.write_str(KEY_ENV),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The key the client sends and where it came from; `None` when there is none (the
/// server then answers 401, unless it runs with `--insecure-no-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub key: Option<(ApiKey, Source)>,
}

impl Credentials {
    /// The key from the process's arguments and environment.
    pub fn from_env(flag: Option<&str>) -> Result<Credentials, Error> {
        let env = std::env::var(KEY_ENV).ok();
        let data_dir = std::env::var_os(DATA_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        resolve(
            flag,
            env.as_deref(),
            data_dir.as_deref(),
            Path::new(DEFAULT_DATA_DIR),
        )
    }

    /// What a 401 should add: how the key that was refused came, or how to give one.
    pub fn unauthorized_hint(&self) -> String {
        match &self.key {
            None => format!("no API key was sent: {HOW_TO_GIVE_A_KEY}"),
            Some((_, source)) => format!(
                "the API key from {source} was refused (unknown, expired or revoked): \
                 {HOW_TO_GIVE_A_KEY}"
            ),
        }
    }
}

/// The key given by the flag, else by the variable, else by the `admin.key` file of
/// `data_dir` (when the variable naming it is set: that file only) or of `default_dir`
/// (when it exists). An empty variable is as if unset (as clap treats `env` values); an
/// empty flag or file is an error.
pub fn resolve(
    flag: Option<&str>,
    env: Option<&str>,
    data_dir: Option<&Path>,
    default_dir: &Path,
) -> Result<Credentials, Error> {
    if let Some(key) = flag {
        return given(key, Source::Flag).map(|key| Credentials { key: Some(key) });
    }
    if let Some(key) = env.filter(|k| !k.is_empty()) {
        return given(key, Source::Env).map(|key| Credentials { key: Some(key) });
    }
    let path = match data_dir {
        Some(dir) => dir.join(KEY_FILE),
        None => default_dir.join(KEY_FILE),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Credentials { key: None });
        }
        Err(e) => {
            return Err(Error::Usage(format!(
                "cannot read the API key from {}: {e}",
                path.display()
            )))
        }
    };
    given(&text, Source::File(path)).map(|key| Credentials { key: Some(key) })
}

/// `text` trimmed, as a key that fits in a header, or why not (never quoting it).
fn given(text: &str, source: Source) -> Result<(ApiKey, Source), Error> {
    let key = text.trim();
    if key.is_empty() {
        return Err(Error::Usage(format!("the API key from {source} is empty")));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Usage(format!(
            "the API key from {source} has characters no key has (spaces, control or \
             non-ASCII characters)"
        )));
    }
    Ok((ApiKey(key.to_string()), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "dh_0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    /// Where the key comes from, for each combination of flag, variable and files.
    #[test]
    fn the_flag_beats_the_variable_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let default = dir.path().join("default");
        let empty = dir.path().join("empty");
        for d in [&data, &default, &empty] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(data.join(KEY_FILE), "dh_data\n").unwrap();
        std::fs::write(default.join(KEY_FILE), "  dh_default \n").unwrap();
        let data_file = Source::File(data.join(KEY_FILE));
        let default_file = Source::File(default.join(KEY_FILE));

        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a Path>,
            &'a Path,
            Option<(&'a str, Source)>,
        );
        let cases: Vec<Case> = vec![
            (
                Some("dh_flag"),
                Some("dh_env"),
                Some(&data),
                &default,
                Some(("dh_flag", Source::Flag)),
            ),
            (
                None,
                Some("dh_env"),
                Some(&data),
                &default,
                Some(("dh_env", Source::Env)),
            ),
            (
                None,
                Some(""),
                Some(&data),
                &default,
                Some(("dh_data", data_file.clone())),
            ),
            (
                None,
                None,
                Some(&data),
                &default,
                Some(("dh_data", data_file)),
            ),
            // DURABLE_DATA_DIR set: that directory's file only, even when it has none.
            (None, None, Some(&empty), &default, None),
            (
                None,
                None,
                None,
                &default,
                Some(("dh_default", default_file)),
            ),
            (None, None, None, &empty, None),
        ];
        for (i, (flag, env, data_dir, default_dir, want)) in cases.into_iter().enumerate() {
            let got = resolve(flag, env, data_dir, default_dir).unwrap();
            let want = want.map(|(k, s)| (ApiKey(k.to_string()), s));
            assert_eq!(got.key, want, "case {i}");
        }
    }

    #[test]
    fn an_empty_or_unusable_key_is_refused_without_being_quoted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "\n\n").unwrap();
        for (flag, env, want) in [
            (Some(""), None, "the API key from --api-key is empty"),
            (Some(" \t"), None, "the API key from --api-key is empty"),
            (
                None,
                Some("dh_a b"),
                "the API key from DURABLE_API_KEY has characters",
            ),
            (
                Some("dh_é"),
                None,
                "the API key from --api-key has characters",
            ),
            (None, None, "is empty"),
        ] {
            let e = resolve(flag, env, Some(dir.path()), dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("dh_"), "{e}");
        }
    }

    #[test]
    fn an_unreadable_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails, and not with NotFound.
        std::fs::create_dir(dir.path().join(KEY_FILE)).unwrap();
        let e = resolve(None, None, Some(dir.path()), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read the API key from "), "{e}");
        assert!(e.contains(KEY_FILE), "{e}");
    }

    #[test]
    fn the_key_never_shows_in_debug_or_in_hints() {
        let creds = Credentials {
            key: Some((ApiKey(KEY.to_string()), Source::Env)),
        };
        assert!(!format!("{creds:?}").contains("dh_"));
        let hint = creds.unauthorized_hint();
        assert!(
            hint.starts_with("the API key from DURABLE_API_KEY was refused"),
            "{hint}"
        );
        assert!(!hint.contains("dh_"), "{hint}");
        let hint = Credentials { key: None }.unauthorized_hint();
        assert!(
            hint.starts_with("no API key was sent: give one with --api-key"),
            "{hint}"
        );
        assert!(hint.contains("admin.key"), "{hint}");
    }
}
