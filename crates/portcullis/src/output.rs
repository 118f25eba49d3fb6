//! Printing results: aligned tables for people, JSON for scripts.
//!
//! Table cells escape control characters, so a key label or revocation
//! reason with a line break or a terminal escape sequence cannot break the
//! table or rewrite the terminal. JSON output carries such text as JSON
//! string escapes.

use std::io::Write;

use anyhow::Context;
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;

/// Writes `text` to standard output.
///
/// A closed pipe (`portcullis keys list | head -1`) is not an error: the
/// reader has everything it wanted.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    match written {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("failed to write to standard output"),
    }
}

/// Writes `text` and a newline to standard error, ignoring a failed write.
///
/// `eprintln!` panics when standard error is a closed pipe
/// (`portcullis certs verify … 2>&1 | head -1`), which would turn a
/// rejection's exit status 1 into a panic's 101.
pub(crate) fn print_error(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

/// Writes `value` to standard output as pretty-printed JSON and a newline.
pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("failed to encode JSON output")?;
    text.push('\n');
    print(&text)
}

/// Rows under a header line, each column as wide as its widest cell.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Starts a table with the given column headers.
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row. Cells are escaped with [`cell`] here.
    pub(crate) fn push(&mut self, row: &[&str]) {
        self.rows.push(row.iter().map(|text| cell(text)).collect());
    }

    /// Renders the table with two spaces between columns and no trailing
    /// blanks. An empty table renders as its header line alone.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, text) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }

        let mut out = String::new();
        let headers = self
            .headers
            .iter()
            .map(|h| (*h).to_owned())
            .collect::<Vec<_>>();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (text, width) in row.iter().zip(&widths) {
                let padding = width.saturating_sub(text.chars().count());
                line.push_str(text);
                line.push_str(&" ".repeat(padding + 2));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders `pairs` as `label  value` lines with aligned values, escaping
/// each value with [`cell`].
pub(crate) fn details(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in pairs {
        out.push_str(&format!("{label:<width$}  {}\n", cell(value)));
    }
    out
}

/// Escapes control characters (line breaks, tabs, ESC and the rest of
/// Unicode's `Cc` category) as `\n`, `\t` or `\u{1b}`, and leaves other
/// text as it is.
pub(crate) fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Formats a time as `2026-12-04 15:49:30Z`, or `absent` when there is none.
pub(crate) fn time_or(at: Option<OffsetDateTime>, absent: &str) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    match at {
        Some(at) => at
            .to_offset(time::UtcOffset::UTC)
            .format(&format)
            .unwrap_or_else(|_| at.to_string()),
        None => absent.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_escapes_control_characters() {
        assert_eq!(cell("line one\nline two"), "line one\\nline two");
        assert_eq!(cell("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(cell("tab\there"), "tab\\there");
        assert_eq!(cell("plain text, ünïcode"), "plain text, ünïcode");
    }

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&["NAME", "ID"]);
        table.push(&["acme-billing", "1"]);
        table.push(&["a", "22"]);
        assert_eq!(
            table.render(),
            "NAME          ID\nacme-billing  1\na             22\n"
        );
    }

    #[test]
    fn table_escapes_cells() {
        let mut table = Table::new(&["REASON"]);
        table.push(&["leaked\nin a log"]);
        assert_eq!(table.render(), "REASON\nleaked\\nin a log\n");
    }

    #[test]
    fn time_formats_in_utc() {
        let at = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(time_or(Some(at), "never"), "1970-01-01 00:00:00Z");
        assert_eq!(time_or(None, "never"), "never");
    }
}
