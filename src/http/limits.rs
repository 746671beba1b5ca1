//! Limits on a request's head (target and header fields), answered with
//! API.md's JSON errors: 414 `uri_too_long`, 431 `headers_too_large`.
//!
//! hyper would refuse oversized heads itself, but with an empty body; so the
//! server lets hyper accept far more ([`HYPER_MAX_BUF`], [`HYPER_MAX_HEADERS`],
//! see [`super::serve`]) and this layer enforces the real, smaller limits.
//! Heads that still exceed hyper's own bounds get JSON too, by the last-resort
//! rewrite in [`super::serve`].

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;

/// Longest accepted request target (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;
/// Largest total size of the header fields (name, value, `": "` and CRLF), in bytes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// hyper's read buffer: large enough that any head beyond our limits still
/// reaches [`check`] (up to this size) and is answered in JSON with the limit.
pub const HYPER_MAX_BUF: usize = 1024 * 1024;
/// hyper's header-count bound, well above [`MAX_HEADERS`] for the same reason.
pub const HYPER_MAX_HEADERS: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("the request target is {0} bytes; at most {MAX_URI_BYTES} are accepted")]
    UriTooLong(usize),
    #[error("the request has {0} header fields; at most {MAX_HEADERS} are accepted")]
    TooManyHeaders(usize),
    #[error("the request's header fields take {0} bytes; at most {MAX_HEADER_BYTES} are accepted")]
    HeadersTooLarge(usize),
}

/// The pure rule: the first limit a request head breaks, if any.
pub fn check_head(uri_len: usize, headers: &axum::http::HeaderMap) -> Result<(), LimitError> {
    if uri_len > MAX_URI_BYTES {
        return Err(LimitError::UriTooLong(uri_len));
    }
    if headers.len() > MAX_HEADERS {
        return Err(LimitError::TooManyHeaders(headers.len()));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(LimitError::HeadersTooLarge(bytes));
    }
    Ok(())
}

/// The middleware applied to the whole router.
pub async fn check(req: Request, next: Next) -> Result<Response, ApiError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    check_head(uri_len, req.headers())?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    #[test]
    fn limits_are_enforced_in_order() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("lab.example"));
        assert_eq!(check_head(MAX_URI_BYTES, &h), Ok(()));
        assert_eq!(
            check_head(MAX_URI_BYTES + 1, &h),
            Err(LimitError::UriTooLong(MAX_URI_BYTES + 1))
        );
        for i in 0..MAX_HEADERS {
            h.insert(
                HeaderName::try_from(format!("x-h{i}")).expect("header name"),
                HeaderValue::from_static("1"),
            );
        }
        assert_eq!(
            check_head(1, &h),
            Err(LimitError::TooManyHeaders(MAX_HEADERS + 1))
        );
        let mut big = HeaderMap::new();
        let value = "v".repeat(MAX_HEADER_BYTES);
        big.insert(
            "x-big",
            HeaderValue::from_str(&value).expect("header value"),
        );
        assert!(matches!(
            check_head(1, &big),
            Err(LimitError::HeadersTooLarge(_))
        ));
    }
}
