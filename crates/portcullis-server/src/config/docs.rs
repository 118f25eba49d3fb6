//! The `[docs]` table, checked.

use super::ConfigError;
use super::raw::RawDocs;

/// Default heading and window title of the documentation site.
pub const DEFAULT_DOCS_TITLE: &str = "API documentation";

/// Default product name, which replaces the word "Portcullis" in the text
/// of the pages.
pub const DEFAULT_PRODUCT_NAME: &str = "Portcullis";

/// Maximum length of `docs.title` and `docs.product_name`, in characters.
/// Both go into every page, and a longer one is a mistake.
pub const MAX_DOCS_NAME_LEN: usize = 100;

/// The pages that the documentation site publishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DocsPages {
    /// Every page: the consumer pages and the operator pages.
    #[default]
    All,
    /// Only the pages for API callers. The operator pages (installation,
    /// configuration, master key, runbooks, …) return 404 and are left out
    /// of the table of contents, for a company that hands the site to its
    /// customers.
    Consumers,
}

/// The `[docs]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsConfig {
    /// Whether the main listener serves the site under `/docs/`.
    pub enabled: bool,
    /// Heading and window title of every page.
    pub title: String,
    /// Name that replaces the word "Portcullis" in the text of the pages,
    /// so a company can hand the docs to its customers under its own name.
    pub product_name: String,
    /// The pages the site publishes.
    pub pages: DocsPages,
}

impl Default for DocsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            title: DEFAULT_DOCS_TITLE.to_owned(),
            product_name: DEFAULT_PRODUCT_NAME.to_owned(),
            pages: DocsPages::All,
        }
    }
}

pub(super) fn check_docs(raw: RawDocs) -> Result<DocsConfig, ConfigError> {
    let title = check_name("docs.title", raw.title, DEFAULT_DOCS_TITLE)?;
    let product_name = check_name("docs.product_name", raw.product_name, DEFAULT_PRODUCT_NAME)?;
    let pages = match raw.pages.as_deref() {
        None | Some("all") => DocsPages::All,
        Some("consumers") => DocsPages::Consumers,
        Some(other) => {
            return Err(ConfigError::invalid(
                "docs.pages",
                format!("unknown value {other:?}; write \"all\" or \"consumers\""),
            ));
        }
    };
    Ok(DocsConfig {
        enabled: raw.enabled.unwrap_or(true),
        title,
        product_name,
        pages,
    })
}

/// Checks a name that every page shows: not blank, at most
/// [`MAX_DOCS_NAME_LEN`] characters and free of control characters. The
/// pages escape it, so markup characters are allowed.
fn check_name(setting: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(default.to_owned());
    };
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(
            setting,
            format!("is empty; write a name such as {default:?}, or leave the setting out"),
        ));
    }
    if value.chars().count() > MAX_DOCS_NAME_LEN {
        return Err(ConfigError::invalid(
            setting,
            format!("is longer than {MAX_DOCS_NAME_LEN} characters; shorten it"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            setting,
            "contains a control character such as a line break; write it on one line",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(title: Option<&str>, product_name: Option<&str>) -> Result<DocsConfig, ConfigError> {
        check_docs(RawDocs {
            enabled: None,
            title: title.map(str::to_owned),
            product_name: product_name.map(str::to_owned),
            pages: None,
        })
    }

    fn check_pages(pages: &str) -> Result<DocsConfig, ConfigError> {
        check_docs(RawDocs {
            pages: Some(pages.to_owned()),
            ..RawDocs::default()
        })
    }

    #[test]
    fn docs_defaults() {
        assert_eq!(check(None, None).unwrap(), DocsConfig::default());
    }

    #[test]
    fn docs_names_kept() {
        let config = check(Some("Acme API <docs>"), Some("Acme")).unwrap();
        assert_eq!(config.title, "Acme API <docs>");
        assert_eq!(config.product_name, "Acme");
    }

    #[test]
    fn docs_blank_title_rejected() {
        let error = check(Some("  "), None).unwrap_err().to_string();
        assert!(error.starts_with("docs.title: is empty"), "{error}");
    }

    #[test]
    fn docs_long_product_name_rejected() {
        let long = "a".repeat(MAX_DOCS_NAME_LEN + 1);
        let error = check(None, Some(&long)).unwrap_err().to_string();
        assert!(error.starts_with("docs.product_name: is longer"), "{error}");
    }

    #[test]
    fn docs_pages_parsed() {
        assert_eq!(check_pages("all").unwrap().pages, DocsPages::All);
        assert_eq!(
            check_pages("consumers").unwrap().pages,
            DocsPages::Consumers
        );
        let error = check_pages("customers").unwrap_err().to_string();
        assert!(error.starts_with("docs.pages: unknown value"), "{error}");
    }

    #[test]
    fn docs_line_break_rejected() {
        let error = check(Some("Acme\nAPI"), None).unwrap_err().to_string();
        assert!(error.contains("control character"), "{error}");
    }
}
