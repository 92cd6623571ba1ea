//! An Application's history as deploys: versions, sources and the current revision.

use super::*;

impl ArgoCdBackend {
    /// The application's history as deploys, newest first, and the version per history id.
    pub(super) fn deploys(
        &self,
        target: &Target,
        app: &AppRef,
        application: &Application,
    ) -> Vec<Deploy> {
        let mut entries: Vec<&HistoryEntry> = application.status.history.iter().collect();
        entries.sort_by_key(|e| e.id);
        let bases: Vec<String> = entries
            .iter()
            .map(|e| entry_version(e, &app.name))
            .collect();
        let contents: Vec<String> = entries
            .iter()
            .zip(&bases)
            .map(|(e, base)| format!("{}|{}|{base}", e.revision, e.revisions.join(",")))
            .collect();
        let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
        let sources: Vec<VersionSource<'_>> = entries
            .iter()
            .enumerate()
            .map(|(i, _)| VersionSource {
                content: &contents[i],
                base: &bases[i],
                number: &ids[i],
            })
            .collect();
        let versions = distinct_versions(&sources);
        let link = self.ui_link(app);
        let mut deploys: Vec<Deploy> = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let finished = entry.deployed_at;
                let started = entry
                    .deploy_started_at
                    .or(finished)
                    .unwrap_or_else(Utc::now);
                let author = entry.initiated_by.as_ref().map(|by| {
                    if by.automated || by.username.is_empty() {
                        "Argo CD auto-sync".to_owned()
                    } else {
                        by.username.clone()
                    }
                });
                let source = entry.source.as_ref().or(entry.sources.first());
                let target_revision = source.map(|s| s.target_revision.as_str()).unwrap_or("");
                let description = if target_revision.is_empty() {
                    format!("Argo CD sync to {}", short_commit(&entry.revision))
                } else {
                    format!(
                        "Argo CD sync to {} ({target_revision})",
                        short_commit(&entry.revision)
                    )
                };
                let is_git = source.is_none_or(|s| s.chart.is_empty());
                Deploy {
                    target: target.clone(),
                    version: versions[i].clone(),
                    previous_version: i.checked_sub(1).map(|p| versions[p].clone()),
                    revision: Some(entry.id.to_string()),
                    commit: (is_git && !entry.revision.is_empty()).then(|| entry.revision.clone()),
                    author,
                    description: Some(description),
                    url: Some(link.clone()),
                    started_at: started,
                    finished_at: finished.or(Some(started)),
                    status: DeployStatus::Succeeded,
                    changes: Vec::new(),
                    config_changes: Vec::new(),
                    source: DeploySource::Backend,
                }
            })
            .collect();
        deploys.reverse();
        deploys
    }

    /// What runs now: the entry at the synced revision when the app is `Synced`, else the
    /// last one Argo CD deployed (an application is `OutOfSync` after a rollback, or when
    /// Git moved on and nobody synced).
    pub(super) fn current_of(deploys: &[Deploy], application: &Application) -> Option<Revision> {
        let sync = &application.status.sync;
        let newest = |d: &&Deploy| {
            d.revision
                .as_deref()
                .and_then(|id| id.parse::<i64>().ok())
                .unwrap_or(i64::MIN)
        };
        let at_synced_revision = |d: &Deploy| {
            application
                .status
                .history
                .iter()
                .find(|e| Some(e.id.to_string()) == d.revision)
                .is_some_and(|e| {
                    if sync.revisions.is_empty() {
                        e.revision == sync.revision
                    } else {
                        e.revisions == sync.revisions
                    }
                })
        };
        let synced = (sync.status == "Synced"
            && !(sync.revision.is_empty() && sync.revisions.is_empty()))
        .then(|| {
            deploys
                .iter()
                .filter(|d| at_synced_revision(d))
                .max_by_key(newest)
        })
        .flatten();
        synced
            .or_else(|| deploys.iter().max_by_key(newest))
            .map(Deploy::as_revision)
    }
}

/// The version people know a history entry by.
pub(super) fn entry_version(entry: &HistoryEntry, app_name: &str) -> String {
    let sources: Vec<&Source> = entry.source.iter().chain(entry.sources.iter()).collect();
    // Kustomize image overrides: "NAME=NEW_NAME:TAG" or "NAME:TAG".
    let images: Vec<&str> = sources
        .iter()
        .filter_map(|s| s.kustomize.as_ref())
        .flat_map(|k| k.images.iter())
        .map(|image| image.split_once('=').map_or(image.as_str(), |(_, to)| to))
        .collect();
    let named = images.iter().find(|image| {
        image_name(image)
            .rsplit('/')
            .next()
            .is_some_and(|n| app_name.contains(n))
    });
    if let Some(image) = named.or(images.first()) {
        return image_tag(image);
    }
    let tag_parameter = sources
        .iter()
        .filter_map(|s| s.helm.as_ref())
        .flat_map(|h| h.parameters.iter())
        .find(|p| (p.name == "image.tag" || p.name.ends_with(".image.tag")) && !p.value.is_empty());
    if let Some(parameter) = tag_parameter {
        return parameter.value.clone();
    }
    if let Some(chart) = sources.iter().find(|s| !s.chart.is_empty()) {
        return chart.target_revision.clone();
    }
    let target_revision = sources
        .first()
        .map(|s| s.target_revision.as_str())
        .unwrap_or("");
    let looks_like_version = target_revision
        .trim_start_matches('v')
        .starts_with(|c: char| c.is_ascii_digit());
    if looks_like_version {
        return target_revision.to_owned();
    }
    short_commit(&entry.revision).to_owned()
}

/// The parent that manages this Application, if its labels, tracking annotation or owner
/// references name one.
pub(super) fn parent_of(application: &Application) -> Option<String> {
    let own = &application.metadata.name;
    if let Some(owner) = application
        .metadata
        .owner_references
        .iter()
        .find(|o| o.kind == "ApplicationSet" || o.kind == "Application")
    {
        return Some(format!("{} {}", owner.kind, owner.name));
    }
    if let Some(tracking) = application.metadata.annotations.get(TRACKING_ANNOTATION)
        && let Some((parent, _)) = tracking.split_once(':')
        && parent != own
    {
        return Some(format!("Application {parent}"));
    }
    application
        .metadata
        .labels
        .get(INSTANCE_LABEL)
        .filter(|parent| *parent != own)
        .map(|parent| format!("Application {parent}"))
}
