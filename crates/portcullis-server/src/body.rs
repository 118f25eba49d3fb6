//! Bounded reading of request bodies for the endpoints that parse them
//! (OAuth forms, admin and verify JSON, leak reports).
//!
//! Bytes are counted as frames arrive, whatever the framing (Content-Length,
//! chunked or HTTP/2 DATA frames), so a body takes at most its limit plus
//! one frame of memory. A declared Content-Length over the limit is
//! rejected before any byte is read.

use axum::body::Body;
use bytes::Bytes;
use http::StatusCode;
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};

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
    /// The connection failed or the client stopped before the body ended.
    #[error("the request body could not be read: {0}")]
    Failed(String),
}

impl BodyReadError {
    /// Converts the error into its problem+json response: 413 for a body over
    /// its limit (RFC 9110 §15.5.14), 400 for a body that could not be read.
    pub fn into_problem(self) -> Problem {
        match self {
            Self::TooLarge { limit } => Problem::payload_too_large(limit),
            Self::Failed(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "Invalid request",
                "the request body could not be read; send the request again",
            ),
        }
    }
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
        Err(error) => Err(BodyReadError::Failed(error.to_string())),
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
