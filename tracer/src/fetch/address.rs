//! Address-bar parsing: what a browser does with what the user typed before it loads anything.
//!
//! * Surrounding whitespace is dropped; an input without `scheme://` gets `http://` (so
//!   `shop.test/a b` and `localhost:8080` work as typed).
//! * Only `http` and `https` are fetched; any other scheme is an invalid URL here.
//! * Host names go through IDNA (UTS #46, `bücher.test` -> `xn--bcher-kva.test`), and the path
//!   and query are percent-encoded (`/a b` -> `/a%20b`), both by the `url` crate, which
//!   follows the WHATWG URL standard browsers implement.
//! * The port defaults to 80 / 443; the fragment is never sent.

use url::Url;

use super::FetchError;

/// Parses what a user typed into the address bar. The result is an absolute `http`/`https`
/// URL with a host.
pub fn parse_address(input: &str) -> Result<Url, FetchError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(FetchError::InvalidUrl {
            input: input.into(),
            reason: "empty address".into(),
        });
    }
    let with_scheme = if has_scheme(trimmed) {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| FetchError::InvalidUrl {
        input: input.into(),
        reason: e.to_string(),
    })?;
    check_fetchable(&url).map_err(|reason| FetchError::InvalidUrl {
        input: input.into(),
        reason,
    })?;
    Ok(url)
}

/// Whether the input starts with a scheme (`https://`, `http:`, `mailto:`). `localhost:8080`
/// and `shop.test:80/x` are hosts with ports, not schemes.
fn has_scheme(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return false;
    }
    // `host:port[/...]` is a host with a port, anything else after `word:` is a scheme
    // (`mailto:a@b.test`, `http:shop.test`).
    let port_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let looks_like_port =
        !rest[..port_end].is_empty() && rest[..port_end].bytes().all(|b| b.is_ascii_digit());
    !looks_like_port
}

/// `Ok` for http(s) URLs with a host; the reason otherwise.
pub(crate) fn check_fetchable(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "unsupported scheme `{other}` (only http and https are fetched)"
            ));
        }
    }
    // `http://./` has the host ".", which is no name at all once its root dot is dropped
    // (as `host_for_connect` does for DNS and TLS).
    if host_for_connect(url).is_empty() {
        return Err("no host".into());
    }
    Ok(())
}

/// The origin a connection can be shared within: scheme, host (lowercase ASCII), port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn of(url: &Url) -> Origin {
        Origin {
            scheme: url.scheme().to_owned(),
            host: host_for_connect(url),
            port: url.port_or_known_default().unwrap_or(80),
        }
    }
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let default = if self.is_tls() { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            write!(f, "{}://{}", self.scheme, host)
        } else {
            write!(f, "{}://{}:{}", self.scheme, host, self.port)
        }
    }
}

/// The host as DNS and TLS see it: IDNA-encoded name, or an IP literal without brackets.
pub fn host_for_connect(url: &Url) -> String {
    match url.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => String::new(),
    }
}

/// The request target (path and query, never the fragment).
pub fn request_target(url: &Url) -> String {
    let mut s = url.path().to_owned();
    if let Some(q) = url.query() {
        s.push('?');
        s.push_str(q);
    }
    s
}

/// The URL as sent and recorded: without fragment and user info.
pub fn request_url(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        parse_address(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    /// Found by the `url` fuzz target: a host of dots only was accepted, leaving nothing to
    /// resolve.
    #[test]
    fn a_host_of_dots_is_no_host() {
        for input in ["http://./", "http://.//ser:pw@Shop.Test.:80/", "https://../a", "./x"] {
            match parse_address(input) {
                Err(FetchError::InvalidUrl { reason, .. }) => assert_eq!(reason, "no host", "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        assert_eq!(ok("shop.test."), "http://shop.test./");
    }

    #[test]
    fn scheme_defaults_to_http() {
        assert_eq!(ok("shop.test"), "http://shop.test/");
        assert_eq!(ok("  shop.test/a  "), "http://shop.test/a");
        assert_eq!(ok("localhost:8080/x"), "http://localhost:8080/x");
        assert_eq!(ok("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(ok("[::1]:8443/"), "http://[::1]:8443/");
        assert_eq!(ok("https://www.shop.test"), "https://www.shop.test/");
        assert_eq!(
            ok("HTTPS://WWW.Shop.TEST/Path"),
            "https://www.shop.test/Path"
        );
        assert_eq!(ok("http:shop.test"), "http://shop.test/");
    }

    #[test]
    fn idna_and_percent_encoding() {
        assert_eq!(
            ok("bücher.test/ä b?q=x y"),
            "http://xn--bcher-kva.test/%C3%A4%20b?q=x%20y"
        );
        assert_eq!(
            ok("https://www.shop.test/a#frag"),
            "https://www.shop.test/a#frag"
        );
        let u = parse_address("https://www.shop.test/a?b=1#frag").unwrap();
        assert_eq!(request_target(&u), "/a?b=1");
        assert_eq!(request_url(&u).as_str(), "https://www.shop.test/a?b=1");
    }

    #[test]
    fn default_ports_and_origins() {
        let u = parse_address("https://www.shop.test/").unwrap();
        assert_eq!(
            Origin::of(&u),
            Origin {
                scheme: "https".into(),
                host: "www.shop.test".into(),
                port: 443
            }
        );
        assert_eq!(Origin::of(&u).to_string(), "https://www.shop.test");
        let u = parse_address("http://shop.test:8080/").unwrap();
        assert_eq!(Origin::of(&u).port, 8080);
        assert_eq!(Origin::of(&u).to_string(), "http://shop.test:8080");
        let u = parse_address("http://[fd77::3]/").unwrap();
        assert_eq!(host_for_connect(&u), "fd77::3");
    }

    #[test]
    fn invalid_addresses() {
        for bad in [
            "",
            "   ",
            "http://",
            "https://exa mple.test/",
            "ftp://shop.test/",
            "http://[::1/",
            "http://shop.test:99999/",
            "mailto:a@b.test",
            "file:///etc/passwd",
            "http://xn--/",
        ] {
            match parse_address(bad) {
                Err(FetchError::InvalidUrl { .. }) => {}
                other => panic!("{bad:?}: expected InvalidUrl, got {other:?}"),
            }
        }
    }
}
