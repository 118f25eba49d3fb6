//! A real upstream HTTP/1.1 server that records what it receives and echoes
//! it back as JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// The running upstream.
pub struct Upstream {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Starts the upstream on a thread with its own runtime, so it works
    /// from sync and async tests alike and outlives any one test's runtime.
    /// Paths: `/slow…` waits 10 s (or `?ms=N` milliseconds) before
    /// answering, `/large` streams
    /// 8 MiB; everything else echoes the request.
    pub fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let record = record.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| handle(request, record.clone()));
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        let address = receiver.recv().unwrap();
        Self { address, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }

    /// How many requests arrived carrying `X-Test-Case: marker`. Tests run
    /// in parallel against one upstream, so each counts only its own.
    pub fn count_marked(&self, marker: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.header("x-test-case") == Some(marker))
            .count()
    }

    /// Returns the requests that arrived with `X-Test-Case: marker`.
    pub fn marked(&self, marker: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.header("x-test-case") == Some(marker))
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(
    request: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<EchoBody>, Infallible> {
    let method = request.method().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();

    // Count the body as it streams; a body cut short by the gateway is not
    // recorded as a complete request.
    let mut body = request.into_body();
    let mut body_len = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_len += frame.data_ref().map_or(0, |data| data.len()),
            Err(_) => return Ok(Response::new(Full::new(Bytes::new()).boxed())),
        }
    }
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path_and_query: path_and_query.clone(),
        headers: headers.clone(),
        body_len,
    });

    if path_and_query.contains("/slow") {
        let millis = path_and_query
            .split_once("ms=")
            .and_then(|(_, rest)| rest.parse().ok())
            .unwrap_or(10_000);
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
    if path_and_query.ends_with("/large") {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        return Ok(Response::new(
            RepeatBody {
                chunk,
                remaining: 128,
            }
            .boxed(),
        ));
    }
    let echo = json!({
        "method": method,
        "path": path_and_query,
        "headers": headers,
        "body_len": body_len,
    });
    let mut response = Response::new(Full::new(Bytes::from(echo.to_string())).boxed());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
        .headers_mut()
        .insert("connection", "x-upstream-hop".parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream-hop", "1".parse().unwrap());
    Ok(response)
}

/// A body of `remaining` copies of `chunk`, sent one frame at a time.
struct RepeatBody {
    chunk: Bytes,
    remaining: usize,
}

impl hyper::body::Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        self.remaining -= 1;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}
