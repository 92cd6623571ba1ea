//! Signing in and out: the sign-in form with its double-submit cookie, and the POSTs
//! that make and end a session.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{PageError, PageForm, Shared, check_csrf, document, redirect};
use crate::audit::actions;
use crate::chat::console::auth::{self, SignInError, Viewer};
use crate::chat::console::html::Html;

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

pub(super) async fn login_form(State(console): State<Shared>, parts: Parts) -> Response {
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

/// The sign-in form. A missing field reads as empty: the sign-in is refused as any wrong
/// one is.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    csrf: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

pub(super) async fn login(
    State(console): State<Shared>,
    parts: Parts,
    PageForm(form): PageForm<LoginForm>,
) -> Response {
    let cookie_token = auth::cookie(&parts.headers, auth::LOGIN_COOKIE).unwrap_or_default();
    let form_token = form.csrf.as_deref().unwrap_or_default();
    if !auth::same_secret(form_token, cookie_token) {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "The sign-in form's CSRF token is missing or does not match its cookie; open the sign-in page again.",
        )
        .into_response();
    }
    let user = form.user.as_deref().map(str::trim).unwrap_or_default();
    let password = form.password.as_deref().unwrap_or_default();
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

/// The sign-out form: only its CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

pub(super) async fn logout(
    State(console): State<Shared>,
    viewer: Viewer,
    headers: HeaderMap,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(form.csrf.as_deref(), &viewer)?;
    if let Some(token) = auth::cookie(&headers, auth::SESSION_COOKIE) {
        console
            .bot
            .store()
            .delete_console_session(&auth::token_hash(token))
            .await
            .map_err(PageError::store)?;
    }
    let mut response = redirect("/console/login");
    if let Ok(value) = HeaderValue::from_str(&console.auth.clear_session_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
