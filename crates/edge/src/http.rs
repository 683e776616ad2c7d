//! Response and request helpers shared by the HTTP transports, the router and the admin
//! listener. A leaf: it knows no transport and routes nothing (that is `router`).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::convert::Infallible;

use herald_protocol::ErrorCode;

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, Infallible>;

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `{"error":{"code":…,"message":…}}` with the given status.
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code.as_str(), "message": message } });
    json_response(status, body.to_string())
}

/// The same, with the code's own HTTP status.
pub fn code_response(code: ErrorCode, message: &str) -> Response<Body> {
    error_response(StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code, message)
}

/// The value of query parameter `name`, percent-decoded (`+` is a space).
pub fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The bearer token from `Authorization`, or else `?token=`.
pub fn token_from_request(req: &Request<Incoming>) -> Option<String> {
    bearer(req).or_else(|| query_param(req, "token"))
}

/// The `Origin` header, if any.
pub fn origin(req: &Request<Incoming>) -> Option<String> {
    req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The bearer token from `Authorization` only.
pub fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// `/metrics`: the rendered registry, in Prometheus's text format.
pub fn metrics_response(text: String) -> Response<Body> {
    let mut r = Response::new(full(text));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(query: &str, name: &str) -> Option<String> {
        let req = Request::get(format!("/v1/sse?{query}")).body(()).unwrap();
        let q = req.uri().query()?.to_owned();
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    #[test]
    fn query_parameters_are_percent_decoded_and_garbage_is_kept() {
        assert_eq!(param("channels=a%2Cb", "channels").as_deref(), Some("a,b"));
        assert_eq!(param("x=1&token=a+b", "token").as_deref(), Some("a b"));
        assert_eq!(param("v=100%", "v").as_deref(), Some("100%"));
        assert_eq!(param("v=%zz", "v").as_deref(), Some("%zz"));
        assert_eq!(param("v=%4", "v").as_deref(), Some("%4"));
        assert_eq!(param("v=1", "w"), None);
    }
}
