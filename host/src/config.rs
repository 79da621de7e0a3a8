//! Operator configuration for `serve`: every flag can also come from a TOML file
//! (`--config PATH` or `DURABLE_CONFIG`) and from a `DURABLE_*` environment variable.
//! Precedence: flag over environment over file over the flag's built-in default.
//!
//! Nothing here knows the flags: names are derived from each argument's long name
//! (`--max-resident` is `DURABLE_MAX_RESIDENT` and the file key `max_resident` or
//! `max-resident`), and values reach clap as the arguments' defaults, so a flag added to
//! `ServeArgs` later gets both sources with no code, clap parses and validates them with the
//! flag's own value parser, and an explicit flag still wins. Repeatable flags take a TOML
//! array in the file and a comma-separated list in the environment.
//!
//! A bad file or variable is refused before the host starts: an unknown key, a value of the
//! wrong type (an array for a single-valued flag, a table, a value the flag's parser
//! rejects) or bad TOML, each naming the file, the line and the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use toml::{Spanned, Value};

/// Prefix of every environment variable of `serve` (the CLI client's `DURABLE_SERVER` shares
/// it: `serve` has no `--server` flag, so the names cannot collide).
pub const ENV_PREFIX: &str = "DURABLE_";

/// The id of the `--config` argument itself: it names the file, so it is read before the
/// file and cannot be set in it.
pub const CONFIG_ARG: &str = "config";

/// Separator of the values of a repeatable flag in its environment variable (none of the
/// repeatable flags' values, `HOST:PORT`, can contain it).
pub const ENV_LIST_SEPARATOR: char = ',';

/// The environment variable of the flag `--long`: `DURABLE_` and the name in capitals.
pub fn env_name(long: &str) -> String {
    format!("{ENV_PREFIX}{}", long.replace('-', "_").to_uppercase())
}

/// The documented file key of the flag `--long`: its name with `_` (`-` is accepted too).
pub fn file_key(long: &str) -> String {
    long.replace('-', "_")
}

/// A configuration that cannot be used: the host refuses to start with this message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}, line {line}: {reason}", path.display())]
    File {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

/// The arguments of `serve` that configuration may set: those with a long name, except
/// `--config`, clap's own (`--help`) and the client's global options.
pub fn settable(serve: &Command) -> impl Iterator<Item = &Arg> {
    serve.get_arguments().filter(|a| {
        a.get_long().is_some()
            && a.get_id() != CONFIG_ARG
            && !a.is_global_set()
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// Whether the flag may be given more than once (a list: TOML array, comma-separated env).
fn repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// The path of the config file: `--config` if given, else `DURABLE_CONFIG` if set.
pub fn config_path(flag: Option<&Path>, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        env.get(&env_name(CONFIG_ARG))
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// `serve` with the defaults of its arguments replaced by the values of the config file
/// (`file`: its path and text) and, over those, the `DURABLE_*` variables in `env`. Every
/// value is checked with its flag's parser here, so that an error can say where it came from.
pub fn layer(
    serve: Command,
    file: Option<(&Path, &str)>,
    env: &BTreeMap<String, String>,
) -> Result<Command, Error> {
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some((path, text)) = file {
        values = from_file(&serve, path, text)?;
    }
    for arg in settable(&serve) {
        let var = env_name(arg.get_long().unwrap_or_default());
        // Empty is unset, as clap treats `env` values.
        let Some(raw) = env.get(&var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let list: Vec<String> = if repeatable(arg) {
            raw.split(ENV_LIST_SEPARATOR)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        } else {
            vec![raw.clone()]
        };
        for v in &list {
            check(arg, v).map_err(|reason| Error::Env {
                var: var.clone(),
                reason,
            })?;
        }
        values.insert(arg.get_id().to_string(), list);
    }
    Ok(values.into_iter().fold(serve, |cmd, (id, list)| {
        cmd.mut_arg(id, |a| a.default_values(list))
    }))
}

/// The values the file sets, by argument id, each checked.
fn from_file(
    serve: &Command,
    path: &Path,
    text: &str,
) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let at = |offset: usize, reason: String| Error::File {
        path: path.to_path_buf(),
        line: line_of(text, offset),
        reason,
    };
    let table: BTreeMap<Spanned<String>, Spanned<Value>> = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        at(offset, e.message().trim_end().to_string())
    })?;
    // In the order they appear, so that the first problem reported is the first in the file.
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut values = BTreeMap::new();
    let mut key_of: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in entries {
        let offset = key.span().start;
        let name = key.get_ref();
        if file_key(name) == CONFIG_ARG {
            return Err(at(
                offset,
                format!("`{name}` cannot be set in a config file (it names the file)"),
            ));
        }
        let Some(arg) =
            settable(serve).find(|a| file_key(a.get_long().unwrap_or_default()) == file_key(name))
        else {
            return Err(at(
                offset,
                format!("unknown key `{name}`: `durable-host serve` has no flag --{name}"),
            ));
        };
        let id = arg.get_id().to_string();
        if let Some(earlier) = key_of.insert(id.clone(), name.clone()) {
            return Err(at(
                offset,
                format!("`{name}` sets the same flag as `{earlier}`"),
            ));
        }
        let offset = value.span().start;
        let list = scalars(arg, name, value.get_ref()).map_err(|reason| at(offset, reason))?;
        for v in &list {
            check(arg, v).map_err(|reason| at(offset, reason))?;
        }
        values.insert(id, list);
    }
    Ok(values)
}

/// The file value as the text values clap parses, or why its type does not fit the flag.
fn scalars(arg: &Arg, key: &str, value: &Value) -> Result<Vec<String>, String> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Integer(i) => Some(i.to_string()),
            // Debug keeps the point (`1.0`), so an integer flag refuses a float.
            Value::Float(f) => Some(format!("{f:?}")),
            Value::Boolean(b) => Some(b.to_string()),
            Value::Datetime(_) | Value::Array(_) | Value::Table(_) => None,
        }
    }
    let wrong = |v: &Value, wanted: &str| {
        format!(
            "wrong type for `{key}`: expected {wanted}, found {}",
            v.type_str()
        )
    };
    if repeatable(arg) {
        let Value::Array(items) = value else {
            return Err(wrong(value, "an array (the flag is repeatable)"));
        };
        items
            .iter()
            .map(|v| scalar(v).ok_or_else(|| wrong(v, "an array of single values")))
            .collect()
    } else {
        scalar(value)
            .map(|s| vec![s])
            .ok_or_else(|| wrong(value, "a single value"))
    }
}

/// `Ok` if clap accepts `value` for the flag (its own value parser), else clap's reason.
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("expected true or false, found '{value}'")),
        };
    }
    // The flag alone, without the default the value would replace, parsing `--long=value`
    // (`=`: a value that starts with `-` stays a value).
    let long = arg.get_long().unwrap_or_default();
    let probe = Command::new("serve")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(
            arg.clone()
                .default_values(Vec::<String>::new())
                .required(false),
        );
    match probe.try_get_matches_from([format!("--{long}={value}")]) {
        Ok(_) => Ok(()),
        Err(e) => {
            // clap renders "error: invalid value ...\n\nFor more information, ...": keep the
            // reason.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.strip_prefix("error: ").unwrap_or(first).to_string())
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_cli, Command as Sub, ParseError, ServeArgs};
    use clap::CommandFactory;

    /// `serve` parsed from `flags`, with `env` as the process environment and `file`, if
    /// any, written to a config file given by `--config`. Errors as the user sees them.
    fn serve(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: &[&str],
    ) -> Result<ServeArgs, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable.toml");
        let mut argv: Vec<std::ffi::OsString> = vec!["durable-host".into(), "serve".into()];
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
            argv.push("--config".into());
            argv.push(path.clone().into());
        }
        argv.extend(flags.iter().map(Into::into));
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse_cli(&argv, &env) {
            Ok(cli) => match cli.command {
                Sub::Serve(a) => Ok(a),
                Sub::Client(_) => panic!("parsed as a client command"),
            },
            // The path is the temporary one: name it as the user's would be.
            Err(ParseError::Config(e)) => {
                Err(e.to_string().replace(path.to_str().unwrap(), "FILE"))
            }
            Err(ParseError::Clap(e)) => Err(e.to_string()),
        }
    }

    #[test]
    fn precedence_is_flag_over_env_over_file_over_default() {
        // (file, env, flag, expected --max-resident)
        type Case = (Option<u32>, Option<u32>, Option<u32>, usize);
        let cases: [Case; 8] = [
            (None, None, None, 256),
            (Some(1), None, None, 1),
            (None, Some(2), None, 2),
            (None, None, Some(3), 3),
            (Some(1), Some(2), None, 2),
            (Some(1), None, Some(3), 3),
            (None, Some(2), Some(3), 3),
            (Some(1), Some(2), Some(3), 3),
        ];
        for (file, env, flag, want) in cases {
            let text = file.map(|v| format!("max_resident = {v}\n"));
            let env_v = env.map(|v| v.to_string());
            let env: Vec<(&str, &str)> = env_v
                .iter()
                .map(|v| ("DURABLE_MAX_RESIDENT", v.as_str()))
                .collect();
            let flag_v = flag.map(|v| v.to_string());
            let mut flags = vec![];
            if let Some(v) = &flag_v {
                flags.extend(["--max-resident", v.as_str()]);
            }
            let got = serve(text.as_deref(), &env, &flags).unwrap().max_resident;
            assert_eq!(got, want, "file {file:?}, env {env:?}, flag {flag:?}");
        }
    }

    #[test]
    fn repeatable_flags_take_an_array_and_each_source_replaces_the_one_below() {
        let file = Some("allow_outbound = [\"a:1\", \"b:2\"]\n");
        // (file, env, flags, expected --allow-outbound)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: [Case; 6] = [
            (None, None, &[], &[]),
            (file, None, &[], &["a:1", "b:2"]),
            (Some("allow_outbound = []\n"), None, &[], &[]),
            (file, Some("c:3, d:4"), &[], &["c:3", "d:4"]),
            (file, Some("c:3"), &["--allow-outbound", "e:5"], &["e:5"]),
            (
                None,
                None,
                &["--allow-outbound", "e:5", "--allow-outbound", "f:6"],
                &["e:5", "f:6"],
            ),
        ];
        for (file, env, flags, want) in cases {
            let env: Vec<(&str, &str)> = env
                .map(|v| ("DURABLE_ALLOW_OUTBOUND", v))
                .into_iter()
                .collect();
            let got = serve(file, &env, flags).unwrap().allow_outbound;
            assert_eq!(got, want, "file {file:?}, env {env:?}, flags {flags:?}");
        }
    }

    #[test]
    fn every_kind_of_value_comes_from_the_file() {
        let a = serve(
            Some(
                "listen = \"0.0.0.0:7799\"\ndata-dir = \"/srv/durable\"\n\
                 activation_timeout_secs = 2.5\nheader_read_timeout_secs = 3\n\
                 memory_budget_mb = \"4096\"\n",
            ),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(a.listen, "0.0.0.0:7799".parse().unwrap());
        assert_eq!(a.data_dir, PathBuf::from("/srv/durable"));
        assert_eq!(a.activation_timeout_secs, 2.5);
        assert_eq!(a.header_read_timeout_secs, 3.0);
        assert_eq!(a.memory_budget_mb, Some(4096));
        // Untouched flags keep their defaults; an empty variable is unset.
        let b = serve(Some("\n"), &[("DURABLE_MAX_RESIDENT", "")], &[]).unwrap();
        assert_eq!((b.max_resident, b.memory_budget_mb), (256, None));
    }

    #[test]
    fn durable_config_names_the_file_and_the_flag_beats_it() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "max_resident = 7\n").unwrap();
        let other = other.to_str().unwrap();
        assert_eq!(
            serve(None, &[("DURABLE_CONFIG", other)], &[])
                .unwrap()
                .max_resident,
            7
        );
        let by_flag = serve(
            Some("max_resident = 8\n"),
            &[("DURABLE_CONFIG", other)],
            &[],
        );
        assert_eq!(by_flag.unwrap().max_resident, 8);
    }

    #[test]
    fn a_flag_added_later_gets_env_and_file_with_no_code() {
        // Any `serve`-like command: a switch and a number nobody wrote configuration code for.
        let cmd = clap::Command::new("serve")
            .arg(
                Arg::new("insecure_thing")
                    .long("insecure-thing")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("new_limit")
                    .long("new-limit")
                    .value_parser(clap::value_parser!(u64))
                    .default_value("1"),
            );
        let env = BTreeMap::from([("DURABLE_NEW_LIMIT".to_string(), "3".to_string())]);
        let file = "insecure-thing = true
new_limit = 2
";
        let layered = layer(cmd.clone(), Some((Path::new("f.toml"), file)), &env).unwrap();
        let m = layered.clone().try_get_matches_from(["serve"]).unwrap();
        assert!(m.get_flag("insecure_thing"));
        assert_eq!(m.get_one::<u64>("new_limit"), Some(&3));
        let m = layered
            .try_get_matches_from(["serve", "--new-limit", "4"])
            .unwrap();
        assert_eq!(m.get_one::<u64>("new_limit"), Some(&4));
        let err = layer(
            cmd,
            Some((Path::new("f.toml"), "insecure_thing = 1\n")),
            &env,
        );
        let err = err.unwrap_err().to_string();
        assert_eq!(
            err,
            "config file f.toml, line 1: expected true or false, found '1'"
        );
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_file_the_line_and_the_reason() {
        // (file, line, what the reason says)
        let cases: &[(&str, usize, &str)] = &[
            (
                "listen = \"127.0.0.1:1\"\nno_such_flag = 1\n",
                2,
                "unknown key `no_such_flag`",
            ),
            (
                "\n\nmax_resident = \"lots\"\n",
                3,
                "invalid value 'lots' for '--max-resident",
            ),
            (
                "max_resident = 1.5\n",
                1,
                "invalid value '1.5' for '--max-resident",
            ),
            (
                "max_resident = -1\n",
                1,
                "invalid value '-1' for '--max-resident",
            ),
            ("listen = 7700\n", 1, "invalid value '7700' for '--listen"),
            (
                "max_resident = [1]\n",
                1,
                "wrong type for `max_resident`: expected a single value, found array",
            ),
            (
                "allow_outbound = \"a:1\"\n",
                1,
                "wrong type for `allow_outbound`: expected an array",
            ),
            (
                "allow_outbound = [[\"a:1\"]]\n",
                1,
                "expected an array of single values, found array",
            ),
            (
                "# settings\n[max_resident]\nvalue = 1\n",
                2,
                "wrong type for `max_resident`: expected a single value, found table",
            ),
            (
                "max_resident = 1\nmax-resident = 2\n",
                2,
                "`max-resident` sets the same flag as `max_resident`",
            ),
            (
                "config = \"other.toml\"\n",
                1,
                "cannot be set in a config file",
            ),
            // TOML syntax: the parser's own reason, at its line.
            (
                "max_resident = 1\nlisten = \"127.0.0.1:1\n",
                2,
                "invalid basic string",
            ),
            ("max_resident = 1\n\nmax_resident = 2\n", 3, "duplicate key"),
            ("max_resident 1\n", 1, "expected"),
        ];
        for (text, line, reason) in cases {
            let err = serve(Some(text), &[], &[])
                .err()
                .unwrap_or_else(|| panic!("accepted: {text:?}"));
            let prefix = format!("config file FILE, line {line}: ");
            assert!(err.starts_with(&prefix), "{text:?}: {err}");
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_bad_variable_is_refused_naming_it() {
        let err = serve(None, &[("DURABLE_MAX_RESIDENT", "lots")], &[]).unwrap_err();
        assert!(
            err.starts_with("environment variable DURABLE_MAX_RESIDENT: invalid value 'lots'"),
            "{err}"
        );
        let err = serve(
            None,
            &[("DURABLE_CONFIG", "/nonexistent/durable.toml")],
            &[],
        )
        .unwrap_err();
        assert!(
            err.starts_with("cannot read config file /nonexistent/durable.toml"),
            "{err}"
        );
    }

    /// The `serve` subcommand as clap sees it.
    fn serve_command() -> clap::Command {
        crate::Cli::command()
            .find_subcommand("serve")
            .unwrap()
            .clone()
    }

    #[test]
    fn every_serve_flag_is_in_the_readme_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let cmd = serve_command();
        let mut longs: Vec<&str> = settable(&cmd).filter_map(|a| a.get_long()).collect();
        assert!(longs.len() > 20, "{longs:?}");
        longs.push(CONFIG_ARG);
        for long in longs {
            let flag = format!("| `--{long}");
            let row = readme
                .lines()
                .find(|l| l.starts_with(&flag) && l[flag.len()..].starts_with(['`', ' ']))
                .unwrap_or_else(|| panic!("README.md's `serve` table has no row for --{long}"));
            let key = if long == CONFIG_ARG {
                "(none)".to_string()
            } else {
                format!("`{}`", file_key(long))
            };
            let cells: Vec<&str> = row.split(" | ").collect();
            assert_eq!(cells[1], format!("`{}`", env_name(long)), "{row}");
            assert!(cells[2].starts_with(&key), "{row}");
        }
    }

    #[test]
    fn serve_variables_do_not_collide_with_the_clients() {
        // A client option read from the environment: a `serve` flag deriving the same name
        // must be the same option (the same meaning for both).
        let cmd = crate::Cli::command();
        let serve = serve_command();
        for client in cmd.get_arguments().filter(|a| a.get_env().is_some()) {
            let var = client.get_env().unwrap().to_str().unwrap();
            for arg in settable(&serve) {
                let long = arg.get_long().unwrap();
                assert!(
                    env_name(long) != var || client.get_long() == Some(long),
                    "{var}"
                );
            }
        }
    }
}
