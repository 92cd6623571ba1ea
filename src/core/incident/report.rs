//! One incident rendered: a chat message, the Markdown postmortem draft and JSON.

use super::*;

/// "open", "resolved" or "ended: not deploy-related".
pub fn state_words(incident: &Incident) -> &'static str {
    match incident.ended.as_ref().map(|e| e.how) {
        Some(Ending::Resolved) => "resolved",
        Some(Ending::NotDeployRelated) => "ended: not deploy-related",
        None => "open",
    }
}

fn chain_warning(chain: &ChainState) -> Option<String> {
    match chain {
        ChainState::Broken { problem } => Some(format!(
            "The audit chain does not verify ({problem}); this timeline may not be what happened."
        )),
        ChainState::Verified | ChainState::Unchecked => None,
    }
}

/// The timeline as a chat message. `link` is the console's Incident page, when known.
pub fn to_message(incident: &Incident, link: Option<String>) -> Message {
    let heading = format!(
        "Incident #{}: {} ({})",
        incident.id,
        incident.title,
        state_words(incident)
    );
    let mut sections = Vec::new();
    if let Some(warning) = chain_warning(&incident.chain) {
        sections.push(Section::Text {
            text: RichText::new().bold(warning),
        });
    }
    let lines: Vec<RichText> = incident
        .timeline
        .iter()
        .map(|e| {
            RichText::new()
                .code(e.at.format("%H:%M:%S").to_string())
                .plain(format!(" {} ", e.offset()))
                .plain(format!("{} — {}", e.text, e.actor))
        })
        .collect();
    sections.push(Section::Lines {
        lines: lines.clone(),
    });
    if let Some(link) = link {
        sections.push(Section::Context {
            text: RichText::new().link("Incident page and postmortem draft", link),
        });
    }
    let mut text = format!("{heading}, times UTC:\n");
    if let Some(warning) = chain_warning(&incident.chain) {
        text.push_str(&warning);
        text.push('\n');
    }
    text.push_str(
        &lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    Message {
        text,
        title: Some(heading),
        tone: if matches!(incident.chain, ChainState::Broken { .. }) {
            Tone::Warning
        } else {
            Tone::Info
        },
        sections,
        actions: vec![],
        status: None,
    }
}

/// Escapes text from outside for Markdown (table cells and prose).
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// "2 min (120 s)", or a dash for what did not happen.
pub fn seconds_words(seconds: Option<u64>) -> String {
    match seconds {
        None => "—".to_owned(),
        Some(s) if s < 60 => format!("{s} s"),
        Some(s) => format!("{} ({s} s)", human_span(s)),
    }
}

/// The postmortem draft in Markdown.
pub fn to_markdown(incident: &Incident) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Incident #{}: {}\n",
        incident.id,
        md(&incident.title)
    );
    if let Some(warning) = chain_warning(&incident.chain) {
        let _ = writeln!(out, "> **Warning:** {}\n", md(&warning));
    }
    let _ = writeln!(
        out,
        "- Opened: {}\n- State: {}\n- Alerts grouped: {}",
        incident.opened_at.format("%Y-%m-%d %H:%M:%S UTC"),
        state_words(incident),
        incident.alert_count
    );
    if let Some(ended) = &incident.ended {
        let _ = writeln!(out, "- Ended: {}", ended.at.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    out.push_str("\n## Timeline\n\n| Time (UTC) | Offset | Actor | Event |\n|---|---|---|---|\n");
    for entry in &incident.timeline {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            entry.at.format("%Y-%m-%d %H:%M:%S"),
            entry.offset(),
            md(&entry.actor),
            md(&entry.text)
        );
    }
    out.push_str("\n## Suspect change\n\n");
    match &incident.suspect {
        None => out.push_str("No deploy was named as suspect.\n"),
        Some(deploy) => {
            let _ = writeln!(
                out,
                "Deploy {} of {} by {}, started {}.",
                md(&deploy.version),
                md(&deploy.target.to_string()),
                md(deploy.author.as_deref().unwrap_or("unknown")),
                deploy.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            if let Some(commit) = &deploy.commit {
                let _ = writeln!(out, "Commit `{}`.", md(commit));
            }
            if !deploy.changes.is_empty() {
                out.push_str("\nCommits:\n\n");
                for change in &deploy.changes {
                    let _ = writeln!(
                        out,
                        "- `{}` {} ({})",
                        md(&change.commit.chars().take(12).collect::<String>()),
                        md(&change.message),
                        md(change.author.as_deref().unwrap_or("unknown"))
                    );
                }
            }
            if !deploy.config_changes.is_empty() {
                out.push_str(
                    "\nConfig changes (secrets masked):\n\n| Key | Old | New |\n|---|---|---|\n",
                );
                for change in &deploy.config_changes {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} |",
                        md(&change.key),
                        md(change.old.as_deref().unwrap_or("(absent)")),
                        md(change.new.as_deref().unwrap_or("(absent)"))
                    );
                }
            }
        }
    }
    out.push_str("\n## Durations\n\n| Interval | Took |\n|---|---|\n");
    for (name, seconds) in duration_rows(&incident.durations) {
        let _ = writeln!(out, "| {name} | {} |", seconds_words(seconds));
    }
    for heading in ["Impact", "Root cause", "What went well", "Action items"] {
        let _ = write!(out, "\n## {heading}\n\n");
    }
    out
}

/// The incident as pretty JSON (the same facts as the Markdown draft).
pub fn to_json(incident: &Incident) -> String {
    serde_json::to_string_pretty(incident).unwrap_or_else(|error| {
        // Serializing plain data cannot fail; say so rather than panic if it ever does.
        serde_json::json!({ "error": error.to_string() }).to_string()
    })
}
