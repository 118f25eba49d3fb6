//! A real HTTP/1.1 webhook receiver on 127.0.0.1 that records every request
//! and responds with scripted statuses.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// One request as the receiver saw it, with the status of its response.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The running receiver.
pub struct Receiver {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    /// Starts a receiver on a free port that responds with 200.
    pub fn start() -> Self {
        Self::start_on(0, &[])
    }

    /// Starts a receiver on `port` (0 for a free one) whose first responses
    /// have `statuses`, in order, and 200 after them.
    pub fn start_on(port: u16, statuses: &[u16]) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let (sender, bound) = std::sync::mpsc::channel();
        let record = received.clone();
        let answers = script.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let record = record.clone();
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            handle(request, record.clone(), answers.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        let address = bound.recv().unwrap();
        Self {
            address,
            received,
            script,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits up to a minute for at least `count` requests and returns all.
    pub fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {count} requests: {received:?}",
                received.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns how many scripted answers are left.
    pub fn script_left(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

/// Returns a port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn handle(
    request: Request<Incoming>,
    record: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    let answered = script.lock().unwrap().pop_front().unwrap_or(200);
    record.lock().unwrap().push(Received {
        headers,
        body,
        answered,
    });
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = StatusCode::from_u16(answered).unwrap();
    Ok(response)
}
