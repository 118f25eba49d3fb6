//! The HTML around each rendered page: the title, the style sheet, the
//! table of contents and the configured branding.

use super::STYLESHEET_PATH;
use super::generated::{CONSUMER_NAVIGATION, DocPage, NAVIGATION, PRODUCT_MARK};
use crate::config::{DocsConfig, DocsPages};

/// The configured names, HTML-escaped once, and the table of contents of
/// the configured pages.
pub(super) struct Branding {
    title: String,
    product_name: String,
    navigation: &'static str,
}

impl Branding {
    pub(super) fn new(config: &DocsConfig) -> Self {
        let navigation = match config.pages {
            DocsPages::All => NAVIGATION,
            DocsPages::Consumers => CONSUMER_NAVIGATION,
        };
        Self {
            title: escape(&config.title),
            product_name: escape(&config.product_name),
            navigation,
        }
    }

    /// Returns the whole HTML document of `page`. Its entry in the table of
    /// contents is marked as the current page.
    pub(super) fn page(&self, page: &DocPage) -> String {
        let href = format!("href=\"/docs/{}\"", page.path);
        let navigation =
            self.navigation
                .replacen(&href, &format!("{href} aria-current=\"page\""), 1);
        let heading = self.brand(&escape(page.title));
        self.document(&heading, &navigation, page.body)
    }

    /// Returns the document served for a path that names no page.
    pub(super) fn not_found(&self) -> String {
        self.document(
            "Page not found",
            self.navigation,
            "<h1>Page not found</h1>\n<p>No page has this address. Choose a page from the \
             contents, or start at <a href=\"/docs/\">the first page</a>.</p>\n",
        )
    }

    fn document(&self, heading: &str, navigation: &str, body: &str) -> String {
        let title = &self.title;
        let navigation = self.brand(navigation);
        let body = self.brand(body);
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{heading} · {title}</title>\n\
             <link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\n</head>\n<body>\n\
             <header class=\"top\"><a href=\"/docs/\">{title}</a></header>\n\
             <div class=\"layout\">\n<nav class=\"toc\" aria-label=\"Contents\">\n{navigation}</nav>\n\
             <main>\n{body}</main>\n</div>\n</body>\n</html>\n"
        )
    }

    /// Replaces the build script's product marks in `html` with the
    /// product name.
    fn brand(&self, html: &str) -> String {
        html.replace(PRODUCT_MARK, &self.product_name)
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branded(title: &str, product_name: &str) -> Branding {
        Branding::new(&DocsConfig {
            title: title.to_owned(),
            product_name: product_name.to_owned(),
            ..DocsConfig::default()
        })
    }

    #[test]
    fn title_escaped() {
        let html = branded("<Acme> & co", "Acme").not_found();
        assert!(html.contains("<title>Page not found · &lt;Acme&gt; &amp; co</title>"));
        assert!(!html.contains("<Acme>"));
    }

    #[test]
    fn product_name_replaces_mark() {
        let page = DocPage {
            path: "example",
            title: "About \u{E000}",
            body: "<p>\u{E000} signs tokens. <code>X-Portcullis-Tenant</code></p>",
            for_operators: false,
        };
        let html = branded("Docs", "Acme <API>").page(&page);
        assert!(html.contains("<p>Acme &lt;API&gt; signs tokens."), "{html}");
        assert!(
            html.contains("<title>About Acme &lt;API&gt; · Docs</title>"),
            "{html}"
        );
        assert!(html.contains("X-Portcullis-Tenant"));
        assert!(!html.contains('\u{E000}'));
    }
}
