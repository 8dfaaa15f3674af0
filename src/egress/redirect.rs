//! Redirects: whether a response redirects, where to, and the request for the next hop
//! (credentials stay with their origin; 303, and 301/302 after a POST, become a GET). Pure:
//! the client sends each hop through the policy again.

use http::header;
use http::{Method, StatusCode};
use url::Url;

use super::{EgressError, Request, Response};

/// The URL a redirect response points to, or `None` when `response` is final.
pub(super) fn target(request: &Request, response: &Response) -> Result<Option<Url>, EgressError> {
    let redirect = matches!(response.status.as_u16(), 301 | 302 | 303 | 307 | 308);
    if !request.follow_redirects || !redirect {
        return Ok(None);
    }
    let location = response
        .headers
        .get(header::LOCATION)
        .ok_or(EgressError::BadRedirect)?
        .to_str()
        .map_err(|_| EgressError::BadRedirect)?;
    let next = request
        .url
        .join(location)
        .map_err(|_| EgressError::BadRedirect)?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(EgressError::RedirectScheme);
    }
    Ok(Some(next))
}

/// Turns `request` into the request for the next hop: credentials stay with their origin,
/// and 303 (or 301/302 after a POST) becomes a GET without a body, as browsers do.
pub(super) fn follow(request: &mut Request, status: StatusCode, next: Url) {
    if next.origin() != request.url.origin() {
        let credentials: Vec<_> = request
            .headers
            .iter()
            .filter(|(name, value)| {
                value.is_sensitive()
                    || **name == header::AUTHORIZATION
                    || **name == header::COOKIE
                    || **name == header::PROXY_AUTHORIZATION
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in credentials {
            request.headers.remove(name);
        }
    }
    let to_get = match status.as_u16() {
        303 => request.method != Method::HEAD,
        301 | 302 => request.method == Method::POST,
        _ => false,
    };
    if to_get {
        request.method = Method::GET;
        request.body = None;
        request.headers.remove(header::CONTENT_TYPE);
        request.headers.remove(header::CONTENT_LENGTH);
    }
    request.url = next;
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::header::{HeaderMap, HeaderValue};

    use super::*;

    fn response(status: u16, location: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(location) = location {
            headers.insert(header::LOCATION, HeaderValue::from_str(location).unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::new(),
            truncated: false,
            url: Url::parse("https://a.example/").unwrap(),
        }
    }

    fn request(method: Method, url: &str) -> Request {
        Request {
            method,
            ..Request::get(Url::parse(url).unwrap())
        }
    }

    #[test]
    fn target_follows_only_redirects_to_http_or_https() {
        let from = request(Method::GET, "https://a.example/x/y");
        for (status, location, expected) in [
            (200, Some("/z"), Ok(None)),
            (304, Some("/z"), Ok(None)),
            (301, Some("/z"), Ok(Some("https://a.example/z"))),
            (302, Some("z"), Ok(Some("https://a.example/x/z"))),
            (
                303,
                Some("http://b.example/"),
                Ok(Some("http://b.example/")),
            ),
            (307, Some("//c.example/p"), Ok(Some("https://c.example/p"))),
            (308, None, Err(EgressError::BadRedirect)),
            (
                301,
                Some("file:///etc/passwd"),
                Err(EgressError::RedirectScheme),
            ),
            (
                302,
                Some("gopher://a.example/"),
                Err(EgressError::RedirectScheme),
            ),
        ] {
            let found = target(&from, &response(status, location));
            let expected = expected.map(|url| url.map(|url| Url::parse(url).unwrap()));
            assert_eq!(found, expected, "{status} {location:?}");
        }
        let mut not_following = from.clone();
        not_following.follow_redirects = false;
        assert_eq!(target(&not_following, &response(302, Some("/z"))), Ok(None));
    }

    #[test]
    fn follow_keeps_credentials_with_their_origin() {
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        for (next, kept) in [
            ("https://a.example/other", true),
            ("https://b.example/", false),
            ("http://a.example/", false),
            ("https://a.example:8443/", false),
        ] {
            let mut hop = request(Method::GET, "https://a.example/");
            hop.headers
                .insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
            hop.headers
                .insert(header::COOKIE, HeaderValue::from_static("c=1"));
            hop.headers.insert("private-token", secret.clone());
            hop.headers
                .insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            follow(&mut hop, StatusCode::FOUND, Url::parse(next).unwrap());
            assert_eq!(hop.url.as_str(), next);
            for name in ["authorization", "cookie", "private-token"] {
                assert_eq!(hop.headers.contains_key(name), kept, "{name} to {next}");
            }
            assert!(hop.headers.contains_key(header::ACCEPT), "{next}");
        }
    }

    #[test]
    fn follow_turns_303_and_post_redirects_into_get() {
        for (method, status, expected) in [
            (Method::POST, 303, Method::GET),
            (Method::PUT, 303, Method::GET),
            (Method::HEAD, 303, Method::HEAD),
            (Method::POST, 301, Method::GET),
            (Method::POST, 302, Method::GET),
            (Method::PUT, 302, Method::PUT),
            (Method::POST, 307, Method::POST),
            (Method::POST, 308, Method::POST),
        ] {
            let mut hop = request(method.clone(), "https://a.example/");
            hop.body = Some(Bytes::from_static(b"{}"));
            hop.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let status = StatusCode::from_u16(status).unwrap();
            follow(
                &mut hop,
                status,
                Url::parse("https://a.example/next").unwrap(),
            );
            assert_eq!(hop.method, expected, "{method} {status}");
            let rewritten = expected != method;
            assert_eq!(hop.body.is_none(), rewritten, "{method} {status}");
            assert_eq!(
                hop.headers.contains_key(header::CONTENT_TYPE),
                !rewritten,
                "{method} {status}"
            );
        }
    }
}
