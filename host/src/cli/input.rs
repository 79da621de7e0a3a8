//! JSON arguments (an execution's input, a callback's result or error data): given inline,
//! as `@path`, or as `-` for stdin, and checked to be JSON before anything is sent.

use std::io::Read;

use super::Error;

/// Where a JSON argument came from, for messages.
enum Source {
    Inline,
    File(String),
    Stdin,
}

impl Source {
    fn describe(&self, what: &str) -> String {
        match self {
            Source::Inline => format!("the {what}"),
            Source::File(path) => format!("the {what} in {path}"),
            Source::Stdin => format!("the {what} on stdin"),
        }
    }
}

/// The JSON text of `arg` (`None` or blank is `null`), checked locally. `what` names it
/// in messages ("input", "callback result").
pub fn json_arg(arg: Option<&str>, what: &str) -> Result<String, Error> {
    let (source, text) = match arg {
        None => (Source::Inline, String::new()),
        Some("-") => (Source::Stdin, read_stdin(what)?),
        Some(a) => match a.strip_prefix('@') {
            Some(path) => (Source::File(path.to_string()), read_file(path, what)?),
            None => (Source::Inline, a.to_string()),
        },
    };
    check_json(&source, text, what)
}

fn check_json(source: &Source, text: String, what: &str) -> Result<String, Error> {
    if text.trim().is_empty() {
        return Ok("null".to_string());
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        Ok(_) => Ok(text.trim().to_string()),
        Err(e) => {
            let hint = match source {
                Source::Inline => " (quote the argument for the shell; a string is '\"text\"')",
                _ => "",
            };
            Err(Error::Usage(format!(
                "{} is not valid JSON: {e}{hint}",
                source.describe(what)
            )))
        }
    }
}

fn read_stdin(what: &str) -> Result<String, Error> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Error::Usage(format!("cannot read the {what} from stdin: {e}")))?;
    Ok(text)
}

fn read_file(path: &str, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read the {what} from {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_json_is_kept_and_nothing_is_null() {
        assert_eq!(json_arg(None, "input").unwrap(), "null");
        assert_eq!(json_arg(Some(" "), "input").unwrap(), "null");
        assert_eq!(
            json_arg(Some(r#" {"a": [1, 2]} "#), "input").unwrap(),
            r#"{"a": [1, 2]}"#
        );
        assert_eq!(json_arg(Some("\"text\""), "input").unwrap(), "\"text\"");
    }

    #[test]
    fn invalid_json_is_refused_with_where_it_came_from() {
        let e = json_arg(Some("{bad"), "input").unwrap_err().to_string();
        assert!(e.starts_with("the input is not valid JSON: "), "{e}");
        assert!(e.contains("quote the argument"), "{e}");
        let e = json_arg(Some("hello"), "callback result")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the callback result is not valid JSON"),
            "{e}"
        );
    }

    #[test]
    fn at_path_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("in.json");
        std::fs::write(&good, "{\"n\": 1}\n").unwrap();
        let arg = format!("@{}", good.display());
        assert_eq!(json_arg(Some(&arg), "input").unwrap(), "{\"n\": 1}");

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "nope").unwrap();
        let arg = format!("@{}", bad.display());
        let e = json_arg(Some(&arg), "input").unwrap_err().to_string();
        assert!(e.starts_with(&format!("the input in {} is not valid JSON", bad.display())));

        let arg = format!("@{}", dir.path().join("missing.json").display());
        let e = json_arg(Some(&arg), "input").unwrap_err().to_string();
        assert!(e.starts_with("cannot read the input from "), "{e}");
    }
}
