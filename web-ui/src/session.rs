//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie names the key the
//! operator logged in with, kept in this process only (a restart logs everyone out), with a
//! second random token that every state-changing request must echo in a header (CSRF).

use crate::sign::Credentials;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "tessera_console";
/// The header state-changing requests carry the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-tessera-csrf";
/// Sessions kept at most; the oldest go first when a login would exceed it.
const MAX_SESSIONS: usize = 10_000;

/// How long sessions last.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after its login, used or not.
    pub max: Duration,
}

pub struct Session {
    pub credentials: Credentials,
    pub csrf: String,
    created: Instant,
    last_used: Mutex<Instant>,
}

impl Session {
    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, token: &[u8]) -> bool {
        self.csrf.as_bytes().ct_eq(token).into()
    }

    /// Seconds until the session ends if it is not used again.
    pub fn expires_in(&self, lifetimes: Lifetimes) -> u64 {
        let now = Instant::now();
        let by_age = (self.created + lifetimes.max).saturating_duration_since(now);
        let by_idle = (self.last_used() + lifetimes.idle).saturating_duration_since(now);
        by_age.min(by_idle).as_secs()
    }

    fn expired(&self, lifetimes: Lifetimes, now: Instant) -> bool {
        now >= self.created + lifetimes.max || now >= self.last_used() + lifetimes.idle
    }

    fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a request's cookie leads to.
pub enum Lookup {
    Found(Arc<Session>),
    /// The cookie names a session that ended (or that a restart forgot).
    Expired,
    /// No session cookie.
    Missing,
}

pub struct Sessions {
    lifetimes: Lifetimes,
    by_id: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    pub fn new(lifetimes: Lifetimes) -> Sessions {
        Sessions {
            lifetimes,
            by_id: Mutex::default(),
        }
    }

    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// Starts a session; returns its id (the cookie's value) and the session.
    pub fn create(&self, credentials: Credentials) -> (String, Arc<Session>) {
        let now = Instant::now();
        let session = Arc::new(Session {
            credentials,
            csrf: random_token(),
            created: now,
            last_used: Mutex::new(now),
        });
        let id = random_token();
        let mut by_id = self.lock();
        by_id.retain(|_, s| !s.expired(self.lifetimes, now));
        while by_id.len() >= MAX_SESSIONS {
            let oldest = by_id
                .iter()
                .min_by_key(|(_, s)| s.last_used())
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => by_id.remove(&id),
                None => break,
            };
        }
        by_id.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The session a `Cookie` header names, its idle time restarted.
    pub fn find(&self, cookie_header: Option<&str>) -> Lookup {
        let Some(id) = cookie_header.and_then(session_id) else {
            return Lookup::Missing;
        };
        let now = Instant::now();
        let mut by_id = self.lock();
        let Some(session) = by_id.get(id) else {
            return Lookup::Expired;
        };
        if session.expired(self.lifetimes, now) {
            by_id.remove(id);
            return Lookup::Expired;
        }
        *session.last_used.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Lookup::Found(session.clone())
    }

    /// Ends the session a `Cookie` header names.
    pub fn remove(&self, cookie_header: Option<&str>) {
        if let Some(id) = cookie_header.and_then(session_id) {
            self.lock().remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `Set-Cookie` value that gives the browser session `id` (or, with `None`, takes it away).
pub fn set_cookie(id: Option<&str>, lifetimes: Lifetimes, secure: bool) -> String {
    let (value, max_age) = match id {
        Some(id) => (id, lifetimes.max.as_secs()),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

fn session_id(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            access_key: "AK".into(),
            secret_key: "SK".into(),
        }
    }

    const LONG: Lifetimes = Lifetimes {
        idle: Duration::from_secs(3600),
        max: Duration::from_secs(7200),
    };

    #[test]
    fn a_cookie_finds_its_session_and_only_its_own() {
        let sessions = Sessions::new(LONG);
        let (id, session) = sessions.create(credentials());
        let cookie = format!("other=1; {COOKIE}={id}");
        match sessions.find(Some(&cookie)) {
            Lookup::Found(found) => assert_eq!(found.csrf, session.csrf),
            _ => panic!("the session was not found"),
        }
        // Another id: its first digit changed (to one it was not).
        let first = if id.starts_with('0') { '1' } else { '0' };
        assert!(matches!(
            sessions.find(Some(&format!("{COOKIE}={first}{}", &id[1..]))),
            Lookup::Expired
        ));
        assert!(matches!(sessions.find(Some("other=1")), Lookup::Missing));
        assert!(matches!(sessions.find(None), Lookup::Missing));
        sessions.remove(Some(&cookie));
        assert!(matches!(sessions.find(Some(&cookie)), Lookup::Expired));
    }

    #[test]
    fn sessions_end_when_idle() {
        // Wide margins: a loaded machine may oversleep by tens of milliseconds.
        let sessions = Sessions::new(Lifetimes {
            idle: Duration::from_millis(400),
            max: Duration::from_secs(60),
        });
        let (id, _) = sessions.create(credentials());
        let cookie = format!("{COOKIE}={id}");
        std::thread::sleep(Duration::from_millis(250));
        assert!(matches!(sessions.find(Some(&cookie)), Lookup::Found(_)));
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            matches!(sessions.find(Some(&cookie)), Lookup::Found(_)),
            "a use restarts the idle time"
        );
        std::thread::sleep(Duration::from_millis(600));
        assert!(matches!(sessions.find(Some(&cookie)), Lookup::Expired));
    }

    #[test]
    fn the_csrf_token_is_checked_whole() {
        let sessions = Sessions::new(LONG);
        let (_, session) = sessions.create(credentials());
        assert!(session.csrf_matches(session.csrf.as_bytes()));
        assert!(!session.csrf_matches(&session.csrf.as_bytes()[1..]));
        assert!(!session.csrf_matches(b""));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let cookie = set_cookie(Some("abc"), LONG, true);
        assert_eq!(
            cookie,
            "tessera_console=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=7200; Secure"
        );
        assert!(!set_cookie(None, LONG, false).contains("Secure"));
        assert!(set_cookie(None, LONG, false).contains("Max-Age=0"));
    }
}
