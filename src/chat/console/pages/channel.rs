//! The channel page (threads of alerts, summaries, progress and outcomes) and the
//! button presses made on it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::{
    Nav, PageError, PageForm, Shared, THREADS_SHOWN, check_csrf, document, redirect, required,
    visible_to,
};
use crate::chat::console::CHANNEL;
use crate::chat::console::auth::Viewer;
use crate::chat::console::html::Html;
use crate::core::event::{Press, Reply};
use crate::core::message::{ButtonAction, MessageRef, Platform};
use crate::store::{ConsoleMessage, ConsolePlace};

pub(super) async fn channel(
    State(console): State<Shared>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let messages = console
        .bot
        .store()
        .console_channel(CHANNEL, THREADS_SHOWN)
        .await
        .map_err(PageError::store)?;
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
    Ok(document(
        StatusCode::OK,
        "Channel",
        Some(&viewer),
        Some(Nav::Channel),
        &main.into_string(),
    ))
}

/// A button press. Every field is checked here, so that a missing one is named.
#[derive(Deserialize)]
pub(super) struct PressForm {
    csrf: Option<String>,
    message: Option<String>,
    action: Option<String>,
    nonce: Option<String>,
}

pub(super) async fn press(
    State(console): State<Shared>,
    viewer: Viewer,
    headers: HeaderMap,
    PageForm(form): PageForm<PressForm>,
) -> Result<Response, PageError> {
    check_csrf(form.csrf.as_deref(), &viewer)?;
    let message_id: i64 = required(&form.message, "message")?.parse().map_err(|_| {
        PageError::new(StatusCode::BAD_REQUEST, "\"message\" must be a message id.")
    })?;
    let action = ButtonAction::decode(required(&form.action, "action")?).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "\"action\" is not one of breakwater's buttons.",
        )
    })?;
    let nonce = required(&form.nonce, "nonce")?;
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
    let message_id = shown.map_err(PageError::internal)?;
    let from_script = headers
        .get("x-requested-with")
        .is_some_and(|v| v == "fetch");
    Ok(if from_script {
        StatusCode::NO_CONTENT.into_response()
    } else {
        redirect(&format!("/console#m-{message_id}"))
    })
}
