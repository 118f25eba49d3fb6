//! Checks `docs/operators/configuration.md` against the parser. Every
//! setting that the parser accepts is documented, and every documented
//! setting exists. Each row names the environment variable that the
//! overlay reads for it. Each default written as a TOML value is the value
//! the parser uses when the setting is left out.
//!
//! The parser's settings are found by asking it: a table with an unknown
//! key fails with serde's "unknown field …, expected one of …" message,
//! which lists every field of that table.

use std::collections::{BTreeMap, BTreeSet};

use super::{Config, from_toml};

/// The reference page, as the repository holds it.
const REFERENCE: &str = include_str!("../../../../docs/operators/configuration.md");

/// A key that no table has, so that the parser's error lists the keys it
/// accepts.
const PROBE_KEY: &str = "zz_probe";

/// The smallest valid element of each array of tables, so that a setting
/// inside one can be checked alone.
const ROUTE: &str = "path_prefix = \"/docs-test\"\nupstream = \"http://127.0.0.1:9\"\n\
                     scopes = { \"*\" = [] }\n";
const WEBHOOK: &str = "url = \"https://hooks.example.com/docs-test\"\n\
                       secret_env = \"PORTCULLIS_DOCS_TEST_SECRET\"\n";

/// One row of the reference: the setting's path (`routes[].timeout`), its
/// default cell and its environment variable cell.
#[derive(Debug)]
struct Row {
    path: String,
    default: String,
    variable: String,
}

/// Returns the rows of every table on the page whose first cell is a
/// setting path in backticks.
fn documented_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for line in REFERENCE.lines() {
        let Some(inner) = line.trim().strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = inner.split(" | ").map(str::trim).collect();
        let [setting, default, variable, ..] = cells.as_slice() else {
            continue;
        };
        let Some(path) = code_span(setting) else {
            continue;
        };
        rows.push(Row {
            path: path.to_owned(),
            default: (*default).to_owned(),
            variable: (*variable).to_owned(),
        });
    }
    rows
}

/// Returns the text of a cell that is a single code span.
fn code_span(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// Returns the TOML text that sets `value` at `path`, inside the smallest
/// valid element when `path` is inside an array of tables.
fn toml_setting(path: &str, value: &str) -> String {
    if let Some((array, inside)) = path.split_once("[].") {
        let element = match array {
            "routes" => ROUTE,
            "alerts.webhooks" => WEBHOOK,
            _ => "",
        };
        return format!("[[{array}]]\n{element}{inside} = {value}\n");
    }
    match path.rsplit_once('.') {
        Some((table, key)) => format!("[{table}]\n{key} = {value}\n"),
        None => format!("{path} = {value}\n"),
    }
}

/// Returns the environment that the parser reads webhook secrets from.
fn env() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "PORTCULLIS_DOCS_TEST_SECRET".to_owned(),
        "0123456789abcdef0123456789abcdef".to_owned(),
    )])
}

/// Returns the keys that the table at `path` accepts, or `None` when
/// `path` is not a table of fields (a value, or a map of any keys).
fn parser_fields(path: &str) -> Option<Vec<String>> {
    let probe = match path {
        "" => format!("{PROBE_KEY} = 1\n"),
        path => toml_setting(&format!("{path}.{PROBE_KEY}"), "1"),
    };
    let message = from_toml(&probe, &env()).err()?.to_string();
    let listed = message.split("unknown field `").nth(1)?;
    let expected = listed.split_once("expected ")?.1;
    let fields = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some(fields)
}

/// Returns every setting path the parser accepts, found by probing each
/// field for a table or an array of tables below it.
fn parser_settings() -> BTreeSet<String> {
    let mut settings = BTreeSet::new();
    let mut tables = vec![String::new()];
    while let Some(table) = tables.pop() {
        let fields = parser_fields(&table).unwrap_or_default();
        for field in fields {
            let path = match table.as_str() {
                "" => field,
                table => format!("{table}.{field}"),
            };
            let array = format!("{path}[]");
            if parser_fields(&path).is_some() {
                tables.push(path);
            } else if !path.contains("[]") && parser_fields(&array).is_some() {
                tables.push(array);
            } else {
                settings.insert(path);
            }
        }
    }
    settings
}

/// Returns the environment variable that the overlay reads for `path`, with
/// index 0 for arrays.
fn variable_name(path: &str) -> String {
    let segments = path.replace("[]", ".0").replace('.', "__");
    format!("PORTCULLIS_{}", segments.to_ascii_uppercase())
}

/// Returns the configuration with only the array element that `path` is
/// inside, if any, so that a default can be compared with it.
fn baseline(path: &str) -> Config {
    let text = match path.split_once("[]") {
        Some(("routes", _)) => format!("[[routes]]\n{ROUTE}"),
        Some(("alerts.webhooks", _)) => format!("[[alerts.webhooks]]\n{WEBHOOK}"),
        _ => String::new(),
    };
    from_toml(&text, &env()).unwrap()
}

#[test]
fn reference_lists_every_setting() {
    let documented: BTreeSet<String> = documented_rows().into_iter().map(|row| row.path).collect();
    let parsed = parser_settings();
    let missing: Vec<&String> = parsed.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&parsed).collect();
    assert!(
        missing.is_empty(),
        "settings not in the reference: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "settings the parser rejects: {unknown:?}"
    );
}

#[test]
fn reference_variables_match_overlay() {
    for row in documented_rows() {
        let expected = format!("`{}`", variable_name(&row.path));
        assert_eq!(row.variable, expected, "{}", row.path);
    }
}

#[test]
fn reference_defaults_match_parser() {
    let mut checked = 0;
    for row in documented_rows() {
        let Some(value) = code_span(&row.default) else {
            continue;
        };
        if value.parse::<toml::Value>().is_err()
            && format!("v = {value}").parse::<toml::Table>().is_err()
        {
            continue;
        }
        let text = toml_setting(&row.path, value);
        let config = from_toml(&text, &env())
            .unwrap_or_else(|error| panic!("{}: default {value} rejected: {error}", row.path));
        assert_eq!(config, baseline(&row.path), "{}: default {value}", row.path);
        checked += 1;
    }
    assert!(checked > 50, "only {checked} defaults were checked");
}
