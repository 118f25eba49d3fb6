//! The `PORTCULLIS_<PATH>` overlay on the parsed file.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use toml::{Table, Value};

use super::ConfigError;

/// Prefix of every Portcullis environment variable.
pub(super) const PREFIX: &str = "PORTCULLIS_";

/// Separator of path segments in a variable name.
const SEPARATOR: &str = "__";

/// One step of a setting path: a table key (lower-cased) or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Segment {
    fn parse(text: &str) -> Self {
        match text.parse::<usize>() {
            Ok(index) if text.bytes().all(|b| b.is_ascii_digit()) => Self::Index(index),
            _ => Self::Key(text.to_ascii_lowercase()),
        }
    }
}

/// Orders indexes numerically, so `ROUTES__2` is applied before `ROUTES__10`
/// and arrays grow one element at a time.
fn compare_paths(a: &[Segment], b: &[Segment]) -> Ordering {
    for (left, right) in a.iter().zip(b) {
        let order = match (left, right) {
            (Segment::Index(x), Segment::Index(y)) => x.cmp(y),
            (Segment::Key(x), Segment::Key(y)) => x.cmp(y),
            (Segment::Index(_), Segment::Key(_)) => Ordering::Less,
            (Segment::Key(_), Segment::Index(_)) => Ordering::Greater,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Applies every `PORTCULLIS_*` variable whose name contains `__` to `root`.
pub(super) fn apply_overrides(
    root: &mut Table,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let mut overrides = Vec::new();
    for (name, value) in env {
        let Some(path) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !path.contains(SEPARATOR) {
            continue;
        }
        let segments: Vec<&str> = path.split(SEPARATOR).collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(environment_error(
                name,
                "empty path segment; join setting names with exactly two underscores, \
                 as in PORTCULLIS_SERVER__LISTEN",
            ));
        }
        let segments: Vec<Segment> = segments.into_iter().map(Segment::parse).collect();
        overrides.push((segments, name, value));
    }
    overrides.sort_by(|a, b| compare_paths(&a.0, &b.0));

    for (segments, name, value) in overrides {
        set(root, &segments, parse_value(value))
            .map_err(|message| environment_error(name, message))?;
    }
    Ok(())
}

fn environment_error(variable: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Environment {
        variable: variable.to_owned(),
        message: message.into(),
    }
}

/// Reads `text` as one TOML value, or as a plain string when it is not one.
fn parse_value(text: &str) -> Value {
    // toml parses documents, not lone values, so the value is parsed as the
    // right side of a key. A text with a newline could define more keys: such
    // a text is not one value and stays a string.
    match format!("value = {text}").parse::<Table>() {
        Ok(mut table) if table.len() == 1 => table
            .remove("value")
            .unwrap_or_else(|| Value::String(text.to_owned())),
        _ => Value::String(text.to_owned()),
    }
}

/// Sets the value at `path` below `root`, creating tables and arrays on the
/// way. An index may name an existing element or the one just past the end.
fn set(root: &mut Table, path: &[Segment], value: Value) -> Result<(), String> {
    if let Some(Segment::Index(_)) = path.first() {
        return Err("the path must start with a setting name, not an index".to_owned());
    }
    let mut node = Value::Table(std::mem::take(root));
    let result = set_in(&mut node, "", path, value);
    if let Value::Table(table) = node {
        *root = table;
    }
    result
}

/// Sets `value` at `path` below `node`, whose own path is `name`.
fn set_in(node: &mut Value, name: &str, path: &[Segment], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    let child = match (node, first) {
        (Value::Table(table), segment) => {
            let key = match segment {
                Segment::Key(key) => existing_key(table, key),
                Segment::Index(index) => index.to_string(),
            };
            match rest.first() {
                Some(next) => table.entry(key).or_insert_with(|| empty_for(next)),
                None => {
                    table.insert(key, value);
                    return Ok(());
                }
            }
        }
        (Value::Array(array), Segment::Index(index)) => {
            let length = array.len();
            if *index == length {
                array.push(rest.first().map_or(Value::Boolean(false), empty_for));
            }
            match array.get_mut(*index) {
                Some(element) => element,
                None => {
                    return Err(format!(
                        "index {index} is past the end of {name}, which has {length} \
                         elements; number elements from 0 without gaps"
                    ));
                }
            }
        }
        (Value::Array(_), Segment::Key(key)) => {
            return Err(format!("{name} is an array, so {key:?} must be an index"));
        }
        (other, _) => {
            return Err(format!(
                "{name} is a {}, so it has no settings below it",
                other.type_str()
            ));
        }
    };
    let child_name = match first {
        Segment::Key(key) if name.is_empty() => key.clone(),
        Segment::Key(key) => format!("{name}.{key}"),
        Segment::Index(index) => format!("{name}[{index}]"),
    };
    set_in(child, &child_name, rest, value)
}

/// Returns an empty container of the kind that `next` indexes into.
fn empty_for(next: &Segment) -> Value {
    match next {
        Segment::Index(_) => Value::Array(Vec::new()),
        Segment::Key(_) => Value::Table(Table::new()),
    }
}

/// Returns the key of `table` equal to `key` ignoring ASCII case, or `key` itself.
/// Variable names are upper case, but the file may write a key in any case
/// (`GET` in `[routes.scopes]`), and overriding it must not add a second key.
fn existing_key(table: &Table, key: &str) -> String {
    table
        .keys()
        .find(|existing| existing.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_owned())
}
