//! A browser for form tests: an HTTPS client with its own cookie jar that
//! sends forms with Portcullis's own `Origin` and never follows redirects,
//! so every response can be inspected.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};

use super::Server;

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(LOCATION)
            .map(|value| value.to_str().unwrap())
    }

    /// Finds the `Set-Cookie` header that sets `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .find(|cookie| cookie.starts_with(&format!("{name}=")))
    }

    /// The value of the header `name`, or `""` when it is missing.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The query of the `Location` header, which must start with `prefix`.
    pub fn redirect_query(&self, prefix: &str) -> BTreeMap<String, String> {
        let location = self.location().expect("a Location header");
        assert!(
            location.starts_with(&format!("{prefix}?")),
            "{location} does not go to {prefix}"
        );
        Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }
}

/// One part of a `multipart/form-data` body: a text field, or a file
/// when `filename` is given.
#[derive(Clone)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content: Vec<u8>,
}

impl Part {
    /// Builds a text field `name` with `value`.
    pub fn text(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            filename: None,
            content: value.as_bytes().to_vec(),
        }
    }

    /// Builds a file field `name` that sends `content` as the file
    /// `filename`.
    pub fn file(name: &str, filename: &str, content: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            filename: Some(filename.to_owned()),
            content: content.to_vec(),
        }
    }
}

/// A client with a cookie jar. `post` sends a form to `form_path` with the
/// `Origin` of the server's issuer, `https://localhost:PORT`.
pub struct Browser {
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    base: String,
    pub origin: String,
    form_path: String,
}

impl Browser {
    /// A browser for `server` whose forms post to `form_path`.
    pub fn new(server: &Server, form_path: &str) -> Self {
        let ca = reqwest::Certificate::from_pem(&server.ca_pem).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", server.address)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            cookies: BTreeMap::new(),
            base: server.url(""),
            origin: format!("https://localhost:{}", server.address.port()),
            form_path: form_path.to_owned(),
        }
    }

    /// Signs `email` of `tenant` in to the dashboard and returns the
    /// browser with its session cookie.
    pub async fn signed_in(server: &Server, tenant: &str, email: &str, password: &str) -> Self {
        let mut browser = Self::new(server, "/dashboard/sign-in");
        let page = browser.get("/dashboard/sign-in").await;
        let mut fields = hidden_fields(&page.body);
        fields.push(("tenant".to_owned(), tenant.to_owned()));
        fields.push(("email".to_owned(), email.to_owned()));
        fields.push(("password".to_owned(), password.to_owned()));
        let reply = browser.post(&fields).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        browser
    }

    /// Opens `page` and returns the CSRF token of its first form, the
    /// page's one-time submission token when it has one, then `extra`: the
    /// fields of a form to post.
    pub async fn csrf_fields(
        &mut self,
        page: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let reply = self.get(page).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}: {}", reply.body);
        let hidden = hidden_fields(&reply.body);
        let mut fields: Vec<(String, String)> = Vec::new();
        for wanted in ["csrf_token", "submission_token"] {
            if let Some(field) = hidden.iter().find(|(name, _)| name == wanted) {
                fields.push(field.clone());
            }
        }
        for (name, value) in extra {
            fields.push(((*name).to_owned(), (*value).to_owned()));
        }
        fields
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        let request = self
            .http
            .get(self.absolute(url))
            .header("cookie", self.cookie_header());
        self.send(request).await
    }

    /// Sends a request with `method` to `url` with the cookies and the
    /// extra `headers`, and no body.
    pub async fn request(
        &mut self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .request(method, self.absolute(url))
            .header("cookie", self.cookie_header());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    pub async fn post(&mut self, fields: &[(String, String)]) -> Reply {
        let path = self.form_path.clone();
        self.post_to(&path, fields).await
    }

    /// Posts `fields` to `path` with the server's own `Origin`.
    pub async fn post_to(&mut self, path: &str, fields: &[(String, String)]) -> Reply {
        let origin = self.origin.clone();
        self.post_to_with(path, fields, &[("origin", origin.as_str())])
            .await
    }

    pub async fn post_with(
        &mut self,
        fields: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let path = self.form_path.clone();
        self.post_to_with(&path, fields, headers).await
    }

    /// Posts `fields` to `path` with only the given extra `headers`.
    pub async fn post_to_with(
        &mut self,
        path: &str,
        fields: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut body = url_encode(fields);
        if body.is_empty() {
            body.push_str("x=");
        }
        let mut request = self
            .http
            .post(self.absolute(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", self.cookie_header())
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Posts `parts` to `path` as `multipart/form-data` (RFC 7578) with the
    /// server's own `Origin`, as a browser sends a form with a file input.
    pub async fn post_multipart_to(&mut self, path: &str, parts: &[Part]) -> Reply {
        const BOUNDARY: &str = "----portcullis-test-boundary-7f3a9c";
        let mut body = Vec::new();
        for part in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let disposition = match &part.filename {
                Some(filename) => format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n",
                    part.name
                ),
                None => format!(
                    "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                    part.name
                ),
            };
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(&part.content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let request = self
            .http
            .post(self.absolute(path))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header("cookie", self.cookie_header())
            .header("origin", self.origin.clone())
            .body(body);
        self.send(request).await
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for cookie in headers.get_all(SET_COOKIE) {
            let text = cookie.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn url_encode(fields: &[(String, String)]) -> String {
    let mut url = Url::parse("https://form.invalid/").unwrap();
    url.query_pairs_mut().extend_pairs(fields);
    url.query().unwrap_or_default().to_owned()
}

/// Extracts the hidden fields of the forms in `html`, unescaped.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    const START: &str = "<input type=\"hidden\" name=\"";
    let mut fields = Vec::new();
    let mut rest = html;
    while let Some(index) = rest.find(START) {
        rest = &rest[index + START.len()..];
        let (name, after_name) = rest.split_once('"').unwrap();
        let after_value = after_name.strip_prefix(" value=\"").unwrap();
        let (value, after) = after_value.split_once('"').unwrap();
        fields.push((unescape(name), unescape(value)));
        rest = after;
    }
    fields
}

/// Undoes askama's HTML escaping: `&#NN;` numeric references and the named
/// ones for `&`, `<`, `>` and `"`.
pub fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(index) = rest.find('&') {
        out.push_str(&rest[..index]);
        let (entity, after) = rest[index + 1..].split_once(';').unwrap();
        let decoded = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            numeric => char::from_u32(numeric.strip_prefix('#').unwrap().parse().unwrap()).unwrap(),
        };
        out.push(decoded);
        rest = after;
    }
    out.push_str(rest);
    out
}
