//! Renders the Markdown under the repository's `docs/` into HTML fragments
//! that the binary embeds and serves under `/docs/` (see `src/docs/`).
//!
//! Each `docs/**/*.md` file except `SUMMARY.md` becomes one page, addressed
//! by its path without `.md` (`consumers/api-keys`); `README.md` is the
//! index page of its folder. `SUMMARY.md` is the table of contents, in
//! mdBook's format, and becomes the navigation of every page.
//!
//! The pages under `docs/operators/` are for the people who run the
//! server, and `[docs] pages = "consumers"` leaves them out. So the build
//! also renders the table of contents without them, and fails when any
//! other page links one of them, because that link would lead a consumer
//! to a 404.
//!
//! The rendering rewrites relative links to `.md` files into site paths and
//! fails the build when a linked file does not exist. It gives every
//! heading an `id` for links to sections, and it turns raw HTML into text,
//! because the site runs no scripts and its CSP allows none. Each
//! standalone word "Portcullis" in prose becomes [`PRODUCT_MARK`], which
//! the server replaces with the configured product name.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};

/// Stands for the product name in the rendered HTML. A private-use
/// character never occurs in the docs' own text.
const PRODUCT_MARK: char = '\u{E000}';

/// The word that [`PRODUCT_MARK`] replaces.
const PRODUCT_WORD: &str = "Portcullis";

/// The folder below `docs/` whose pages are for operators, as a site path
/// prefix.
const OPERATOR_FOLDER: &str = "operators/";

fn main() -> Result<(), String> {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let docs = manifest.join("../../docs");
    println!("cargo::rerun-if-changed={}", docs.display());

    let mut files = Vec::new();
    collect_markdown(&docs, &docs, &mut files)?;
    files.sort();

    let mut pages = String::new();
    let mut navigation = String::new();
    let mut consumer_navigation = String::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for relative in &files {
        let path = docs.join(relative);
        println!("cargo::rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("failed to read {}: {error}", path.display()))?;
        let page_path = page_path(relative);
        let directory = relative
            .rsplit_once('/')
            .map_or("", |(directory, _)| directory);
        let rendered = render(&text, directory)?;
        links.extend(
            rendered
                .links
                .iter()
                .map(|link| (relative.clone(), link.clone())),
        );
        if relative == "SUMMARY.md" {
            navigation = contents_list(rendered.html);
            consumer_navigation = contents_list(render(&without_operator_pages(&text), "")?.html);
            continue;
        }
        let title = rendered.title.unwrap_or_else(|| page_path.clone());
        let for_operators = page_path.starts_with(OPERATOR_FOLDER);
        let _ = writeln!(
            pages,
            "    DocPage {{ path: {page_path:?}, title: {title:?}, body: {body:?}, \
             for_operators: {for_operators} }},",
            body = rendered.html
        );
    }
    for (source, target) in &links {
        if !files.iter().any(|file| page_path(file) == *target) {
            return Err(format!(
                "docs/{source} links /docs/{target}, which no Markdown file provides"
            ));
        }
        let from_consumer_page =
            source != "SUMMARY.md" && !page_path(source).starts_with(OPERATOR_FOLDER);
        if from_consumer_page && target.starts_with(OPERATOR_FOLDER) {
            return Err(format!(
                "docs/{source} links the operator page /docs/{target}, which a site with \
                 [docs] pages = \"consumers\" does not publish; link it from a page under \
                 docs/{OPERATOR_FOLDER} instead"
            ));
        }
    }
    if navigation.is_empty() {
        return Err(
            "docs/SUMMARY.md is missing or empty; it is the site's table of contents".into(),
        );
    }

    let generated = format!(
        "/// Every page of the site, sorted by path.\n\
         pub(crate) static PAGES: &[DocPage] = &[\n{pages}];\n\n\
         /// The table of contents, rendered from `docs/SUMMARY.md`.\n\
         pub(crate) static NAVIGATION: &str = {navigation:?};\n\n\
         /// The table of contents without the operator pages.\n\
         pub(crate) static CONSUMER_NAVIGATION: &str = {consumer_navigation:?};\n\n\
         /// Stands for the product name in [`PAGES`] and the navigation.\n\
         pub(crate) const PRODUCT_MARK: char = {PRODUCT_MARK:?};\n"
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    std::fs::write(out.join("docs_pages.rs"), generated)
        .map_err(|error| format!("failed to write the rendered docs: {error}"))
}

/// Returns the rendered `SUMMARY.md` without its own title ("Summary"),
/// which is no part of the contents.
fn contents_list(html: String) -> String {
    match html.split_once("</h1>\n") {
        Some((first, rest)) if first.starts_with("<h1") => rest.to_owned(),
        _ => html,
    }
}

/// Returns `SUMMARY.md` without the entries that link operator pages, and
/// without a part (a `# ` heading and its entries) that has no entry left.
fn without_operator_pages(summary: &str) -> String {
    let operator_link = format!("]({OPERATOR_FOLDER}");
    let mut consumer_summary = String::with_capacity(summary.len());
    let mut part = String::new();
    let mut part_lost_entries = false;
    let mut part_kept_entries = false;
    let mut flush = |part: &mut String, lost: bool, kept_entries: bool| {
        if kept_entries || !lost {
            consumer_summary.push_str(part);
        }
        part.clear();
    };
    for line in summary.lines() {
        if line.starts_with("# ") {
            flush(&mut part, part_lost_entries, part_kept_entries);
            part_lost_entries = false;
            part_kept_entries = false;
        }
        if line.contains(&operator_link) {
            part_lost_entries = true;
            continue;
        }
        if line.trim_start().starts_with("- [") {
            part_kept_entries = true;
        }
        part.push_str(line);
        part.push('\n');
    }
    flush(&mut part, part_lost_entries, part_kept_entries);
    consumer_summary
}

/// Adds the paths of the Markdown files below `directory`, relative to
/// `root` and with `/` separators, to `files`.
fn collect_markdown(root: &Path, directory: &Path, files: &mut Vec<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(directory)
        .map_err(|error| format!("failed to list {}: {error}", directory.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_markdown(root, &path, files)?;
        } else if path.extension().is_some_and(|extension| extension == "md") {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let parts: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push(parts.join("/"));
        }
    }
    Ok(())
}

/// Returns a file's site path: `a/b.md` is `a/b`, `a/README.md` is `a/`
/// and the top `README.md` is the empty path of `/docs/`.
fn page_path(relative: &str) -> String {
    let without = relative.strip_suffix(".md").unwrap_or(relative);
    match without.strip_suffix("README") {
        Some(directory) => directory.to_owned(),
        None => without.to_owned(),
    }
}

struct Rendered {
    html: String,
    /// The text of the first level-1 heading.
    title: Option<String>,
    /// The site paths of the pages that the file links, without fragments.
    links: Vec<String>,
}

/// Renders one file whose folder below `docs/` is `directory`.
fn render(text: &str, directory: &str) -> Result<Rendered, String> {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events: Vec<Event<'_>> = Parser::new_ext(text, options).collect();

    let mut output: Vec<Event<'_>> = Vec::with_capacity(events.len());
    let mut title = None;
    let mut in_code_block = false;
    let mut heading: Option<(HeadingLevel, Vec<Event<'_>>)> = None;
    let mut links = Vec::new();
    for event in events {
        let event = match event {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let rewritten = rewrite_link(&dest_url, directory)?;
                if rewritten != *dest_url
                    && let Some(site) = rewritten.strip_prefix("/docs/")
                {
                    links.push(site.split('#').next().unwrap_or_default().to_owned());
                }
                Event::Start(Tag::Link {
                    link_type,
                    dest_url: rewritten.into(),
                    title,
                    id,
                })
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                in_code_block = true;
                Event::Start(Tag::CodeBlock(kind))
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                Event::End(TagEnd::CodeBlock)
            }
            Event::Text(text) if !in_code_block => Event::Text(mark_product(&text).into()),
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            other => other,
        };

        match (&mut heading, event) {
            (None, Event::Start(Tag::Heading { level, .. })) => heading = Some((level, Vec::new())),
            (Some((level, inner)), Event::End(TagEnd::Heading(_))) => {
                let plain = plain_text(inner);
                if *level == HeadingLevel::H1 && title.is_none() {
                    title = Some(plain.clone());
                }
                output.push(Event::Start(Tag::Heading {
                    level: *level,
                    id: Some(CowStr::from(slug(&plain))),
                    classes: Vec::new(),
                    attrs: Vec::new(),
                }));
                output.append(inner);
                output.push(Event::End(TagEnd::Heading(*level)));
                heading = None;
            }
            (Some((_, inner)), event) => inner.push(event),
            (None, event) => output.push(event),
        }
    }

    let mut html_text = String::new();
    html::push_html(&mut html_text, output.into_iter());
    Ok(Rendered {
        html: html_text,
        title,
        links,
    })
}

/// Rewrites a relative link to a Markdown file into its site path under
/// `/docs/`, keeping any `#fragment`. Other links stay as written.
fn rewrite_link(destination: &str, directory: &str) -> Result<String, String> {
    if destination.contains("://") || destination.starts_with('/') || destination.starts_with('#') {
        return Ok(destination.to_owned());
    }
    let (file, fragment) = match destination.split_once('#') {
        Some((file, fragment)) => (file, Some(fragment)),
        None => (destination, None),
    };
    if !file.ends_with(".md") {
        return Ok(destination.to_owned());
    }
    let mut parts: Vec<&str> = directory
        .split('/')
        .filter(|part| !part.is_empty())
        .collect();
    for part in file.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "link {destination:?} in docs/{directory} leaves the docs folder, \
                         which the site does not serve; link the page's URL instead"
                    ));
                }
            }
            part => parts.push(part),
        }
    }
    let mut site = format!("/docs/{}", page_path(&parts.join("/")));
    if let Some(fragment) = fragment {
        site.push('#');
        site.push_str(fragment);
    }
    Ok(site)
}

/// Replaces each standalone word "Portcullis" in `text` with
/// [`PRODUCT_MARK`]. A word joined to letters, digits, `-` or `_` (as in
/// `X-Portcullis-Tenant`) is a name of its own and stays.
fn mark_product(text: &str) -> String {
    let mut marked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find(PRODUCT_WORD) {
        let (before, from) = rest.split_at(position);
        let after = from.strip_prefix(PRODUCT_WORD).unwrap_or_default();
        let joined = |character: Option<char>| {
            character.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
        };
        let previous = before.chars().last().or_else(|| marked.chars().last());
        let standalone = !joined(previous) && !joined(after.chars().next());
        marked.push_str(before);
        if standalone {
            marked.push(PRODUCT_MARK);
        } else {
            marked.push_str(PRODUCT_WORD);
        }
        rest = after;
    }
    marked.push_str(rest);
    marked
}

/// Returns the text of inline events, without markup.
fn plain_text(events: &[Event<'_>]) -> String {
    let mut text = String::new();
    for event in events {
        if let Event::Text(part) | Event::Code(part) = event {
            text.push_str(part);
        }
    }
    text
}

/// Returns a heading's anchor as GitHub forms it: lower case, spaces as
/// `-`, and only letters, digits, `-` and `_` kept.
fn slug(text: &str) -> String {
    text.replace(PRODUCT_MARK, PRODUCT_WORD)
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
