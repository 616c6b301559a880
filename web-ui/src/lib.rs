//! The operator's web console, served on the gateway's console port: one page of HTML, CSS and
//! JavaScript embedded in the binary (no build step, nothing fetched from elsewhere), a login
//! that keeps the operator's key in a server-side session, and a forwarder that signs the page's
//! calls of the S3 API (`/api/s3/...`) and of the admin API (`/api/admin/...`) with that key and
//! sends them to the gateway like any client's.
//!
//! The console can do nothing that a client holding the same key could not: it knows the cluster
//! only through those two APIs, and every call it makes passes the gateway's signature and
//! permission checks, over a connection the gateway hands it (`Upstream`).

mod assets;
mod forward;
mod session;
mod sign;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use session::{Lookup, Session, Sessions, CSRF_HEADER};
use sign::Credentials;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use session::Lifetimes;

/// The body of the console's responses.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// The gateway, as the console reaches it.
pub trait Upstream: Send + Sync + 'static {
    /// A new connection to the gateway's S3 API (and admin API), on which the gateway serves
    /// HTTP/1.1 as it does to clients, for a request of a browser at `client`.
    fn connect(&self, client: Option<IpAddr>) -> tokio::io::DuplexStream;
}

/// How the console runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The region the console signs its requests for: the gateway's.
    pub region: String,
    /// The console is served over TLS: its cookie is marked `Secure`.
    pub secure: bool,
    pub sessions: Lifetimes,
}

pub struct Console {
    settings: Settings,
    upstream: Arc<dyn Upstream>,
    sessions: Sessions,
}

/// A login form, as the page posts it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    access_key: String,
    secret_key: String,
}

/// Login bodies larger than this are refused.
const MAX_LOGIN_BYTES: usize = 4096;
/// A failed login is answered no sooner than this, to slow down guessing.
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

impl Console {
    pub fn new(settings: Settings, upstream: Arc<dyn Upstream>) -> Console {
        Console {
            sessions: Sessions::new(settings.sessions),
            settings,
            upstream,
        }
    }

    /// Answers one request of a browser at `client`.
    pub async fn handle<B>(&self, req: Request<B>, client: Option<IpAddr>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        let Some(api) = path.strip_prefix("/api/") else {
            return assets::serve(req.method(), &path);
        };
        let mut response = match (req.method(), api) {
            (&Method::POST, "login") => self.login(req, client).await,
            (&Method::GET, "session") => match self.session_for(&req) {
                Ok(session) => self.describe(&session),
                Err(refusal) => refusal.response(),
            },
            (&Method::POST, "logout") => self.logout(&req),
            _ => match self.session_for(&req) {
                Ok(session) => {
                    forward::forward(&*self.upstream, &self.settings, &session, req, client).await
                }
                Err(refusal) => refusal.response(),
            },
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }

    /// Checks the key by listing its buckets through the gateway, then starts a session.
    async fn login<B>(&self, req: Request<B>, client: Option<IpAddr>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A cross-site form cannot send JSON without a CORS preflight, which is never answered;
        // the Origin check covers browsers that send one on same-site requests too.
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json || !same_origin(&req) {
            return error(StatusCode::FORBIDDEN, "Log in from the console's own page.");
        }
        let body = match Limited::new(req.into_body(), MAX_LOGIN_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return error(StatusCode::BAD_REQUEST, "The login form is too large."),
        };
        let Ok(login) = serde_json::from_slice::<Login>(&body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "Give an access key and a secret key.",
            );
        };
        let credentials = Credentials {
            access_key: login.access_key.trim().to_string(),
            secret_key: login.secret_key,
        };
        match forward::check(&*self.upstream, &self.settings, &credentials, client).await {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                // Which half was wrong is not said: that would help a guesser.
                return error(
                    StatusCode::UNAUTHORIZED,
                    "The access key or the secret key is wrong.",
                );
            }
            Err(message) => return error(StatusCode::BAD_GATEWAY, &message),
        }
        let (id, session) = self.sessions.create(credentials);
        let mut response = self.describe(&session);
        let cookie =
            session::set_cookie(Some(&id), self.sessions.lifetimes(), self.settings.secure);
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response
    }

    fn logout<B>(&self, req: &Request<B>) -> Response<Body> {
        let cookie = cookie_header(req);
        let mut response = match self.session_for(req) {
            Ok(_) => {
                self.sessions.remove(cookie);
                json(StatusCode::OK, &serde_json::json!({}))
            }
            Err(refusal) => refusal.response(),
        };
        let clear = session::set_cookie(None, self.sessions.lifetimes(), self.settings.secure);
        if let Ok(clear) = HeaderValue::from_str(&clear) {
            response.headers_mut().insert(header::SET_COOKIE, clear);
        }
        response
    }

    /// What the page needs to know of its session.
    fn describe(&self, session: &Session) -> Response<Body> {
        json(
            StatusCode::OK,
            &serde_json::json!({
                "access_key": session.credentials.access_key,
                "csrf": session.csrf,
                "region": self.settings.region,
                "expires_in_secs": session.expires_in(self.sessions.lifetimes()),
            }),
        )
    }

    /// The request's session; a request that changes something must also carry its CSRF token
    /// and come from the console's own origin.
    fn session_for<B>(&self, req: &Request<B>) -> Result<Arc<Session>, Refusal> {
        let session = match self.sessions.find(cookie_header(req)) {
            Lookup::Found(session) => session,
            Lookup::Expired => return Err(Refusal::Ended),
            Lookup::Missing => return Err(Refusal::LoggedOut),
        };
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        if !safe {
            let token = req.headers().get(CSRF_HEADER).map(HeaderValue::as_bytes);
            if !same_origin(req) || !token.is_some_and(|t| session.csrf_matches(t)) {
                return Err(Refusal::CrossSite);
            }
        }
        Ok(session)
    }
}

/// Why a request gets no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// No session cookie.
    LoggedOut,
    /// The cookie's session ended (or a restart forgot it): the page goes back to its login.
    Ended,
    /// A change without the session's CSRF token, or from another origin.
    CrossSite,
}

impl Refusal {
    fn response(self) -> Response<Body> {
        let (status, message) = match self {
            Refusal::LoggedOut => (StatusCode::UNAUTHORIZED, "Log in first."),
            Refusal::Ended => (
                StatusCode::UNAUTHORIZED,
                "Your session has ended: log in again.",
            ),
            Refusal::CrossSite => (
                StatusCode::FORBIDDEN,
                "The request did not come from the console's page (no valid CSRF token).",
            ),
        };
        json(
            status,
            &serde_json::json!({ "error": message, "expired": self == Refusal::Ended }),
        )
    }
}

fn cookie_header<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
}

/// Whether the request's `Origin`, when it has one, is the console's own address.
fn same_origin<B>(req: &Request<B>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = req.headers().get(header::HOST).map(HeaderValue::as_bytes);
    let origin = origin.as_bytes();
    let origin_host = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    origin_host.is_some() && origin_host == host
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A gateway stand-in: it knows one access key, and answers every request with what it
    /// received, as JSON.
    struct Echo;

    impl Upstream for Echo {
        fn connect(&self, _client: Option<IpAddr>) -> tokio::io::DuplexStream {
            let (console_end, gateway_end) = tokio::io::duplex(1 << 16);
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async {
                let (parts, body) = req.into_parts();
                let body = body.collect().await?.to_bytes();
                let auth = parts
                    .headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap());
                let known = auth.is_some_and(|a| a.contains("Credential=GOOD/"));
                let seen = serde_json::json!({
                    "method": parts.method.as_str(),
                    "uri": parts.uri.to_string(),
                    "headers": parts.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "sha256": parts.headers.get("x-amz-content-sha256").map(|v| v.to_str().unwrap()),
                    "body": String::from_utf8_lossy(&body),
                });
                let mut response = Response::new(full(seen.to_string()));
                if !known {
                    *response.status_mut() = StatusCode::FORBIDDEN;
                }
                Ok::<_, hyper::Error>(response)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(gateway_end), service),
            );
            console_end
        }
    }

    fn console() -> Console {
        let settings = Settings {
            region: "us-east-1".into(),
            secure: false,
            sessions: Lifetimes {
                idle: Duration::from_secs(60),
                max: Duration::from_secs(600),
            },
        };
        Console::new(settings, Arc::new(Echo))
    }

    async fn send(
        console: &Console,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let response = console.handle(req, None).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, value)
    }

    async fn log_in(console: &Console) -> (String, String) {
        let login = r#"{"access_key":"GOOD","secret_key":"s"}"#;
        let json = [("content-type", "application/json")];
        let (status, headers, answer) =
            send(console, Method::POST, "/api/login", &json, login).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let cookie = headers["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        (cookie, answer["csrf"].as_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn a_login_is_checked_by_the_gateway() {
        let console = console();
        let json = [("content-type", "application/json")];
        let bad = r#"{"access_key":"BAD","secret_key":"s"}"#;
        let (status, headers, answer) =
            send(&console, Method::POST, "/api/login", &json, bad).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer["error"],
            "The access key or the secret key is wrong."
        );
        assert!(!headers.contains_key("set-cookie"));
        let good = r#"{"access_key":"GOOD","secret_key":"s"}"#;
        let form = [("content-type", "text/plain")];
        let (status, _, _) = send(&console, Method::POST, "/api/login", &form, good).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "only JSON logins");
        let extra = r#"{"access_key":"GOOD","secret_key":"s","remember":true}"#;
        let (status, _, _) = send(&console, Method::POST, "/api/login", &json, extra).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "no field is taken and ignored"
        );
        let (cookie, _) = log_in(&console).await;
        let (status, _, answer) = send(
            &console,
            Method::GET,
            "/api/session",
            &[("cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["access_key"], "GOOD");
    }

    #[tokio::test]
    async fn calls_are_signed_and_mapped_and_carry_no_cookie() {
        let console = console();
        let (cookie, _) = log_in(&console).await;
        let (status, _, seen) = send(
            &console,
            Method::GET,
            "/api/s3/b/a%2Fb%20c?prefix=x%2Fy&list-type=2",
            &[
                ("cookie", &cookie),
                ("range", "bytes=0-1"),
                ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
                ("x-custom", "1"),
            ],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen["uri"], "/b/a/b%20c?list-type=2&prefix=x%2Fy");
        let headers: Vec<&str> = seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert!(headers.contains(&"authorization") && headers.contains(&"range"));
        assert!(headers.contains(&"content-md5"));
        assert!(!headers.contains(&"cookie") && !headers.contains(&"x-custom"));
        let (_, _, seen) = send(
            &console,
            Method::GET,
            "/api/admin/status",
            &[("cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(seen["uri"], "/_tessera/status");
    }

    #[tokio::test]
    async fn changes_need_the_csrf_token() {
        let console = console();
        let (cookie, csrf) = log_in(&console).await;
        let put = |headers: Vec<(&'static str, String)>| {
            let console = &console;
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                send(
                    console,
                    Method::PUT,
                    "/api/s3/b?versioning",
                    &headers,
                    "<x/>",
                )
                .await
            }
        };
        let (status, _, _) = put(vec![("cookie", cookie.clone())]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = put(vec![
            ("cookie", cookie.clone()),
            ("x-tessera-csrf", csrf.clone()),
            ("origin", "http://elsewhere.example".into()),
            ("host", "console.example".into()),
        ])
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, seen) = put(vec![
            ("cookie", cookie.clone()),
            ("x-tessera-csrf", csrf),
            ("origin", "http://console.example".into()),
            ("host", "console.example".into()),
        ])
        .await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(seen["body"], "<x/>");
        assert_eq!(
            seen["sha256"],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"<x/>"))
        );
        assert!(seen["headers"].to_string().contains("content-md5"));
        let (status, _, answer) = send(
            &console,
            Method::GET,
            "/api/s3/",
            &[("cookie", "tessera_console=00")],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer["expired"], true);
    }
}
