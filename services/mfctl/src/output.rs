//! Printing resources: aligned tables for people, JSON/YAML (proto3 JSON
//! field names, RFC 3339 times, enum names) and bare names for scripts.
//! Also the small parsers shared by commands (durations, labels).

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON (one object, or an array for lists).
    Json,
    /// YAML (one document).
    Yaml,
    /// Resource names only, one a line.
    Name,
}

/// A resource mfctl can print.
pub trait Render {
    /// Column headers of the table form.
    const COLUMNS: &'static [&'static str];
    fn row(&self) -> Vec<String>;
    fn to_json(&self) -> Value;
    fn name(&self) -> String;
}

pub fn print_one<T: Render>(format: Format, item: &T) -> Result<()> {
    match format {
        Format::Table => out!("{}", table(T::COLUMNS, &[item.row()])),
        Format::Name => outln!("{}", item.name()),
        Format::Json | Format::Yaml => print_value(format, &item.to_json())?,
    }
    Ok(())
}

pub fn print_list<T: Render>(format: Format, items: &[T]) -> Result<()> {
    match format {
        Format::Table if items.is_empty() => eprintln!("No resources found."),
        Format::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(Render::row).collect();
            out!("{}", table(T::COLUMNS, &rows));
        }
        Format::Name => items.iter().for_each(|i| outln!("{}", i.name())),
        Format::Json | Format::Yaml => print_value(
            format,
            &Value::Array(items.iter().map(Render::to_json).collect()),
        )?,
    }
    Ok(())
}

/// Writes to stdout; a closed pipe ends the process with success (the reader
/// took what it wanted), any other write error with exit code 1.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Reports a deletion: `NAME deleted`, the bare name, or `{"name", "deleted"}`.
pub fn deleted(format: Format, name: &str) -> Result<()> {
    match format {
        Format::Table => outln!("{name} deleted"),
        Format::Name => outln!("{name}"),
        Format::Json | Format::Yaml => {
            print_value(format, &json!({ "name": name, "deleted": true }))?
        }
    }
    Ok(())
}

/// JSON or YAML of any value (`table` and `name` fall back to JSON).
pub fn print_value(format: Format, value: &Value) -> Result<()> {
    if format == Format::Yaml {
        let text = serde_yaml_ng::to_string(value)
            .map_err(|e| Error::failure(format!("encoding YAML: {e}")))?;
        out!("{text}");
    } else {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::failure(format!("encoding JSON: {e}")))?;
        outln!("{text}");
    }
    Ok(())
}

/// Columns separated by three spaces, padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub fn time(ts: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts.as_ref()?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
}

/// RFC 3339, or null when absent.
pub fn ts_json(ts: &Option<prost_types::Timestamp>) -> Value {
    time(ts).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    })
}

/// `5s`, `3m`, `2h`, `4d` since the time (kubectl's AGE), `<none>` when absent.
pub fn age(ts: &Option<prost_types::Timestamp>) -> String {
    match time(ts) {
        Some(t) => human_duration((Utc::now() - t).to_std().unwrap_or_default()),
        None => "<none>".into(),
    }
}

/// Like [`age`], with "ago", for heartbeats.
pub fn ago(ts: &Option<prost_types::Timestamp>) -> String {
    match time(ts) {
        Some(_) => format!("{} ago", age(ts)),
        None => "never".into(),
    }
}

/// Remaining time until `ts` (`in 59m`), or `expired`.
pub fn until(ts: &Option<prost_types::Timestamp>) -> String {
    match time(ts) {
        Some(t) if t > Utc::now() => {
            format!(
                "in {}",
                human_duration((t - Utc::now()).to_std().unwrap_or_default())
            )
        }
        Some(_) => "expired".into(),
        None => "<none>".into(),
    }
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Longest duration [`parse_duration`] accepts: 100 years, far beyond any
/// timeout or token lifetime, and small enough that adding it to or
/// subtracting it from the current time cannot overflow.
pub const MAX_DURATION_SECS: u64 = 100 * 366 * 86_400;

/// Parses `90s`, `15m`, `24h`, `30d` or plain seconds (at most
/// [`MAX_DURATION_SECS`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 24h or 30d"))?;
    let scale: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use s, m, h or d"
            ));
        }
    };
    n.checked_mul(scale)
        .filter(|&secs| secs <= MAX_DURATION_SECS)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            format!(
                "{text:?} is too long: at most {}d",
                MAX_DURATION_SECS / 86_400
            )
        })
}

/// Parses `key=value`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// `a=1,b=2` (sorted) for tables, `<none>` when empty.
pub fn labels_cell(labels: &HashMap<String, String>) -> String {
    if labels.is_empty() {
        return "<none>".into();
    }
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

pub fn labels_json(labels: &HashMap<String, String>) -> Value {
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    Value::Object(
        keys.into_iter()
            .map(|k| (k.clone(), json!(labels[k])))
            .collect::<Map<String, Value>>(),
    )
}

/// `<none>` for an empty cell.
pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_owned()
    }
}

/// The last segment of a resource name (`tenants/acme` → `acme`).
pub fn short(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_owned()
}

/// Proto enum name, e.g. `ACTIVE`, from the generated `as_str_name`.
pub fn enum_lower(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["NAME", "AGE"], &[vec!["a".into(), "1s".into()]]);
        assert_eq!(t, "NAME   AGE\na      1s\n");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2w").is_err());
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for text in [
            "999999999d",
            "213503982334602d",
            "18446744073709551615d",
            "18446744073709551615h",
            "99999999999999999999",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(text), "{text}: {err}");
        }
        assert_eq!(
            parse_duration("36600d").unwrap(),
            Duration::from_secs(MAX_DURATION_SECS)
        );
    }
}
