//! Deploys and configuration changes in words: headlines, details and the deploy list.

use super::*;

pub(super) fn deploy_headline(entry: &DeployEntry, repository: Option<&Repository>) -> RichText {
    let deploy = &entry.deploy;
    let mut line = RichText::new();
    if entry.suspect {
        line = line.plain("🔴 ").bold("Suspect").plain(" ");
    }
    if deploy.is_config_change() {
        return config_change_headline(line, entry);
    }
    line = match &deploy.url {
        Some(url) => line.link(deploy.version.clone(), url.clone()),
        None => line.bold(deploy.version.clone()),
    };
    if let Some(author) = &deploy.author {
        line = line.plain(format!(" by {author}"));
    }
    line = line.plain(format!(
        " · {} ({})",
        entry.relative,
        clock(deploy_end(deploy).1)
    ));
    if let Some(commit) = &deploy.commit {
        line = commit_span(line.plain(" · "), commit, 12, repository);
    }
    let to = deploy.commit.as_deref().unwrap_or(&deploy.version);
    if let Some(url) = repository
        .zip(entry.compare_from.as_deref())
        .and_then(|(repository, from)| repository.compare_url(from, to))
    {
        line = line.plain(" · ").link("compare", url);
    }
    match deploy.status {
        DeployStatus::Failed => line = line.plain(" · failed"),
        DeployStatus::Started if deploy.finished_at.is_none() => {}
        _ => {}
    }
    if deploy.source == crate::core::deploy::DeploySource::Rollback {
        line = line.plain(" · rollback");
    }
    if let Some(description) = &deploy.description {
        line = line.plain(format!(" — {}", clip(description, 120)));
    }
    line
}

/// "⚙ ConfigMap checkout-env changed by kubectl-edit · changed 12 min before the alert
/// (14:02 UTC) · live since 14:05 UTC": an in-place change of what the pods read, not a
/// deploy, and whether the running pods have read it yet.
pub(super) fn config_change_headline(line: RichText, entry: &DeployEntry) -> RichText {
    let deploy = &entry.deploy;
    let mut line = line.plain("⚙ ").bold(
        deploy
            .description
            .clone()
            .unwrap_or_else(|| deploy.version.clone()),
    );
    if let Some(author) = &deploy.author {
        line = line.plain(format!(" by {author}"));
    }
    let line = line.plain(format!(
        " · {} ({})",
        entry.relative,
        clock(deploy.effective_at())
    ));
    match &entry.pickup {
        None => line,
        Some(pickup) => line.plain(format!(" · {}", pickup_words(pickup))),
    }
}

/// Whether the running pods read a configuration change yet, in the thread's words.
pub(super) fn pickup_words(pickup: &Pickup) -> String {
    match pickup {
        Pickup::NotYet => "not yet picked up by running pods".to_owned(),
        Pickup::Live(since) => format!("live since {}", clock(*since)),
        Pickup::Partly { picked, of, since } => format!(
            "picked up by {picked} of {of} running pods (since {})",
            clock(*since)
        ),
    }
}

/// Which end of the deploy its age is measured from, and when that was: its finish, else
/// (still rolling out, or never reported finished) its start.
pub(super) fn deploy_end(deploy: &Deploy) -> (&'static str, DateTime<Utc>) {
    match deploy.finished_at {
        Some(finished) if !deploy.is_in_progress() => ("finished", finished),
        _ => ("started", deploy.started_at),
    }
}

/// A commit id, shortened, linked to its page when the repository is known.
pub(super) fn commit_span(
    line: RichText,
    commit: &str,
    short: usize,
    repository: Option<&Repository>,
) -> RichText {
    let shown: String = commit.chars().take(short).collect();
    match repository.and_then(|r| r.commit_url(commit)) {
        Some(url) => line.link(shown, url),
        None => line.code(shown),
    }
}

/// Commits (up to [`MAX_COMMITS`], then "+N more") and configuration changes; commits
/// link to the repository when it is known.
pub fn deploy_details(deploy: &Deploy, repository: Option<&Repository>) -> Vec<RichText> {
    let mut lines = Vec::new();
    for change in deploy.changes.iter().take(MAX_COMMITS) {
        let mut line = commit_span(RichText::new(), &change.commit, 8, repository).plain(format!(
            " {}",
            clip(change.message.lines().next().unwrap_or(""), 100)
        ));
        if let Some(author) = &change.author {
            line = line.plain(format!(" ({author})"));
        }
        lines.push(line);
    }
    if deploy.changes.len() > MAX_COMMITS {
        lines.push(RichText::new().plain(format!(
            "+{} more commits",
            deploy.changes.len() - MAX_COMMITS
        )));
    }
    for change in &deploy.config_changes {
        let value = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_owned());
        let line = RichText::new()
            .plain("config ")
            .code(change.key.clone())
            .plain(": ");
        let line = if change.old.as_deref() == Some(MASKED) || change.new.as_deref() == Some(MASKED)
        {
            line.plain(format!(
                "{} → {} (secret, masked)",
                value(&change.old),
                value(&change.new)
            ))
        } else {
            line.code(value(&change.old))
                .plain(" → ")
                .code(value(&change.new))
        };
        lines.push(line);
    }
    lines
}

/// A list of deploys for `/breakwater deploys`.
/// `repository_of` names the repository of a deploy's service, for commit links.
pub fn deploy_list(
    heading: &str,
    deploys: &[Deploy],
    now: DateTime<Utc>,
    repository_of: &dyn Fn(&Deploy) -> Option<Repository>,
) -> Message {
    let mut sections = Vec::new();
    if deploys.is_empty() {
        sections.push(Section::Text {
            text: RichText::new().plain("No deploys recorded."),
        });
    }
    for deploy in deploys {
        let (end, at) = deploy_end(deploy);
        let ago = human_span((now - at).num_seconds().max(0).unsigned_abs());
        let mut line = RichText::new().bold(deploy.target.to_string()).plain(" ");
        line = match &deploy.url {
            Some(url) => line.link(deploy.version.clone(), url.clone()),
            None => line.code(deploy.version.clone()),
        };
        line = line.plain(format!(
            " by {} · {end} {}, {ago} ago · {}",
            deploy.author.as_deref().unwrap_or("unknown"),
            clock(at),
            deploy.status.as_str()
        ));
        if deploy.source == crate::core::deploy::DeploySource::Rollback {
            line = line.plain(" · rollback");
        }
        sections.push(Section::Text { text: line });
        let details = deploy_details(deploy, repository_of(deploy).as_ref());
        if !details.is_empty() {
            sections.push(Section::Lines { lines: details });
        }
    }
    let text = format!(
        "{heading}: {}",
        deploys
            .iter()
            .map(|d| format!("{} {}", d.target, d.version))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Message {
        text,
        title: Some(heading.to_owned()),
        tone: Tone::Info,
        sections,
        actions: vec![],
        status: None,
    }
}
