//! The console's routes. Pages are rendered on the server and readable without
//! JavaScript; forms POST and redirect back. Every POST but the sign-in carries the
//! session's CSRF token; the sign-in carries the token of its double-submit cookie.
//!
//! | route | what |
//! |---|---|
//! | `GET /console` | the channel: alerts, summaries, progress, outcomes |
//! | `GET /console/deploys` | recent deploys per service and environment, with a timeline and the recovery figures of the last 30 days |
//! | `GET /console/incidents/{id}`, `…/postmortem.md`, `…/incident.json` | an incident's timeline and its draft downloads (in [`super::incident`]) |
//! | `GET /console/audit` | the audit log, filtered; chain status and head hash |
//! | `GET /console/audit/export` | the audit log as a JSON Lines or CSV download, with the page's filters |
//! | `GET /console/events` | live updates (server-sent events) |
//! | `POST /console/press` | a button press |
//! | `GET`/`POST /console/login`, `POST /console/logout` | signing in and out |

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Form, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use tokio::sync::broadcast;

use super::auth::{self, Auth, Viewer};
use super::html::{self, Html, Viewing};
use super::{ConsoleChat, live};
use crate::core::bot::Bot;
use crate::http::ApiError;
use crate::store::{ConsoleMessage, StoreError};

mod audit;
mod channel;
mod deploys;
mod login;

/// Threads shown on the channel page.
const THREADS_SHOWN: u32 = 50;
/// Audit records shown per page.
const AUDIT_PAGE: u32 = 100;
/// Deploys shown per service.
const DEPLOYS_SHOWN: u32 = 30;
/// Alert groups drawn on the deploys page's timelines.
const ALERT_GROUPS_SHOWN: u32 = 500;
/// Forms are small; anything larger is refused.
const MAX_FORM: usize = 16 * 1024;

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

/// Everything the console's handlers share.
pub(crate) struct Console {
    pub(crate) auth: Auth,
    pub(crate) bot: Bot,
    pub(crate) chat: Arc<ConsoleChat>,
    pub(crate) changes: broadcast::Sender<()>,
}

pub(crate) type Shared = Arc<Console>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/console", get(channel::channel))
        .route("/console/", get(|| async { redirect("/console") }))
        .route("/console/login", get(login::login_form).post(login::login))
        .route("/console/logout", post(login::logout))
        .route("/console/deploys", get(deploys::deploys))
        .route("/console/audit", get(audit::audit))
        .route("/console/audit/export", get(audit::export))
        .route("/console/events", get(live::events))
        .route("/console/press", post(channel::press))
        .route(
            "/console/static/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/console/static/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        // The most a [`PageForm`] reads; a larger body is refused with 413.
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .with_state(state)
}

// --- responses ------------------------------------------------------------------------------

/// A refusal or failure, answered as a short page naming the reason. It is the API's
/// error ([`ApiError`]) rendered as HTML, so a status, its `Retry-After` and the mapping of
/// a database outage to 503 are decided in one place for JSON routes and pages alike.
#[derive(Debug)]
pub(crate) struct PageError(ApiError);

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(status, message))
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        Self(ApiError::internal(error))
    }

    /// 503 with `Retry-After` while the database is unavailable, else a logged 500.
    pub(crate) fn store(error: StoreError) -> Self {
        Self(ApiError::store(error))
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let mut body = Html::new();
        body.raw("<h1>")
            .text(status.canonical_reason().unwrap_or("Error"))
            .raw("</h1><p role=\"alert\">")
            .text(self.0.message())
            .raw("</p><p><a href=\"/console\">Back to the console</a></p>");
        let mut response = document(status, "Error", None, None, &body.into_string());
        if let Some(seconds) = self.0.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Cookie realm=\"breakwater console\""),
            );
        }
        response
    }
}

fn redirect(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

/// Headers every console page carries: no caching, no framing, scripts and styles only
/// from the console itself.
pub(super) fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Channel,
    Deploys,
    Audit,
}

/// A whole page: head, navigation (when signed in), and `main`.
pub(super) fn document(
    status: StatusCode,
    title: &str,
    viewer: Option<&Viewer>,
    nav: Option<Nav>,
    main: &str,
) -> Response {
    let mut html = Html::new();
    html.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw(" · breakwater</title>")
        .raw("<link rel=\"stylesheet\" href=\"/console/static/console.css\">")
        .raw("<script src=\"/console/static/console.js\" defer></script></head><body>")
        .raw("<a class=\"skip\" href=\"#main\">Skip to content</a>")
        .raw("<header class=\"top\"><span class=\"brand\">breakwater</span>");
    if let Some(viewer) = viewer {
        html.raw("<nav aria-label=\"Console\"><ul>");
        for (item, href, label) in [
            (Nav::Channel, "/console", "Channel"),
            (Nav::Deploys, "/console/deploys", "Deploys"),
            (Nav::Audit, "/console/audit", "Audit log"),
        ] {
            html.raw("<li><a href=\"")
                .raw(href)
                .raw("\"")
                .raw(if nav == Some(item) {
                    " aria-current=\"page\""
                } else {
                    ""
                })
                .raw(">")
                .raw(label)
                .raw("</a></li>");
        }
        html.raw("</ul></nav><form class=\"signout\" method=\"post\" action=\"/console/logout\">")
            .raw("<input type=\"hidden\" name=\"csrf\" value=\"")
            .text(&viewer.csrf)
            .raw("\"><span>Signed in as <strong>")
            .text(&viewer.user)
            .raw("</strong></span> <button type=\"submit\" class=\"btn\">Sign out</button></form>");
    }
    html.raw("</header><main id=\"main\" tabindex=\"-1\">")
        .raw(main)
        .raw("</main></body></html>");
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html.into_string(),
    )
        .into_response();
    secure_headers(&mut response);
    if let Some(cookie) = viewer.and_then(|v| v.set_cookie.as_deref())
        && let Ok(value) = HeaderValue::from_str(cookie)
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

// --- request helpers ------------------------------------------------------------------------

impl Console {
    /// The signed-in person, or the refusal to answer: a redirect to the sign-in page
    /// for pages, 401 for everything else.
    pub(crate) async fn require(&self, parts: &Parts) -> Result<Viewer, Response> {
        match self
            .auth
            .viewer(&**self.bot.store(), parts, Utc::now())
            .await
        {
            Ok(Some(viewer)) => Ok(viewer),
            Ok(None) if parts.method == Method::GET && parts.uri.path() != "/console/events" => {
                Err(redirect("/console/login"))
            }
            Ok(None) => Err(PageError::new(
                StatusCode::UNAUTHORIZED,
                "Sign in to the console first.",
            )
            .into_response()),
            Err(error) => Err(PageError::store(error).into_response()),
        }
    }

    /// Renders one message for `viewer`, with fresh press nonces.
    pub(crate) fn render(&self, stored: &ConsoleMessage, viewer: &Viewer) -> String {
        let nonce = auth::random_token;
        let mut out = Html::new();
        html::article(
            &mut out,
            stored,
            &Viewing {
                csrf: &viewer.csrf,
                nonce: &nonce,
            },
        );
        out.into_string()
    }
}

pub(crate) fn visible_to(stored: &ConsoleMessage, user: &str) -> bool {
    stored
        .audience
        .as_deref()
        .is_none_or(|audience| audience == user)
}

/// Handlers take the signed-in person as an argument; a request without one is answered
/// before the handler runs, as [`Console::require`] answers it (the sign-in redirect, 401,
/// or 503 while the database is unavailable).
impl FromRequestParts<Shared> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, Response> {
        console.require(parts).await
    }
}

/// A form read with axum's [`Form`]. Its refusals are answered as a page naming the reason
/// rather than axum's plain text; the body limit is the router's ([`MAX_FORM`]). Fields are
/// `Option`s checked by the handler ([`required`]), so that a missing one is named.
pub(super) struct PageForm<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        match Form::<T>::from_request(request, state).await {
            Ok(Form(form)) => Ok(Self(form)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(PageError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("The form is larger than {MAX_FORM} bytes."),
                ))
            }
            Err(rejection) => Err(PageError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// A query string read with axum's [`Query`], refused as a page naming the reason.
pub(super) struct PageQuery<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(Self(query)),
            Err(rejection) => Err(PageError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// Reads a field left blank (a filter box submitted empty) as absent, which is what the
/// person means by it.
pub(super) fn non_blank<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|value| !value.trim().is_empty()))
}

/// A form field the handler cannot do without: its value, or a 400 naming it.
pub(super) fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, PageError> {
    value.as_deref().ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("The form has no {name:?} field."),
        )
    })
}

/// The form's CSRF token (its `csrf` field) against the session's.
fn check_csrf(token: Option<&str>, viewer: &Viewer) -> Result<(), PageError> {
    match token {
        Some(token) if auth::same_secret(token, &viewer.csrf) => Ok(()),
        _ => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong; reload the page and try again.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "non_blank")]
        name: Option<String>,
    }

    /// A route reading a [`PageForm`] under the console router's body limit.
    fn probe() -> Router {
        Router::new()
            .route(
                "/",
                post(|PageForm(form): PageForm<Probe>| async move {
                    required(&form.name, "name").map(str::to_owned)
                })
                .get(|PageQuery(query): PageQuery<Probe>| async move {
                    format!("{:?}", query.name)
                }),
            )
            .layer(DefaultBodyLimit::max(MAX_FORM))
    }

    async fn answer(request: Request) -> (StatusCode, String) {
        let response = probe().oneshot(request).await.expect("answer");
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn form(body: String) -> Request {
        Request::post("/")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request")
    }

    #[tokio::test]
    async fn a_form_over_the_limit_is_refused_with_the_page_naming_it() {
        let (status, body) = answer(form(format!("name={}", "a".repeat(MAX_FORM)))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("larger than 16384 bytes"), "{body}");
        let (status, body) = answer(form("name=ok".to_owned())).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    #[tokio::test]
    async fn a_missing_field_is_named_and_a_blank_query_field_is_absent() {
        let (status, body) = answer(form("other=1".to_owned())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("no &quot;name&quot; field"), "{body}");
        let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");
        assert_eq!(answer(get("/?name=+")).await.1, "None");
        assert_eq!(answer(get("/?name=x")).await.1, "Some(\"x\")");
    }
}
