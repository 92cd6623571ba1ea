//! The deploys page: per service a timeline, the recovery figures of the last 30 days,
//! and the recent deploys per environment.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::{
    ALERT_GROUPS_SHOWN, DEPLOYS_SHOWN, Nav, PageError, PageQuery, Shared, document, non_blank,
};
use crate::chat::console::auth::Viewer;
use crate::chat::console::html::{self, Html};
use crate::chat::console::timeline;
use crate::core::deploy::{Deploy, DeploySource, DeployStatus};
use crate::core::incident;
use crate::store::DeployQuery;

/// The page's filter: one service, or all when absent or blank.
#[derive(Deserialize)]
pub(super) struct DeploysQuery {
    #[serde(default, deserialize_with = "non_blank")]
    service: Option<String>,
}

pub(super) async fn deploys(
    State(console): State<Shared>,
    viewer: Viewer,
    PageQuery(filter): PageQuery<DeploysQuery>,
) -> Result<Response, PageError> {
    let store = console.bot.store();
    let services = console.bot.recognizer().services();
    let wanted = filter.service.map(|s| s.to_lowercase());
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
    Ok(document(
        StatusCode::OK,
        "Deploys",
        Some(&viewer),
        Some(Nav::Deploys),
        &main.into_string(),
    ))
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
