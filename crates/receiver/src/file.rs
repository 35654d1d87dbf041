//! The receiver's configuration file (`--config PATH`, `CMC_CONFIG`): a
//! TOML file in which every flag of the program is a key, and
//! `[[source]]` tables add named sources (several CMC accounts).
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! allow = ["203.0.113.0/24"]
//! store_file = "/etc/cmc-receiver/store-url"
//! body_limit = "25MiB"
//! concurrency = 8
//!
//! [[source]]
//! name = "production"
//! api_key_file = "/etc/cmc-receiver/production.key"
//!
//! [[source]]
//! name = "sandbox"
//! basic_auth = "cmc:sandbox-password"
//! time_zone = "UTC"
//! path = "/mails/sandbox"
//! allow = ["198.51.100.0/24"]
//! ```
//!
//! A key is a flag's long name, with `_` or `-` (`body_limit`,
//! `body-limit`); its value a string, an integer, a boolean (for switches
//! such as `report_only`) or, for a repeatable flag, an array. A flag
//! given on the command line, or its environment variable, wins over the
//! file: the file's value for that key is then ignored (not added to).
//! An unknown key is an error naming the key and its line. Secrets may be
//! written in the file (keep it `chmod 600`: the receiver warns
//! otherwise) or in the files the `*_file` keys name; no error or log
//! line repeats them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::config::{Args, SourceConfig};

/// The largest configuration file read.
const MAX_FILE: u64 = 1 << 20;

/// Keys of the file that hold secrets, for the permission warning.
const SECRET_KEYS: [&str; 3] = ["api_key", "basic_auth", "store"];

/// The `[[source]]` tables, read with serde (each refuses unknown keys).
#[derive(Deserialize)]
struct Sources {
    #[serde(default)]
    source: Vec<SourceConfig>,
}

/// The arguments of the command line and the environment, with the
/// --config file under them: exits with clap's message on `--help` and on
/// a malformed command line, as `Args::parse` does.
pub fn load() -> Result<Args, String> {
    let matches = Args::command().get_matches();
    with_config_file(&matches, std::env::args_os().collect())
}

/// [`load`] from `argv` (its first item the program's name), with every
/// error returned.
pub fn try_load_from<I, T>(argv: I) -> Result<Args, String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let matches = Args::command()
        .try_get_matches_from(argv.clone())
        .map_err(|e| e.to_string())?;
    with_config_file(&matches, argv)
}

/// The arguments of the command line `argv`, with the file that
/// `--config` (or `CMC_CONFIG`) names filled in under them.
pub fn with_config_file(matches: &ArgMatches, argv: Vec<OsString>) -> Result<Args, String> {
    let args = Args::from_arg_matches(matches).map_err(|e| e.to_string())?;
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let text = read(&path)?;
    let shown = path.display().to_string();
    let at = |offset: usize| line_of(&text, offset);
    let table = DeTable::parse(&text).map_err(|e| describe(&shown, &text, &e))?;
    let command = Args::command();
    // The same flags without their environment variables, to check each
    // of the file's values alone.
    let bare = Args::command().mut_args(|a| a.env(None::<&str>));
    let mut tokens: Vec<OsString> = vec![
        argv.first()
            .cloned()
            .unwrap_or_else(|| "cmc-receiver".into()),
    ];
    let mut seen: Vec<String> = Vec::new();
    let mut secrets = false;
    // In the file's order, so that an error names the later of two lines.
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    for (key, value) in entries {
        let line = at(key.span().start);
        let name = key.get_ref().as_ref();
        if name == "source" {
            if !matches!(value.get_ref(), DeValue::Array(_)) {
                return Err(format!(
                    "{shown}:{line}: `source` is written as [[source]] tables, one per source"
                ));
            }
            secrets = true;
            continue;
        }
        let id = name.replace('-', "_");
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == id.as_str() && a.get_long().is_some())
            .filter(|_| !matches!(id.as_str(), "config" | "help" | "version"))
            .ok_or_else(|| {
                format!(
                    "{shown}:{line}: unknown key `{name}` (keys are the flags' names: see --help)"
                )
            })?;
        if seen.contains(&id) {
            return Err(format!("{shown}:{line}: `{name}` is given twice"));
        }
        seen.push(id.clone());
        secrets |= SECRET_KEYS.contains(&id.as_str());
        // The command line and the environment win over the file, for the
        // key and for the keys it conflicts with (`store` over
        // `store_file`).
        let set_outside = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        if set_outside(&id)
            || command
                .get_arg_conflicts_with(arg)
                .iter()
                .any(|other| set_outside(other.get_id().as_str()))
        {
            continue;
        }
        let long = arg.get_long().unwrap_or(name);
        let takes_values = arg.get_action().takes_values();
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        let items: Vec<&toml::Spanned<DeValue>> = match value.get_ref() {
            DeValue::Array(items) if repeatable => items.iter().collect(),
            DeValue::Array(_) => {
                return Err(format!(
                    "{shown}:{line}: `{name}` takes one value, not an array"
                ));
            }
            _ => vec![value],
        };
        for item in items {
            let line = at(item.span().start);
            let text = match (item.get_ref(), takes_values) {
                (DeValue::Boolean(on), false) => {
                    if *on {
                        tokens.push(format!("--{long}").into());
                    }
                    continue;
                }
                (_, false) => {
                    return Err(format!(
                        "{shown}:{line}: `{name}` is a switch: true or false"
                    ));
                }
                (DeValue::String(s), true) => s.to_string(),
                (DeValue::Integer(n), true) if n.radix() == 10 => n.as_str().replace('_', ""),
                (DeValue::Boolean(b), true) => b.to_string(),
                (_, true) => {
                    return Err(format!(
                        "{shown}:{line}: `{name}` takes a string or a whole number"
                    ));
                }
            };
            if let Some(delimiter) = arg.get_value_delimiter()
                && text.contains(delimiter)
            {
                return Err(format!(
                    "{shown}:{line}: `{name}`: one value per array item (the value holds `{delimiter}`, \
                     which would split it; the value is not shown)"
                ));
            }
            // Each value is checked here, so that an error names its line;
            // clap's message names the flag, and a secret's parser never
            // fails (nor shows it).
            let token = format!("--{long}={text}");
            bare.clone()
                .try_get_matches_from(["cmc-receiver", token.as_str()])
                .map_err(|e| format!("{shown}:{line}: `{name}`: {}", first_line(&e)))?;
            tokens.push(token.into());
        }
    }
    let sources: Sources = toml::from_str(&text).map_err(|e| describe(&shown, &text, &e))?;
    for (i, source) in sources.source.iter().enumerate() {
        if sources.source[..i].iter().any(|s| s.name == source.name) {
            return Err(format!(
                "{shown}: two [[source]] tables are named `{}`",
                cmc_webhook_core::printable(&source.name, 64)
            ));
        }
    }
    warn_if_readable(&path, secrets);
    // The file's values first: a flag of the command line (kept from
    // argv) is then parsed after them; those it sets were left out above.
    tokens.extend(argv.into_iter().skip(1));
    let matches = Args::command()
        .try_get_matches_from(tokens)
        .map_err(|e| format!("{shown}: {}", first_line(&e)))?;
    let mut args = Args::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    args.sources = sources.source;
    Ok(args)
}

/// The first line of clap's message, without its `error: `.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.trim().lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_owned()
}

/// The file's text, within [`MAX_FILE`].
fn read(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let bytes = crate::read::read_regular(path, MAX_FILE).map_err(|e| match e {
        crate::read::ReadError::TooLarge(_) => {
            format!("--config {shown}: larger than {MAX_FILE} bytes, not a configuration file")
        }
        other => format!("--config {shown}: {other}"),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "--config {shown}: not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The line (from 1) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML error as `PATH:LINE: message`, without the line's text (which
/// may hold a secret).
fn describe(shown: &str, text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map_or_else(String::new, |s| format!("{}:", line_of(text, s.start)));
    // serde's "invalid type" messages quote the value: left out.
    let message = e.message().trim();
    let message = if message.starts_with("invalid type") || message.starts_with("invalid value") {
        message
            .split_once(", expected")
            .map_or("a value of the wrong type".to_owned(), |(_, exp)| {
                format!("a value of the wrong type: expected{exp}")
            })
    } else {
        message.to_owned()
    };
    format!("{shown}:{line} {message}")
}

/// Warns when a file holding secrets can be read by other users.
fn warn_if_readable(path: &PathBuf, secrets: bool) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if secrets
            && let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "--config {} holds credentials and can be read by other users (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, secrets);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
