//! The Incident page: one alert group's timeline, durations and suspect change, computed
//! from the audit log (see [`crate::core::incident`]), with the postmortem draft to
//! download as Markdown or JSON. The thread's summary links here when `server.public_url`
//! is set.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::auth::Viewer;
use super::html::{self, Html};
use super::pages::{PageError, Shared, document, secure_headers};
use crate::core::incident::{self, ChainState, Incident};

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/console/incidents/{id}", get(page))
        .route("/console/incidents/{id}/postmortem.md", get(markdown))
        .route("/console/incidents/{id}/incident.json", get(json))
        .with_state(state)
}

/// The incident of the path's id, read after the viewer is known to be signed in.
async fn find(console: &Shared, raw: &str) -> Result<Incident, PageError> {
    let id: i64 = raw.parse().map_err(|_| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("{raw:?} is not an incident id; incident ids are numbers."),
        )
    })?;
    let store = console.bot.store();
    incident::load(store, console.bot.audit(), id, true)
        .await
        .map_err(PageError::internal)?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, format!("There is no incident {id}.")))
}

async fn page(State(console): State<Shared>, viewer: Viewer, Path(raw): Path<String>) -> Response {
    match find(&console, &raw).await {
        Ok(found) => document(
            StatusCode::OK,
            &format!("Incident #{}", found.id),
            Some(&viewer),
            None,
            &render(&found),
        ),
        Err(error) => error.into_response(),
    }
}

async fn markdown(
    State(console): State<Shared>,
    _viewer: Viewer,
    Path(raw): Path<String>,
) -> Response {
    download(
        console,
        raw,
        "text/markdown; charset=utf-8",
        "md",
        incident::to_markdown,
    )
    .await
}

async fn json(State(console): State<Shared>, _viewer: Viewer, Path(raw): Path<String>) -> Response {
    download(console, raw, "application/json", "json", incident::to_json).await
}

async fn download(
    console: Shared,
    raw: String,
    content_type: &'static str,
    extension: &str,
    render: fn(&Incident) -> String,
) -> Response {
    let found = match find(&console, &raw).await {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    let disposition = format!(
        "attachment; filename=\"breakwater-incident-{}.{extension}\"",
        found.id
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        render(&found),
    )
        .into_response();
    secure_headers(&mut response);
    response
}

fn render(found: &Incident) -> String {
    let mut main = Html::new();
    main.raw("<h1>Incident #")
        .text(&found.id.to_string())
        .raw(": ")
        .text(&found.title)
        .raw("</h1><div class=\"chain\" role=\"status\">");
    match &found.chain {
        ChainState::Broken { problem } => {
            main.raw("<p class=\"broken\"><strong>The audit chain does not verify</strong> (")
                .text(problem)
                .raw("); this timeline may not be what happened.</p>");
        }
        ChainState::Verified | ChainState::Unchecked => {
            main.raw("<p class=\"ok\">Computed from the audit log; the chain verifies.</p>");
        }
    }
    main.raw("<p>").text(&format!(
        "State: {}. Alerts grouped: {}. Opened {}",
        incident::state_words(found),
        found.alert_count,
        found.opened_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    if let Some(ended) = &found.ended {
        main.text(&format!(
            ", ended {}",
            ended.at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    main.raw(".</p>");
    let id = found.id.to_string();
    main.raw("<p><a class=\"btn\" href=\"/console/incidents/")
        .text(&id)
        .raw("/postmortem.md\" download>Download the postmortem draft (Markdown)</a> ")
        .raw("<a class=\"btn\" href=\"/console/incidents/")
        .text(&id)
        .raw("/incident.json\" download>Download JSON</a></p></div>");
    main.raw("<table class=\"audit\"><caption>Timeline, oldest first</caption><thead><tr><th scope=\"col\">Time</th><th scope=\"col\">Offset</th><th scope=\"col\">Actor</th><th scope=\"col\">Event</th></tr></thead><tbody>");
    for entry in &found.timeline {
        main.raw("<tr><td>");
        html::time(&mut main, entry.at);
        main.raw("</td><td>")
            .text(&entry.offset())
            .raw("</td><td>")
            .text(&entry.actor)
            .raw("</td><td>")
            .text(&entry.text)
            .raw("</td></tr>");
    }
    main.raw("</tbody></table>");
    main.raw("<h2>Durations</h2><table class=\"audit\"><thead><tr><th scope=\"col\">Interval</th><th scope=\"col\">Took</th></tr></thead><tbody>");
    for (name, seconds) in incident::duration_rows(&found.durations) {
        main.raw("<tr><td>")
            .text(name)
            .raw("</td><td>")
            .text(&incident::seconds_words(seconds))
            .raw("</td></tr>");
    }
    main.raw("</tbody></table>");
    main.into_string()
}
