//! Who may use the dashboard. It shows every page load of the machine (every user's
//! browsing), so, as Jupyter does on localhost, every route asks for a token, loopback
//! included:
//!
//! * The token ([`super::token`]: a root-only file beside the database, `--token-file`, or
//!   `TRACER_TOKEN`) is sent as `Authorization: Bearer TOKEN`, or as the `tracer_token`
//!   cookie, which `GET /?token=TOKEN` sets (HttpOnly, SameSite=Strict, and Secure over TLS)
//!   before redirecting to the address without the token, so that a browser logs in once
//!   from the URL the daemon prints. A missing or wrong token is a 401 with a JSON body.
//!   Tokens are compared in constant time.
//! * A second, read-only token (`--metrics-token-file`) opens `GET /metrics` and nothing
//!   else, so that Prometheus never holds the token that reads the history or makes the
//!   daemon fetch (`POST /api/fetch`).
//! * On a loopback listener, requests must also be addressed to a loopback name
//!   (`Host: 127.0.0.1:7878`, `localhost`, `[::1]`): a web page elsewhere that re-points its
//!   own name at 127.0.0.1 (DNS rebinding) gets a 403 before the token is even looked at.
//!
//! The check is a layer on the whole router ([`super::app`]), so every route added there is
//! covered without naming it.
use std::{net::IpAddr, sync::Arc};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use subtle::ConstantTimeEq as _;

/// Name of the cookie that carries the token after a `?token=` login.
pub const COOKIE: &str = "tracer_token";

/// The dashboard's access rule.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Opens every route. None: nothing is open (the default, until a token is given).
    token: Option<Arc<str>>,
    /// Opens `GET /metrics` only.
    metrics_token: Option<Arc<str>>,
    /// The listener is on loopback: requests must be addressed to a loopback host.
    loopback: bool,
    /// Served over TLS: the login cookie is `Secure`.
    tls: bool,
}

impl Access {
    /// The rule for a listener on `ip`: `token` opens everything, `metrics_token` (if any)
    /// `/metrics` only. Both must be valid tokens ([`validate`]) and differ.
    pub fn new(ip: IpAddr, token: &str, metrics_token: Option<&str>) -> Result<Access, TokenError> {
        validate(token)?;
        if let Some(m) = metrics_token {
            validate(m)?;
            if same(m, token) {
                return Err(TokenError::SameMetricsToken);
            }
        }
        Ok(Access { token: Some(token.into()), metrics_token: metrics_token.map(Into::into), loopback: ip.is_loopback(), tls: false })
    }

    /// The login cookie is marked `Secure` (the dashboard is served over HTTPS).
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    pub fn has_metrics_token(&self) -> bool {
        self.metrics_token.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a dashboard token must be 16 to 256 printable ASCII characters without spaces, ';' or ','")]
    Invalid,
    #[error("the metrics token must differ from the dashboard's token: it is meant to be given to Prometheus")]
    SameMetricsToken,
    #[error("generating a dashboard token: {0}")]
    Random(String),
}

/// 16-256 printable ASCII characters, no space, `;` or `,` (it travels in a cookie).
pub fn validate(t: &str) -> Result<(), TokenError> {
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

/// A browser opening the dashboard without its token gets a page that says what to do; API
/// clients get JSON.
const LOGIN_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tracer: token needed</title></head>\
<body><h1>This dashboard needs its token</h1><p>Open the dashboard URL with <code>?token=TOKEN</code>, as the daemon printed it \
at start on its terminal. The token is in the file its start-up report names (by default <code>token</code> beside the \
database, <code>/var/lib/tracer/token</code>, readable by root only). The browser keeps it in a cookie after that.</p></body></html>";

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

fn unauthorized_for(headers: &HeaderMap, reason: &str) -> Response {
    if wants_html(headers) {
        let mut res = (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], LOGIN_PAGE).into_response();
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tracer\""));
        return res;
    }
    unauthorized(reason)
}

fn unauthorized(reason: &str) -> Response {
    let mut res = (StatusCode::UNAUTHORIZED, Json(json!({ "error": reason }))).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tracer\""));
    res
}

/// The middleware: see the module documentation.
pub async fn check(State(access): State<Access>, req: Request, next: Next) -> Response {
    if access.loopback {
        // Requests without Host (HTTP/1.0, tests driving the router directly) are local.
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or(req.uri().host());
        if let Some(h) = host
            && !loopback_host(h)
        {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({ "error": "the dashboard listens on loopback and answers only requests to a loopback address (127.0.0.1, localhost, [::1]); to serve it on another address use --listen" })),
            )
                .into_response();
        }
    }
    let Some(expected) = access.token.clone() else { return unauthorized("this dashboard has no token set: nothing is served") };
    let presented = bearer(req.headers());
    if presented.is_some_and(|t| same(t, &expected)) || cookie(req.headers()).is_some_and(|t| same(t, &expected)) {
        return next.run(req).await;
    }
    if let (Some(t), Some(m)) = (presented, &access.metrics_token)
        && same(t, m)
    {
        if req.uri().path() == "/metrics" && req.method() == Method::GET {
            return next.run(req).await;
        }
        return (StatusCode::FORBIDDEN, Json(json!({ "error": "the metrics token opens GET /metrics only; this needs the dashboard's token" })))
            .into_response();
    }
    let (token, rest) = query_token(req.uri().query());
    match token {
        Some(t) if same(&t, &expected) && req.method() == Method::GET => {
            // Log in: keep the token in a cookie the page's scripts cannot read, and drop it
            // from the address (history, bookmarks, Referer).
            let location = format!("{}{}{}", req.uri().path(), if rest.is_empty() { "" } else { "?" }, rest);
            let mut res = StatusCode::SEE_OTHER.into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            let secure = if access.tls { "; Secure" } else { "" };
            if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict{secure}")) {
                h.insert(header::SET_COOKIE, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Some(_) => unauthorized_for(req.headers(), "wrong token"),
        None => unauthorized_for(
            req.headers(),
            "this dashboard needs its token: send 'Authorization: Bearer TOKEN', or open the URL with ?token=TOKEN the daemon printed at start (the token is in the file it names)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_validated_and_the_metrics_token_differs() {
        let a = Access::new("127.0.0.1".parse().unwrap(), "a-given-token-1234", None).unwrap();
        assert!(a.loopback && !a.has_metrics_token());
        let a = Access::new("0.0.0.0".parse().unwrap(), "a-given-token-1234", Some("metrics-token-5678")).unwrap();
        assert!(!a.loopback && a.has_metrics_token());
        assert!(matches!(Access::new("::1".parse().unwrap(), "short", None), Err(TokenError::Invalid)));
        assert!(matches!(Access::new("::1".parse().unwrap(), "has space in it 12345", None), Err(TokenError::Invalid)));
        assert!(matches!(Access::new("::1".parse().unwrap(), "a-given-token-1234", Some("bad")), Err(TokenError::Invalid)));
        assert!(matches!(
            Access::new("::1".parse().unwrap(), "a-given-token-1234", Some("a-given-token-1234")),
            Err(TokenError::SameMetricsToken)
        ));
        assert_eq!(generate().unwrap().len(), 64);
        assert_ne!(generate().unwrap(), generate().unwrap());
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
