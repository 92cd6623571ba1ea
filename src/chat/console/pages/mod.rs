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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;
use tokio::sync::broadcast;

use super::auth::{self, Auth, SignInError, Viewer};
use super::html::{self, Html, Viewing};
use super::{CHANNEL, ConsoleChat, live, timeline};
use crate::audit::{AuditQuery, AuditRecord, ExportFormat, actions};
use crate::core::bot::Bot;
use crate::core::deploy::{Deploy, DeploySource, DeployStatus};
use crate::core::event::{Press, Reply};
use crate::core::incident;
use crate::core::message::{ButtonAction, MessageRef, Platform};
use crate::http::ApiError;
use crate::store::{ConsoleMessage, ConsolePlace, DeployQuery, StoreError};

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
        .route("/console", get(channel))
        .route("/console/", get(|| async { redirect("/console") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/deploys", get(deploys))
        .route("/console/audit", get(audit))
        .route("/console/audit/export", get(export))
        .route("/console/events", get(live::events))
        .route("/console/press", post(press))
        .route(
            "/console/static/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/console/static/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
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

async fn read_form(body: Body) -> Result<HashMap<String, String>, PageError> {
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        PageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The form is larger than {MAX_FORM} bytes."),
        )
    })?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, PageError> {
    form.get(name).map(String::as_str).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("The form has no {name:?} field."),
        )
    })
}

fn check_csrf(form: &HashMap<String, String>, viewer: &Viewer) -> Result<(), PageError> {
    match form.get("csrf") {
        Some(token) if auth::same_secret(token, &viewer.csrf) => Ok(()),
        _ => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong; reload the page and try again.",
        )),
    }
}

fn query(parts: &Parts) -> HashMap<String, String> {
    url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .filter(|(_, value)| !value.trim().is_empty())
        .collect()
}

// --- sign-in --------------------------------------------------------------------------------

fn login_page(status: StatusCode, token: &str, error: Option<&str>, user: &str) -> Response {
    let mut main = Html::new();
    main.raw("<section class=\"login\" aria-labelledby=\"login-h\"><h1 id=\"login-h\">Sign in to the breakwater console</h1>");
    if let Some(error) = error {
        main.raw("<p class=\"error\" role=\"alert\">")
            .text(error)
            .raw("</p>");
    }
    main.raw("<form method=\"post\" action=\"/console/login\">")
        .raw("<input type=\"hidden\" name=\"csrf\" value=\"")
        .text(token)
        .raw("\"><label for=\"user\">User name</label>")
        .raw("<input id=\"user\" name=\"user\" autocomplete=\"username\" required autofocus value=\"")
        .text(user)
        .raw("\"><label for=\"password\">Password</label>")
        .raw("<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>")
        .raw("<button type=\"submit\" class=\"btn primary\">Sign in</button></form></section>");
    document(status, "Sign in", None, None, &main.into_string())
}

async fn login_form(State(console): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Ok(Some(_)) = console
        .auth
        .viewer(&**console.bot.store(), &parts, Utc::now())
        .await
    {
        return redirect("/console");
    }
    let token = auth::random_token();
    let mut response = login_page(StatusCode::OK, &token, None, "");
    if let Ok(value) = HeaderValue::from_str(&console.auth.login_cookie(&token)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn login(State(console): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form = match read_form(body).await {
        Ok(form) => form,
        Err(error) => return error.into_response(),
    };
    let cookie_token = auth::cookie(&parts.headers, auth::LOGIN_COOKIE).unwrap_or_default();
    let form_token = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !auth::same_secret(form_token, cookie_token) {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "The sign-in form's CSRF token is missing or does not match its cookie; open the sign-in page again.",
        )
        .into_response();
    }
    let user = form.get("user").map(|u| u.trim()).unwrap_or_default();
    let password = form.get("password").map(String::as_str).unwrap_or_default();
    let client = auth::peer(&parts).map(|peer| peer.ip().to_canonical());
    let store = console.bot.store();
    let audit = console.bot.audit();
    match console
        .auth
        .sign_in(&**store, user, password, client, Utc::now())
        .await
    {
        Ok((session, token)) => {
            let viewer = Viewer {
                user: session.user.clone(),
                csrf: session.csrf_token,
                set_cookie: None,
            };
            let entry = audit
                .entry(actions::CONSOLE_LOGIN)
                .actor(&viewer.actor())
                .details(json!({ "client": client.map(|ip| ip.to_string()) }));
            if let Err(error) = audit.append(entry).await {
                return PageError::store(error).into_response();
            }
            let mut response = redirect("/console");
            for cookie in [
                console.auth.session_cookie(&token),
                format!("{}=; Path=/console/login; Max-Age=0", auth::LOGIN_COOKIE),
            ] {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(SignInError::Store(error)) => PageError::store(error).into_response(),
        Err(error) => {
            let limited = matches!(error, SignInError::Limited(_));
            let entry = audit.entry(actions::CONSOLE_LOGIN_FAILED).details(json!({
                "user": user,
                "client": client.map(|ip| ip.to_string()),
                "reason": if limited { "rate_limited" } else { "wrong_credentials" },
            }));
            if let Err(error) = audit.append(entry).await {
                return PageError::store(error).into_response();
            }
            let (status, retry) = match error {
                SignInError::Limited(seconds) => (StatusCode::TOO_MANY_REQUESTS, Some(seconds)),
                _ => (StatusCode::UNAUTHORIZED, None),
            };
            let mut response = login_page(status, cookie_token, Some(&error.to_string()), user);
            if let Some(seconds) = retry
                && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

async fn logout(State(console): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let viewer = match console.require(&parts).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let form = match read_form(body).await {
        Ok(form) => form,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = check_csrf(&form, &viewer) {
        return error.into_response();
    }
    if let Some(token) = auth::cookie(&parts.headers, auth::SESSION_COOKIE)
        && let Err(error) = console
            .bot
            .store()
            .delete_console_session(&auth::token_hash(token))
            .await
    {
        return PageError::store(error).into_response();
    }
    let mut response = redirect("/console/login");
    if let Ok(value) = HeaderValue::from_str(&console.auth.clear_session_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

// --- channel --------------------------------------------------------------------------------

async fn channel(State(console): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let viewer = match console.require(&parts).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let now = Utc::now();
    let messages = match console
        .bot
        .store()
        .console_channel(CHANNEL, THREADS_SHOWN)
        .await
    {
        Ok(messages) => messages,
        Err(error) => return PageError::store(error).into_response(),
    };
    let mut replies: BTreeMap<i64, Vec<&ConsoleMessage>> = BTreeMap::new();
    let mut roots = Vec::new();
    for stored in messages.iter().filter(|m| visible_to(m, &viewer.user)) {
        match stored.thread {
            Some(root) => replies.entry(root).or_default().push(stored),
            None => roots.push(stored),
        }
    }
    let mut main = Html::new();
    main.raw("<h1>#").text(CHANNEL).raw("</h1>");
    // The script says the page updates itself once it really does; without it the page
    // is a snapshot, and says so.
    main.raw("<p id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\">")
        .raw("Showing the latest threads.<noscript> Reload to see new events.</noscript></p>");
    main.raw(&format!(
        "<div id=\"channel\" class=\"channel\" data-since=\"{}\">",
        now.timestamp_micros()
    ));
    if roots.is_empty() {
        main.raw(
            "<p class=\"empty\" id=\"empty\">No alerts yet. They appear here as they arrive.</p>",
        );
    }
    for root in roots.iter().rev() {
        main.raw(&format!(
            "<section class=\"thread\" id=\"t-{}\" aria-label=\"Thread\">",
            root.id
        ));
        main.raw(&console.render(root, &viewer));
        main.raw(&format!("<ol class=\"replies\" id=\"r-{}\">", root.id));
        for reply in replies.get(&root.id).into_iter().flatten() {
            main.raw("<li>")
                .raw(&console.render(reply, &viewer))
                .raw("</li>");
        }
        main.raw("</ol></section>");
    }
    main.raw("</div>");
    document(
        StatusCode::OK,
        "Channel",
        Some(&viewer),
        Some(Nav::Channel),
        &main.into_string(),
    )
}

async fn press(State(console): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let viewer = match console.require(&parts).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    match press_inner(&console, body, &viewer).await {
        Ok(message_id) => {
            let from_script = parts
                .headers
                .get("x-requested-with")
                .is_some_and(|v| v == "fetch");
            if from_script {
                StatusCode::NO_CONTENT.into_response()
            } else {
                redirect(&format!("/console#m-{message_id}"))
            }
        }
        Err(error) => error.into_response(),
    }
}

async fn press_inner(console: &Console, body: Body, viewer: &Viewer) -> Result<i64, PageError> {
    let form = read_form(body).await?;
    check_csrf(&form, viewer)?;
    let message_id: i64 = field(&form, "message")?.parse().map_err(|_| {
        PageError::new(StatusCode::BAD_REQUEST, "\"message\" must be a message id.")
    })?;
    let action = ButtonAction::decode(field(&form, "action")?).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "\"action\" is not one of breakwater's buttons.",
        )
    })?;
    let nonce = field(&form, "nonce")?;
    if nonce.is_empty()
        || nonce.len() > 64
        || !nonce
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "\"nonce\" must be 1–64 letters, digits, '-' or '_'.",
        ));
    }
    let pressed = console
        .bot
        .store()
        .console_message(message_id)
        .await
        .map_err(PageError::store)?
        .filter(|m| visible_to(m, &viewer.user))
        .ok_or_else(|| {
            PageError::new(
                StatusCode::NOT_FOUND,
                format!("There is no console message {message_id}."),
            )
        })?;
    let thread = pressed.thread.unwrap_or(pressed.id);
    // The nonce is fresh per rendering, so a double submit of one form is one press.
    let event_id = format!("press:{}:{nonce}", viewer.user);
    let press = Press {
        event_id: event_id.clone(),
        actor: viewer.actor(),
        action,
        channel: Some(format!("console:{}", pressed.channel)),
        message: Some(MessageRef {
            platform: Platform::Console,
            channel: pressed.channel.clone(),
            id: pressed.id.to_string(),
            thread: pressed.thread.map(|t| t.to_string()),
        }),
        confirmed_by_platform: false,
    };
    let reply = console.bot.handle_press(press).await;
    let private_prompt = pressed.audience.as_deref() == Some(viewer.user.as_str());
    let shown = match reply {
        Reply::None => Ok(pressed.id),
        // A private step (the Confirm/Cancel prompt) is answered in place.
        Reply::ReplaceSource(message) => console
            .chat
            .replace(pressed.id, &message)
            .await
            .map(|()| pressed.id),
        Reply::Private(message) if private_prompt => console
            .chat
            .replace(pressed.id, &message)
            .await
            .map(|()| pressed.id),
        Reply::Private(message) => console
            .chat
            .insert(
                ConsolePlace {
                    channel: &pressed.channel,
                    thread: Some(thread),
                    audience: Some(&viewer.user),
                },
                &message,
            )
            .await
            .map(|stored| {
                console.chat.remember_private_reply(event_id, stored.id);
                stored.id
            }),
    };
    shown.map_err(PageError::internal)
}

// --- deploys --------------------------------------------------------------------------------

async fn deploys(State(console): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let viewer = match console.require(&parts).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    match deploys_page(&console, &parts).await {
        Ok(main) => document(
            StatusCode::OK,
            "Deploys",
            Some(&viewer),
            Some(Nav::Deploys),
            &main,
        ),
        Err(error) => error.into_response(),
    }
}

async fn deploys_page(console: &Console, parts: &Parts) -> Result<String, PageError> {
    let filter = query(parts);
    let store = console.bot.store();
    let services = console.bot.recognizer().services();
    let wanted = filter.get("service").map(|s| s.to_lowercase());
    let groups = store
        .recent_alert_groups(ALERT_GROUPS_SHOWN)
        .await
        .map_err(PageError::store)?;
    let fired = store
        .recent_alert_groups_fired_at(ALERT_GROUPS_SHOWN)
        .await
        .map_err(PageError::store)?;
    let now = Utc::now();
    let figures = incident::recovery_figures(store, now)
        .await
        .map_err(PageError::internal)?;
    let mut main = Html::new();
    main.raw("<h1>Deploys</h1>");
    main.raw("<form class=\"filters\" method=\"get\" action=\"/console/deploys\"><label for=\"f-service\">Service</label><select id=\"f-service\" name=\"service\"><option value=\"\">All services</option>");
    for service in services {
        let name = service.name.as_str();
        main.raw("<option")
            .raw(if wanted.as_deref() == Some(&name.to_lowercase()) {
                " selected"
            } else {
                ""
            })
            .raw(">")
            .text(name)
            .raw("</option>");
    }
    main.raw("</select><button type=\"submit\" class=\"btn\">Show</button></form>");
    let mut shown = 0;
    for service in services {
        if wanted
            .as_deref()
            .is_some_and(|w| w != service.name.as_str().to_lowercase())
        {
            continue;
        }
        shown += 1;
        let deploys = store
            .deploys(&DeployQuery {
                service: Some(service.name.clone()),
                limit: DEPLOYS_SHOWN,
                ..DeployQuery::default()
            })
            .await
            .map_err(PageError::store)?;
        let alerts: Vec<_> = groups
            .iter()
            .filter(|g| g.target.as_ref().is_some_and(|t| t.service == service.name))
            .map(|group| timeline::AlertMark {
                group,
                // A group whose first alert is not readable yet is drawn when it arrived.
                fired_at: fired.get(&group.id).copied().unwrap_or(group.opened_at),
            })
            .collect();
        let id = format!("svc-{}", service.name.key());
        main.raw("<section class=\"service\" aria-labelledby=\"")
            .text(&id)
            .raw("\"><h2 id=\"")
            .text(&id)
            .raw("\">")
            .text(service.name.as_str())
            .raw("</h2>");
        main.raw(&timeline::svg(
            service.name.as_str(),
            &deploys,
            &alerts,
            now,
        ));
        recovery_table(
            &mut main,
            service.name.as_str(),
            figures.by_service.get(service.name.as_str()),
            figures.incomplete,
        );
        let mut by_environment: BTreeMap<String, Vec<&Deploy>> = BTreeMap::new();
        for deploy in &deploys {
            by_environment
                .entry(deploy.target.environment.as_str().to_owned())
                .or_default()
                .push(deploy);
        }
        if by_environment.is_empty() {
            main.raw("<p class=\"empty\">No deploys recorded yet.</p>");
        }
        for (environment, deploys) in by_environment {
            deploy_table(
                &mut main,
                service.name.as_str(),
                &environment,
                &deploys,
                now,
            );
        }
        main.raw("</section>");
    }
    if shown == 0 {
        main.raw("<p class=\"empty\">No such service is configured.</p>");
    }
    Ok(main.into_string())
}

/// How fast a service recovered: median and worst of each incident interval over the last
/// period and the one before, so that a team sees whether it is getting faster.
fn recovery_table(
    html: &mut Html,
    service: &str,
    figures: Option<&incident::ServiceFigures>,
    incomplete: bool,
) {
    let days = incident::FIGURES_PERIOD_DAYS;
    let Some(figures) = figures.filter(|f| f.recent.incidents + f.before.incidents > 0) else {
        html.raw("<p class=\"empty\">No incidents of ")
            .text(service)
            .raw(&format!(" in the last {} days.</p>", 2 * days));
        return;
    };
    let cell = |spread: Option<incident::Spread>, pick: fn(&incident::Spread) -> u64| {
        incident::seconds_words(spread.as_ref().map(pick))
    };
    html.raw("<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Recovery of ")
        .text(service)
        .raw("\"><table class=\"recovery\"><caption>Recovery of ")
        .text(service)
        .raw(&format!(
            ": incidents opened in the last {days} days ({}) and the {days} days before ({})",
            figures.recent.incidents, figures.before.incidents
        ))
        .raw("</caption><thead><tr><th scope=\"col\">Interval</th>")
        .raw(&format!(
            "<th scope=\"col\">Median, last {days} days</th><th scope=\"col\">Worst, last {days} days</th>\
             <th scope=\"col\">Median, {days} days before</th><th scope=\"col\">Worst, {days} days before</th>"
        ))
        .raw("<th scope=\"col\">Median change</th></tr></thead><tbody>");
    for (i, name) in incident::INTERVAL_NAMES.iter().enumerate() {
        let recent = figures.recent.intervals[i];
        let before = figures.before.intervals[i];
        let change = match (recent, before) {
            (Some(recent), Some(before)) if recent.median < before.median => "faster",
            (Some(recent), Some(before)) if recent.median > before.median => "slower",
            (Some(_), Some(_)) => "the same",
            _ => "—",
        };
        html.raw("<tr><th scope=\"row\">")
            .text(name)
            .raw("</th><td>")
            .text(&cell(recent, |s| s.median))
            .raw("</td><td>")
            .text(&cell(recent, |s| s.worst))
            .raw("</td><td>")
            .text(&cell(before, |s| s.median))
            .raw("</td><td>")
            .text(&cell(before, |s| s.worst))
            .raw("</td><td>")
            .text(change)
            .raw("</td></tr>");
    }
    html.raw("</tbody></table></div>");
    if incomplete {
        html.raw("<p class=\"empty\">The audit log held more records than the figures read; the oldest incidents may be counted short.</p>");
    }
}

fn ago(now: chrono::DateTime<Utc>, at: chrono::DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    if seconds < 0 {
        return "in the future".to_owned();
    }
    format!(
        "{} ago",
        crate::core::summary::human_span(seconds.unsigned_abs())
    )
}

fn deploy_table(
    html: &mut Html,
    service: &str,
    environment: &str,
    deploys: &[&Deploy],
    now: chrono::DateTime<Utc>,
) {
    // On a phone the table scrolls sideways in its own box, not the page; the box is
    // focusable so that keyboard users can scroll it too.
    html.raw("<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Deploys of ")
        .text(service)
        .raw(" in ")
        .text(environment)
        .raw("\"><table class=\"deploys\"><caption>")
        .text(service)
        .raw(" in ")
        .text(environment)
        .raw("</caption><thead><tr><th scope=\"col\">Version</th><th scope=\"col\">When</th>")
        .raw("<th scope=\"col\">Author</th><th scope=\"col\">Status</th><th scope=\"col\">Changes</th>")
        .raw("<th scope=\"col\">Configuration</th></tr></thead><tbody>");
    for deploy in deploys {
        html.raw("<tr><td><code>")
            .text(&deploy.version)
            .raw("</code>");
        if deploy.source == DeploySource::Rollback {
            html.raw(" <span class=\"badge\">rollback</span>");
        }
        if let Some(previous) = &deploy.previous_version {
            html.raw("<br><small>from <code>")
                .text(previous)
                .raw("</code></small>");
        }
        html.raw("</td><td>");
        html::time(html, deploy.started_at);
        html.raw("<br><small>")
            .text(&format!("started {}", ago(now, deploy.started_at)))
            .raw("</small></td><td>")
            .text(deploy.author.as_deref().unwrap_or("—"))
            .raw("</td><td class=\"status-")
            .raw(deploy.status.as_str())
            .raw("\">")
            .text(match deploy.status {
                DeployStatus::Started => "rolling out",
                DeployStatus::Succeeded => "succeeded",
                DeployStatus::Failed => "failed",
            })
            .raw("</td><td>");
        if deploy.changes.is_empty() {
            html.text(deploy.description.as_deref().unwrap_or("—"));
        } else {
            html.raw("<ul>");
            for change in &deploy.changes {
                html.raw("<li><code>")
                    .text(&change.commit.chars().take(7).collect::<String>())
                    .raw("</code> ")
                    .text(&change.message)
                    .raw("</li>");
            }
            html.raw("</ul>");
        }
        html.raw("</td><td>");
        if deploy.config_changes.is_empty() {
            html.raw("—");
        } else {
            html.raw("<ul class=\"config\">");
            for change in &deploy.config_changes {
                html.raw("<li><code>")
                    .text(&change.key)
                    .raw("</code>: ")
                    .text(change.old.as_deref().unwrap_or("(unset)"))
                    .raw(" → ")
                    .text(change.new.as_deref().unwrap_or("(unset)"))
                    .raw("</li>");
            }
            html.raw("</ul>");
        }
        html.raw("</td></tr>");
    }
    html.raw("</tbody></table></div>");
}

// --- audit ----------------------------------------------------------------------------------

async fn audit(State(console): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let viewer = match console.require(&parts).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    match audit_page(&console, &parts).await {
        Ok(main) => document(
            StatusCode::OK,
            "Audit log",
            Some(&viewer),
            Some(Nav::Audit),
            &main,
        ),
        Err(error) => error.into_response(),
    }
}

async fn audit_page(console: &Console, parts: &Parts) -> Result<String, PageError> {
    let filter = query(parts);
    let before_seq = match filter.get("before") {
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "\"before\" must be a sequence number.",
            )
        })?),
        None => None,
    };
    let log = console.bot.audit();
    let records = console
        .bot
        .store()
        .audit_search_containing(&AuditQuery {
            before_seq,
            limit: AUDIT_PAGE,
            ..audit_filter(&filter)
        })
        .await
        .map_err(PageError::store)?;
    let report = log.verify().await.map_err(PageError::store)?;
    let mut main = Html::new();
    main.raw("<h1>Audit log</h1><div class=\"chain\" role=\"status\">");
    match &report.problem {
        None => {
            main.raw("<p class=\"ok\"><strong>Chain intact:</strong> ")
                .text(&report.count.to_string())
                .raw(" records verified. Head hash <code class=\"hash\">")
                .text(&report.head_hash)
                .raw("</code></p>");
        }
        Some(problem) => {
            main.raw("<p class=\"broken\"><strong>Chain BROKEN</strong> at ")
                .text(&problem.to_string())
                .raw(" (")
                .text(&report.count.to_string())
                .raw(" records verified before it).</p>");
        }
    }
    // The downloads carry the filters shown, so that what is downloaded is what is seen
    // (every page of it).
    let filtered = !filter_pairs(&filter).is_empty();
    main.raw("<p>");
    for (format, label) in [("jsonl", "Download JSON Lines"), ("csv", "Download CSV")] {
        let mut pairs = vec![("format", format)];
        pairs.extend(filter_pairs(&filter));
        let href = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        main.raw("<a class=\"btn\" href=\"/console/audit/export?")
            .text(&href)
            .raw("\" download>")
            .raw(label)
            .raw(if filtered { " (filtered)" } else { "" })
            .raw("</a> ");
    }
    main.raw("</p></div>");
    main.raw("<form class=\"filters\" method=\"get\" action=\"/console/audit\">");
    for (name, label) in [
        ("service", "Service"),
        ("actor", "Actor"),
        ("action", "Action"),
    ] {
        main.raw("<label for=\"f-")
            .raw(name)
            .raw("\">")
            .raw(label)
            .raw("</label><input id=\"f-")
            .raw(name)
            .raw("\" name=\"")
            .raw(name)
            .raw("\" value=\"")
            .text(filter.get(name).map(String::as_str).unwrap_or_default())
            .raw("\"")
            .raw(if name == "action" {
                " placeholder=\"e.g. rollback\""
            } else {
                ""
            })
            .raw(">");
    }
    main.raw("<button type=\"submit\" class=\"btn\">Filter</button> <a href=\"/console/audit\">Clear</a></form>");
    main.raw("<div class=\"scroll\" role=\"region\" tabindex=\"0\" aria-label=\"Audit records\"><table class=\"audit\"><caption>Newest first</caption><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Time</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th><th scope=\"col\">Service</th><th scope=\"col\">Details</th></tr></thead><tbody>");
    for record in &records {
        main.raw("<tr><td>")
            .text(&record.seq.to_string())
            .raw("</td><td>");
        html::time(&mut main, record.at);
        main.raw("</td><td>");
        if record.actor.is_empty() {
            main.raw("<em>breakwater</em>");
        } else {
            main.text(&record.actor_name)
                .raw("<br><small><code>")
                .text(&record.actor)
                .raw("</code></small>");
        }
        main.raw("</td><td><code>")
            .text(&record.action)
            .raw("</code></td><td>")
            .text(&record.service)
            .raw(" ")
            .text(&record.environment)
            .raw("</td><td>");
        details(&mut main, &record.details_value());
        main.raw("</td></tr>");
    }
    main.raw("</tbody></table></div>");
    if records.is_empty() {
        main.raw("<p class=\"empty\">No records match.</p>");
    }
    if records.len() == AUDIT_PAGE as usize
        && let Some(last) = records.last()
    {
        let mut next: Vec<(String, String)> = filter
            .iter()
            .filter(|(k, _)| k.as_str() != "before")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        next.push(("before".into(), last.seq.to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        main.raw("<p><a href=\"/console/audit?")
            .text(&query)
            .raw("\">Older records</a></p>");
    }
    Ok(main.into_string())
}

/// The audit filters a person can set on the page, as the store reads them.
fn audit_filter(filter: &HashMap<String, String>) -> AuditQuery {
    AuditQuery {
        service: filter.get("service").cloned(),
        actor: filter.get("actor").cloned(),
        action: filter.get("action").cloned(),
        ..AuditQuery::default()
    }
}

/// The filters set, in a fixed order, for links that keep them.
fn filter_pairs(filter: &HashMap<String, String>) -> Vec<(&'static str, &str)> {
    ["service", "actor", "action"]
        .into_iter()
        .filter_map(|name| filter.get(name).map(|value| (name, value.as_str())))
        .collect()
}

/// Whether a record passes the page's filters, read the way
/// [`Store::audit_search_containing`](crate::store::Store::audit_search_containing)
/// reads them: service exact, actor by principal or name, action by any part of it.
fn audit_keeps(query: &AuditQuery, record: &AuditRecord) -> bool {
    query.service.as_ref().is_none_or(|s| *s == record.service)
        && query
            .actor
            .as_ref()
            .is_none_or(|a| *a == record.actor || *a == record.actor_name)
        && query
            .action
            .as_ref()
            .is_none_or(|a| record.action.to_lowercase().contains(&a.to_lowercase()))
}

/// Audit details as `key: value` lines, nested keys joined with dots, so that they read
/// (and wrap) as text rather than as one long JSON string.
fn details(html: &mut Html, value: &serde_json::Value) {
    let mut lines = Vec::new();
    flatten(String::new(), value, &mut lines);
    if lines.is_empty() {
        html.raw("—");
        return;
    }
    html.raw("<ul class=\"kv\">");
    for (key, value) in lines {
        html.raw("<li>");
        if !key.is_empty() {
            html.raw("<span class=\"key\">").text(&key).raw("</span>: ");
        }
        html.text(&value).raw("</li>");
    }
    html.raw("</ul>");
}

/// Appends one `(a.b.c, value)` line per leaf of `value`.
fn flatten(prefix: String, value: &serde_json::Value, lines: &mut Vec<(String, String)>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                flatten(join(key), value, lines);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (i, value) in items.iter().enumerate() {
                flatten(join(&i.to_string()), value, lines);
            }
        }
        serde_json::Value::Object(_) | serde_json::Value::Array(_) if prefix.is_empty() => {}
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
            lines.push((prefix, "(empty)".to_owned()));
        }
        serde_json::Value::String(text) => lines.push((prefix, text.clone())),
        serde_json::Value::Null => lines.push((prefix, "(none)".to_owned())),
        other => lines.push((prefix, other.to_string())),
    }
}

async fn export(State(console): State<Shared>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(response) = console.require(&parts).await {
        return response;
    }
    let filter = query(&parts);
    let (format, content_type, extension) = match filter.get("format").map(String::as_str) {
        None | Some("jsonl") => (ExportFormat::Jsonl, "application/x-ndjson", "jsonl"),
        Some("csv") => (ExportFormat::Csv, "text/csv; charset=utf-8", "csv"),
        Some(other) => {
            return PageError::new(
                StatusCode::BAD_REQUEST,
                format!("Unknown export format {other:?}; use jsonl or csv."),
            )
            .into_response();
        }
    };
    let since = match filter.get("since") {
        Some(raw) => match chrono::DateTime::parse_from_rfc3339(raw) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => {
                return PageError::new(
                    StatusCode::BAD_REQUEST,
                    "\"since\" must be an RFC 3339 time.",
                )
                .into_response();
            }
        },
        None => None,
    };
    // The export writes to a `dyn Write`, which cannot cross threads: it runs to its end
    // on a blocking thread instead of inside this handler's future.
    let log = console.bot.audit().clone();
    let runtime = tokio::runtime::Handle::current();
    let wanted = audit_filter(&filter);
    let exported = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let keep = |record: &AuditRecord| audit_keeps(&wanted, record);
        runtime
            .block_on(log.export_matching(format, since, &keep, &mut out))
            .map(|_| out)
    })
    .await;
    let out = match exported {
        Ok(Ok(out)) => out,
        Ok(Err(error)) => return PageError::internal(error).into_response(),
        Err(error) => return PageError::internal(error).into_response(),
    };
    let disposition = format!(
        "attachment; filename=\"breakwater-audit-{}.{extension}\"",
        Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response();
    secure_headers(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(value: serde_json::Value) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        flatten(String::new(), &value, &mut lines);
        lines
    }

    #[test]
    fn nested_details_flatten_to_dotted_keys() {
        let out = lines(json!({"to": {"version": "v41", "id": 7}, "hosts": ["a"], "none": null}));
        assert_eq!(
            out,
            [
                ("hosts.0".to_owned(), "a".to_owned()),
                ("none".to_owned(), "(none)".to_owned()),
                ("to.id".to_owned(), "7".to_owned()),
                ("to.version".to_owned(), "v41".to_owned()),
            ]
        );
    }

    #[test]
    fn empty_details_are_no_lines_and_empty_nested_values_say_so() {
        assert!(lines(json!({})).is_empty());
        assert_eq!(
            lines(json!({"changes": []})),
            [("changes".to_owned(), "(empty)".to_owned())]
        );
    }

    #[test]
    fn the_export_filter_reads_the_action_as_a_part_of_it() {
        let record = |action: &str| AuditRecord {
            seq: 1,
            at: Utc::now(),
            actor: "console:alice".into(),
            actor_name: "alice".into(),
            action: action.into(),
            service: "checkout".into(),
            environment: "production".into(),
            details: "{}".into(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        let query = AuditQuery {
            action: Some("RollBack".into()),
            actor: Some("alice".into()),
            ..AuditQuery::default()
        };
        assert!(audit_keeps(&query, &record("rollback.started")));
        assert!(!audit_keeps(&query, &record("alert.received")));
        let other_service = AuditQuery {
            service: Some("payments".into()),
            ..AuditQuery::default()
        };
        assert!(!audit_keeps(&other_service, &record("rollback.started")));
    }
}
