//! Bounded reading of request bodies for the endpoints that parse them
//! (OAuth forms, admin and verify JSON, leak reports).
//!
//! Bytes are counted as frames arrive, whatever the framing (Content-Length,
//! chunked or HTTP/2 DATA frames), so a body takes at most its limit plus
//! one frame of memory. A declared Content-Length over the limit is
//! rejected before any byte is read.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::StatusCode;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Sleep;

use crate::problem::Problem;

/// Reasons a bounded body read fails.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    /// The body, declared or counted, is larger than `limit` bytes.
    #[error("the request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The client paused longer than the body read timeout.
    #[error("the client sent no part of the request body in time")]
    TimedOut,
    /// The connection failed or the client stopped before the body ended.
    #[error("the request body could not be read: {0}")]
    Failed(String),
}

impl BodyReadError {
    /// Converts the error into its problem+json response: 413 for a body over
    /// its limit (RFC 9110 §15.5.14), 408 for a client that paused too long
    /// (§15.5.9) and 400 for a body that could not be read.
    pub fn into_problem(self) -> Problem {
        match self {
            Self::TooLarge { limit } => Problem::payload_too_large(limit),
            Self::TimedOut => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_read_timeout",
                "Request timeout",
                "the request body stopped arriving; send it again without pauses",
            ),
            Self::Failed(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "Invalid request",
                "the request body could not be read; send the request again",
            ),
        }
    }
}

/// Returns `true` when the request's `Content-Type` declares a form
/// (`application/x-www-form-urlencoded`), parameters such as `charset`
/// aside.
pub fn is_form_urlencoded(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Reads the whole of `body`, rejecting it as soon as it crosses `limit`
/// bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyReadError> {
    let limit_bytes = u64::try_from(limit).unwrap_or(u64::MAX);
    // hyper sets the lower size hint to the declared Content-Length of an
    // HTTP/1 request (and of an HTTP/2 request that declares one).
    if body.size_hint().lower() > limit_bytes {
        return Err(BodyReadError::TooLarge { limit: limit_bytes });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(BodyReadError::TooLarge { limit: limit_bytes })
        }
        Err(error) if caused_by_timeout(&*error) => Err(BodyReadError::TimedOut),
        Err(error) => Err(BodyReadError::Failed(error.to_string())),
    }
}

/// Checks whether `error` or one of its sources is a [`BodyTimedOut`]. Both are
/// checked because `#[error(transparent)]` skips the wrapped error itself
/// in the source chain.
pub(crate) fn caused_by_timeout(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        let timed_out = matches!(
            error.downcast_ref::<ReadTimeoutError>(),
            Some(ReadTimeoutError::TimedOut(_))
        );
        if timed_out || error.is::<BodyTimedOut>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// Error of a [`ReadTimeoutBody`] whose client paused too long.
#[derive(Debug, thiserror::Error)]
#[error("no part of the request body arrived within {0:?}")]
pub struct BodyTimedOut(Duration);

/// Errors of a [`ReadTimeoutBody`].
#[derive(Debug, thiserror::Error)]
pub enum ReadTimeoutError {
    /// The connection failed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
    /// The client paused too long.
    #[error(transparent)]
    TimedOut(#[from] BodyTimedOut),
}

/// A request body that fails when the client sends nothing for `timeout`
/// while it is being read. The clock runs only while the server waits for
/// the client, so a handler that reads the body late does not trip it.
pub struct ReadTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> ReadTimeoutBody<B> {
    /// Wraps `inner` with a pause limit of `timeout`.
    pub const fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
        }
    }
}

impl<B> http_body::Body for ReadTimeoutBody<B>
where
    B: http_body::Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = ReadTimeoutError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReadTimeoutError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(context) {
            this.deadline = None;
            return Poll::Ready(frame.map(|result| result.map_err(ReadTimeoutError::from)));
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(deadline.as_mut().poll(context));
        Poll::Ready(Some(Err(BodyTimedOut(timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body::Frame;

    use super::*;

    /// A body that yields its chunks one frame at a time with no size hint,
    /// as a chunked request does.
    struct Chunks(VecDeque<Result<Bytes, std::io::Error>>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| chunk.map(Frame::data)))
        }
    }

    fn chunked(chunks: Vec<Result<Bytes, std::io::Error>>) -> Body {
        Body::new(Chunks(chunks.into()))
    }

    #[tokio::test]
    async fn body_within_limit_read_whole() {
        let body = chunked(vec![Ok(Bytes::from("ab")), Ok(Bytes::from("cd"))]);
        let bytes = read_limited(body, 4).await.unwrap();
        assert_eq!(&bytes[..], b"abcd");
    }

    #[tokio::test]
    async fn declared_length_over_limit_rejected() {
        let error = read_limited(Body::from("abcde"), 4).await.unwrap_err();
        assert!(matches!(error, BodyReadError::TooLarge { limit: 4 }));
    }

    #[tokio::test]
    async fn counted_bytes_over_limit_rejected() {
        let body = chunked(vec![
            Ok(Bytes::from("ab")),
            Ok(Bytes::from("cd")),
            Ok(Bytes::from("e")),
        ]);
        let error = read_limited(body, 4).await.unwrap_err();
        assert!(matches!(error, BodyReadError::TooLarge { limit: 4 }));
    }

    #[tokio::test]
    async fn failed_read_not_reported_as_too_large() {
        let body = chunked(vec![Err(std::io::Error::other("connection reset"))]);
        let error = read_limited(body, 4).await.unwrap_err();
        assert!(matches!(error, BodyReadError::Failed(_)));
    }
}
