//! Who is signed in: configured users with argon2id password hashes, sessions kept in
//! the store (so every replica knows them) behind an HttpOnly, SameSite=Strict cookie, a
//! CSRF token per session, a limit on failed sign-ins, and optionally a reverse proxy's
//! user header, believed only from the configured proxy addresses.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConsoleConfig, ConsoleUser};
use crate::core::message::Platform;
use crate::core::policy::{Actor, Principal};
use crate::store::{ConsoleSession, Store, StoreError};

pub(crate) const SESSION_COOKIE: &str = "bw_session";
/// The login form's CSRF value, set when the form is shown (double-submit cookie: there
/// is no session yet to hold it).
pub(crate) const LOGIN_COOKIE: &str = "bw_login";

/// Failed sign-ins allowed per client address and per user name within [`FAILURE_WINDOW`].
pub(crate) const MAX_FAILURES: usize = 5;
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// The limiter forgets the oldest keys beyond this many, so a flood cannot grow it.
const LIMITER_KEYS: usize = 10_000;

/// Hashes a password as an argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a PHC string; a malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A random token for cookies and forms: 32 bytes, URL-safe base64.
pub(crate) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of one cookie in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The connected peer's address, when the server recorded it.
pub(crate) fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

/// A signed-in person, as every console page sees them.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) user: String,
    pub(crate) csrf: String,
    /// A session made just now for a proxy-authenticated user: its cookie to set.
    pub(crate) set_cookie: Option<String>,
}

impl Viewer {
    pub(crate) fn actor(&self) -> Actor {
        Actor::new(Principal::user(Platform::Console, &self.user), &self.user)
    }
}

/// The console's users, cookie settings and sign-in limiter.
pub(crate) struct Auth {
    users: HashMap<String, ConsoleUser>,
    /// Any configured hash: unknown user names are checked against it too, so that a
    /// wrong name takes as long as a wrong password.
    decoy_hash: Option<String>,
    proxy_header: Option<String>,
    trusted_proxies: Vec<IpAddr>,
    pub(crate) session_ttl: Duration,
    secure: bool,
    limiter: Limiter,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SignInError {
    #[error("wrong user name or password")]
    Wrong,
    #[error("too many failed sign-ins; try again in {0} s")]
    Limited(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Auth {
    pub(crate) fn new(config: &ConsoleConfig, secure: bool) -> Self {
        Self {
            users: config
                .users
                .iter()
                .map(|user| (user.name.clone(), user.clone()))
                .collect(),
            decoy_hash: config.users.first().map(|u| u.password_hash.clone()),
            proxy_header: config.trusted_proxy_header.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            session_ttl: config.session_ttl,
            secure,
            limiter: Limiter::default(),
        }
    }

    pub(crate) fn session_cookie(&self, token: &str) -> String {
        format!(
            "{SESSION_COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.session_ttl.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    pub(crate) fn clear_session_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    pub(crate) fn login_cookie(&self, token: &str) -> String {
        format!(
            "{LOGIN_COOKIE}={token}; Path=/console/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Checks a sign-in; on success opens a session and returns its cookie token.
    pub(crate) async fn sign_in(
        &self,
        store: &dyn Store,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Result<(ConsoleSession, String), SignInError> {
        let keys = [
            format!("ip:{}", client.map(|ip| ip.to_string()).unwrap_or_default()),
            format!("user:{user}"),
        ];
        if let Some(wait) = keys.iter().filter_map(|k| self.limiter.blocked(k)).max() {
            return Err(SignInError::Limited(wait.as_secs().max(1)));
        }
        let known = self.users.get(user);
        let allowed_here = known.is_some_and(|u| {
            !u.loopback_only || client.is_some_and(|ip| ip.to_canonical().is_loopback())
        });
        let hash = known
            .map(|u| u.password_hash.clone())
            .or_else(|| self.decoy_hash.clone());
        let password = password.to_owned();
        // argon2 is deliberately slow: keep it off the async workers.
        let matches = match hash {
            Some(hash) => tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                .await
                .unwrap_or(false),
            None => false,
        };
        if !(matches && allowed_here) {
            for key in &keys {
                self.limiter.fail(key);
            }
            return Err(SignInError::Wrong);
        }
        let session = self.open_session(store, user, now).await?;
        Ok(session)
    }

    async fn open_session(
        &self,
        store: &dyn Store,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<(ConsoleSession, String), StoreError> {
        // New sessions are rare; a good moment to forget the ones that ran out.
        if let Err(error) = store.prune_console_sessions(now).await {
            tracing::warn!(%error, "could not prune expired console sessions");
        }
        let token = random_token();
        let ttl =
            chrono::Duration::from_std(self.session_ttl).unwrap_or(chrono::Duration::hours(12));
        let session = ConsoleSession {
            token_hash: token_hash(&token),
            user: user.to_owned(),
            csrf_token: random_token(),
            created_at: now,
            expires_at: now + ttl,
        };
        store.insert_console_session(&session).await?;
        Ok((session, token))
    }

    /// The signed-in person: the session cookie's, or the trusted proxy's header (which
    /// opens a session on first sight, for the CSRF token).
    pub(crate) async fn viewer(
        &self,
        store: &dyn Store,
        parts: &Parts,
        now: DateTime<Utc>,
    ) -> Result<Option<Viewer>, StoreError> {
        let session = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(token) if !token.is_empty() => {
                store.console_session(&token_hash(token), now).await?
            }
            _ => None,
        };
        let proxied = self.proxy_user(parts);
        match (session, proxied) {
            (Some(session), None) => Ok(Some(Viewer {
                user: session.user,
                csrf: session.csrf_token,
                set_cookie: None,
            })),
            (Some(session), Some(user)) if session.user == user => Ok(Some(Viewer {
                user: session.user,
                csrf: session.csrf_token,
                set_cookie: None,
            })),
            (_, Some(user)) => {
                let (session, token) = self.open_session(store, &user, now).await?;
                Ok(Some(Viewer {
                    user: session.user,
                    csrf: session.csrf_token,
                    set_cookie: Some(self.session_cookie(&token)),
                }))
            }
            (None, None) => Ok(None),
        }
    }

    /// The user a trusted proxy names, if the request came from one.
    fn proxy_user(&self, parts: &Parts) -> Option<String> {
        let name = self.proxy_header.as_deref()?;
        let from = peer(parts)?.ip().to_canonical();
        if !self.trusted_proxies.contains(&from) {
            return None;
        }
        let user = parts.headers.get(name)?.to_str().ok()?.trim();
        Principal::parse(&format!("console:{user}"))
            .ok()
            .filter(|_| !user.is_empty() && user != "*")
            .map(|_| user.to_owned())
    }
}

/// Failed sign-ins per key within a sliding window.
#[derive(Default)]
struct Limiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        crate::sync::lock(&self.failures)
    }

    /// How long `key` must still wait, if it used up its failures.
    fn blocked(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        let times = failures.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            times.pop_front();
        }
        if times.len() < MAX_FAILURES {
            return None;
        }
        times
            .front()
            .map(|oldest| FAILURE_WINDOW.saturating_sub(now.duration_since(*oldest)))
    }

    fn fail(&self, key: &str) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= LIMITER_KEYS && !failures.contains_key(key) {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
            if failures.len() >= LIMITER_KEYS {
                failures.clear();
            }
        }
        let times = failures.entry(key.to_owned()).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("battery staple", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; bw_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn secrets_compare_only_when_equal_and_non_empty() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", ""));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn the_limiter_blocks_after_the_allowed_failures() {
        let limiter = Limiter::default();
        for _ in 0..MAX_FAILURES - 1 {
            limiter.fail("ip:10.0.0.1");
        }
        assert_eq!(limiter.blocked("ip:10.0.0.1"), None);
        limiter.fail("ip:10.0.0.1");
        let wait = limiter.blocked("ip:10.0.0.1").expect("blocked");
        assert!(wait <= FAILURE_WINDOW);
        assert_eq!(limiter.blocked("ip:10.0.0.2"), None);
    }

    fn auth_with(user: ConsoleUser) -> Auth {
        Auth::new(
            &ConsoleConfig {
                enabled: true,
                users: vec![user],
                ..ConsoleConfig::default()
            },
            false,
        )
    }

    #[tokio::test]
    async fn a_loopback_only_user_signs_in_only_from_the_machine_itself() {
        let store = crate::store::SqliteStore::connect("sqlite::memory:")
            .await
            .expect("store");
        let auth = auth_with(ConsoleUser {
            name: "demo".into(),
            password_hash: hash_password("pw").expect("hash"),
            loopback_only: true,
        });
        let remote: IpAddr = "192.0.2.7".parse().expect("ip");
        let refused = auth
            .sign_in(&store, "demo", "pw", Some(remote), Utc::now())
            .await;
        assert!(matches!(refused, Err(SignInError::Wrong)), "{refused:?}");
        for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = local.parse().expect("ip");
            let (session, token) = auth
                .sign_in(&store, "demo", "pw", Some(ip), Utc::now())
                .await
                .expect("signed in");
            assert_eq!(session.user, "demo");
            assert_eq!(session.token_hash, token_hash(&token));
        }
    }

    #[test]
    fn session_cookies_are_http_only_strict_and_secure_behind_tls() {
        let config = ConsoleConfig::default();
        let plain = Auth::new(&config, false).session_cookie("t");
        assert!(
            plain.contains("HttpOnly") && plain.contains("SameSite=Strict"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"), "{plain}");
        assert!(
            Auth::new(&config, true)
                .session_cookie("t")
                .ends_with("; Secure")
        );
    }
}
