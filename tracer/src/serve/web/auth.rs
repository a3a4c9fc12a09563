//! Who may use the dashboard. It shows every page load of the machine, so:
//!
//! * By default it listens on loopback only, and then it answers only requests addressed to a
//!   loopback name (`Host: 127.0.0.1:7878`, `localhost`, `[::1]`): a web page elsewhere that
//!   re-points its own name at 127.0.0.1 (DNS rebinding) gets a 403, not the history.
//! * Listening anywhere else needs a token (`--token`, or one generated and printed once at
//!   start). Every route, pages and API alike, asks for it: `Authorization: Bearer TOKEN`, or
//!   the `tracer_token` cookie, which `GET /?token=TOKEN` sets (HttpOnly, SameSite=Strict)
//!   before redirecting to the address without the token, so that a browser can log in once.
//!   A missing or wrong token is a 401 with a JSON body. Tokens are compared in constant time.
//!
//! The check is a layer on the whole router ([`super::app`]), so every route added there is
//! covered without naming it.
use std::{net::IpAddr, sync::Arc};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use subtle::ConstantTimeEq as _;

/// Name of the cookie that carries the token after a `?token=` login.
pub const COOKIE: &str = "tracer_token";

/// The dashboard's access rule.
#[derive(Clone, Debug, Default)]
pub enum Access {
    /// Loopback listener: requests must be addressed to a loopback host.
    #[default]
    LoopbackOnly,
    /// Every request must carry this token.
    Token(Arc<str>),
}

impl Access {
    /// The rule for a listen address: a token is required off loopback. `token` is the one
    /// given (`--token`); when it is needed and not given, one is generated, and returned as
    /// the second value so that the caller can show it once.
    pub fn for_listen(ip: IpAddr, token: Option<String>) -> Result<(Access, Option<String>), TokenError> {
        match token {
            Some(t) => {
                validate(&t)?;
                Ok((Access::Token(t.into()), None))
            }
            None if ip.is_loopback() => Ok((Access::LoopbackOnly, None)),
            None => {
                let t = generate()?;
                Ok((Access::Token(t.clone().into()), Some(t)))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--token must be 16 to 256 printable ASCII characters without spaces")]
    Invalid,
    #[error("generating a dashboard token: {0}")]
    Random(String),
}

fn validate(t: &str) -> Result<(), TokenError> {
    let ok = (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
    if ok { Ok(()) } else { Err(TokenError::Invalid) }
}

/// 32 random bytes from the kernel, as 64 hex digits.
pub fn generate() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn same(a: &str, b: &str) -> bool {
    // Lengths are not secret (every generated token has 64 digits); the bytes are.
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// `token` from the query, and the query without it.
fn query_token(query: Option<&str>) -> (Option<String>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k == "token" {
            token = Some(v.into_owned());
        } else {
            rest.push((k.into_owned(), v.into_owned()));
        }
    }
    let rest = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(rest).finish();
    (token, rest)
}

/// `127.0.0.1`, `localhost`, `[::1]` (with or without a port).
fn loopback_host(host: &str) -> bool {
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn unauthorized(reason: &str) -> Response {
    let mut res = (StatusCode::UNAUTHORIZED, Json(json!({ "error": reason }))).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tracer\""));
    res
}

/// The middleware: see the module documentation.
pub async fn check(State(access): State<Access>, req: Request, next: Next) -> Response {
    let expected = match &access {
        Access::LoopbackOnly => {
            // Requests without Host (HTTP/1.0, tests driving the router directly) are local.
            let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or(req.uri().host());
            if let Some(h) = host
                && !loopback_host(h)
            {
                return (
                    StatusCode::FORBIDDEN,
                    Json(json!({ "error": "the dashboard listens on loopback and answers only requests to a loopback address (127.0.0.1, localhost, [::1]); to serve it on another address use --listen with --token" })),
                )
                    .into_response();
            }
            return next.run(req).await;
        }
        Access::Token(t) => t.clone(),
    };
    if bearer(req.headers()).is_some_and(|t| same(t, &expected)) || cookie(req.headers()).is_some_and(|t| same(t, &expected)) {
        return next.run(req).await;
    }
    let (token, rest) = query_token(req.uri().query());
    match token {
        Some(t) if same(&t, &expected) => {
            // Log in: keep the token in a cookie the page's scripts cannot read, and drop it
            // from the address (history, bookmarks, Referer).
            let location = format!("{}{}{}", req.uri().path(), if rest.is_empty() { "" } else { "?" }, rest);
            let mut res = StatusCode::SEE_OTHER.into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict")) {
                h.insert(header::SET_COOKIE, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Some(_) => unauthorized("wrong token"),
        None => unauthorized(
            "this dashboard needs its token: send 'Authorization: Bearer TOKEN', or open /?token=TOKEN once in the browser",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_and_tokens() {
        let (a, shown) = Access::for_listen("127.0.0.1".parse().unwrap(), None).unwrap();
        assert!(matches!(a, Access::LoopbackOnly) && shown.is_none());
        let (a, shown) = Access::for_listen("::1".parse().unwrap(), None).unwrap();
        assert!(matches!(a, Access::LoopbackOnly) && shown.is_none());
        let (a, shown) = Access::for_listen("0.0.0.0".parse().unwrap(), None).unwrap();
        let shown = shown.expect("a generated token is shown");
        assert!(matches!(&a, Access::Token(t) if **t == *shown));
        assert_eq!(shown.len(), 64);
        let (_, other) = Access::for_listen("10.0.0.1".parse().unwrap(), None).unwrap();
        assert_ne!(other.unwrap(), shown, "each start generates its own");
        let (a, shown) = Access::for_listen("0.0.0.0".parse().unwrap(), Some("a-given-token-1234".into())).unwrap();
        assert!(matches!(&a, Access::Token(t) if &**t == "a-given-token-1234") && shown.is_none());
        assert!(Access::for_listen("0.0.0.0".parse().unwrap(), Some("short".into())).is_err());
        assert!(Access::for_listen("0.0.0.0".parse().unwrap(), Some("has space in it 12345".into())).is_err());
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.0.0.1:7878", "localhost:7878", "LOCALHOST", "[::1]:7878", "[::1]", "127.9.9.9:1"] {
            assert!(loopback_host(h), "{h}");
        }
        for h in ["evil.test", "evil.test:7878", "10.0.0.1:7878", "[fd00::1]:80", "127.0.0.1.evil.test"] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn query_token_is_split_off() {
        assert_eq!(query_token(Some("token=abc&x=1")), (Some("abc".into()), "x=1".into()));
        assert_eq!(query_token(None), (None, String::new()));
    }
}
