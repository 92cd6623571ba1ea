//! The audit log page (filtered, with the chain's status and head hash) and its
//! JSON Lines / CSV export.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::{AUDIT_PAGE, Nav, PageError, PageQuery, Shared, document, non_blank, secure_headers};
use crate::audit::{AuditQuery, AuditRecord, ExportFormat};
use crate::chat::console::auth::Viewer;
use crate::chat::console::html::{self, Html};

/// The filters a person can set on the audit page; the export reads the same ones.
#[derive(Deserialize)]
pub(super) struct AuditFilters {
    #[serde(default, deserialize_with = "non_blank")]
    service: Option<String>,
    #[serde(default, deserialize_with = "non_blank")]
    actor: Option<String>,
    #[serde(default, deserialize_with = "non_blank")]
    action: Option<String>,
}

/// The audit page's query: its filters and where the page starts.
#[derive(Deserialize)]
pub(super) struct AuditPageQuery {
    #[serde(flatten)]
    filters: AuditFilters,
    /// Kept as text so that a bad one is refused with the page's own reason.
    #[serde(default, deserialize_with = "non_blank")]
    before: Option<String>,
}

pub(super) async fn audit(
    State(console): State<Shared>,
    viewer: Viewer,
    PageQuery(query): PageQuery<AuditPageQuery>,
) -> Result<Response, PageError> {
    let filter = query.filters;
    let before_seq = match query.before {
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
            .text(
                filter_pairs(&filter)
                    .into_iter()
                    .find_map(|(set, value)| (set == name).then_some(value))
                    .unwrap_or_default(),
            )
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
        let before = last.seq.to_string();
        let mut next = filter_pairs(&filter);
        next.push(("before", &before));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        main.raw("<p><a href=\"/console/audit?")
            .text(&query)
            .raw("\">Older records</a></p>");
    }
    Ok(document(
        StatusCode::OK,
        "Audit log",
        Some(&viewer),
        Some(Nav::Audit),
        &main.into_string(),
    ))
}

/// The audit filters a person can set on the page, as the store reads them.
fn audit_filter(filter: &AuditFilters) -> AuditQuery {
    AuditQuery {
        service: filter.service.clone(),
        actor: filter.actor.clone(),
        action: filter.action.clone(),
        ..AuditQuery::default()
    }
}

/// The filters set, in a fixed order, for links that keep them.
fn filter_pairs(filter: &AuditFilters) -> Vec<(&'static str, &str)> {
    [
        ("service", &filter.service),
        ("actor", &filter.actor),
        ("action", &filter.action),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_deref().map(|value| (name, value)))
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

/// The export's query: the page's filters, the format, and where the export starts.
#[derive(Deserialize)]
pub(super) struct ExportQuery {
    #[serde(flatten)]
    filters: AuditFilters,
    #[serde(default, deserialize_with = "non_blank")]
    format: Option<String>,
    #[serde(default, deserialize_with = "non_blank")]
    since: Option<String>,
}

pub(super) async fn export(
    State(console): State<Shared>,
    _viewer: Viewer,
    PageQuery(query): PageQuery<ExportQuery>,
) -> Result<Response, PageError> {
    let (format, content_type, extension) = match query.format.as_deref() {
        None | Some("jsonl") => (ExportFormat::Jsonl, "application/x-ndjson", "jsonl"),
        Some("csv") => (ExportFormat::Csv, "text/csv; charset=utf-8", "csv"),
        Some(other) => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("Unknown export format {other:?}; use jsonl or csv."),
            ));
        }
    };
    let since = match query.since.as_deref() {
        Some(raw) => Some(
            chrono::DateTime::parse_from_rfc3339(raw)
                .map_err(|_| {
                    PageError::new(
                        StatusCode::BAD_REQUEST,
                        "\"since\" must be an RFC 3339 time.",
                    )
                })?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    // The export writes to a `dyn Write`, which cannot cross threads: it runs to its end
    // on a blocking thread instead of inside this handler's future.
    let log = console.bot.audit().clone();
    let runtime = tokio::runtime::Handle::current();
    let wanted = audit_filter(&query.filters);
    let exported = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let keep = |record: &AuditRecord| audit_keeps(&wanted, record);
        runtime
            .block_on(log.export_matching(format, since, &keep, &mut out))
            .map(|_| out)
    })
    .await;
    let out = exported
        .map_err(PageError::internal)?
        .map_err(PageError::internal)?;
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
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
