//! Talking to the Argo CD API: URLs, requests, and the table that turns its errors into
//! what the on-call engineer should do.

use super::*;

impl ArgoCdBackend {
    pub(super) fn app_ref(&self, target: &Target) -> AppRef {
        let service = self.services.get(&target.service);
        let name = service.map_or_else(
            || target.service.as_str().to_owned(),
            |s| s.setting(&s.app, &target.environment, "{service}"),
        );
        let namespace = service
            .and_then(|s| {
                s.app_namespace
                    .as_ref()
                    .map(|_| s.setting(&s.app_namespace, &target.environment, ""))
            })
            .filter(|ns| !ns.is_empty());
        AppRef { name, namespace }
    }

    pub(super) fn endpoint(&self, app: &AppRef, suffix: &str) -> Url {
        let mut url = self.url.clone();
        {
            // A base URL with a path (Argo CD served under /argocd) keeps it.
            let mut segments = url
                .path_segments_mut()
                .expect("checked in new(): the URL can be a base");
            segments.pop_if_empty();
            segments.extend(["api", "v1", "applications", &app.name]);
            if !suffix.is_empty() {
                segments.push(suffix);
            }
        }
        if let Some(namespace) = &app.namespace {
            url.query_pairs_mut().append_pair("appNamespace", namespace);
        }
        url
    }

    /// A link to the application in Argo CD's web interface.
    pub(super) fn ui_link(&self, app: &AppRef) -> String {
        let base = self.url.as_str().trim_end_matches('/');
        match &app.namespace {
            Some(namespace) => format!("{base}/applications/{namespace}/{}", app.name),
            None => format!("{base}/applications/{}", app.name),
        }
    }

    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        app: &AppRef,
        phase: Phase,
    ) -> Result<Application, BackendError> {
        let response = request
            .bearer_auth(self.token.expose())
            .timeout(REQUEST_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.send_error(&e, app, phase))?;
        let status = response.status();
        let body = read_limited(response, BODY_LIMIT).await;
        if !status.is_success() {
            return Err(self.http_error(status, &body, app, phase));
        }
        serde_json::from_str(&body).map_err(|e| {
            BackendError::new(
                BackendErrorKind::Protocol,
                format!(
                    "Argo CD answered HTTP {status} for application {app} with JSON breakwater \
                     cannot read ({e}); {}. Check that backends.{}.url points at the Argo CD \
                     API server",
                    phase.consequence(),
                    self.name
                ),
            )
        })
    }

    pub(super) async fn get_app(
        &self,
        app: &AppRef,
        phase: Phase,
    ) -> Result<Application, BackendError> {
        self.send(self.client.get(self.endpoint(app, "")), app, phase)
            .await
    }

    pub(super) fn send_error(
        &self,
        error: &reqwest::Error,
        app: &AppRef,
        phase: Phase,
    ) -> BackendError {
        let (kind, what) = if error.is_timeout() {
            (
                BackendErrorKind::Timeout,
                format!(
                    "Argo CD did not answer within {}",
                    humantime::format_duration(REQUEST_TIMEOUT)
                ),
            )
        } else {
            (
                BackendErrorKind::Unavailable,
                format!(
                    "could not reach Argo CD at {} ({})",
                    self.url,
                    error_chain(error)
                ),
            )
        };
        let next = match phase {
            Phase::Read => format!(
                "check that Argo CD is up and reachable from breakwater (backends.{}.url, ca_file)",
                self.name
            ),
            Phase::DisableAutoSync | Phase::Rollback if error.is_connect() => format!(
                "nothing was sent. Check that Argo CD is up and reachable (backends.{}.url), \
                 then ask for a fresh plan",
                self.name
            ),
            Phase::DisableAutoSync | Phase::Rollback => format!(
                "the request may or may not have reached Argo CD. Open {} and check its \
                 history and sync status before retrying",
                self.ui_link(app)
            ),
            Phase::Follow => format!(
                "the rollback may still be running. Follow {} in Argo CD",
                self.ui_link(app)
            ),
        };
        BackendError::new(kind, format!("{what}; {next}"))
    }

    pub(super) fn http_error(
        &self,
        status: StatusCode,
        body: &str,
        app: &AppRef,
        phase: Phase,
    ) -> BackendError {
        let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
        let said = if !parsed.message.is_empty() {
            parsed.message
        } else if !parsed.error.is_empty() {
            parsed.error
        } else {
            body.to_owned()
        };
        let said = crate::backends::snippet(&said, SNIPPET_CHARS);
        let answer = if said.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {said}")
        };
        let name = &self.name;
        let done = phase.consequence();
        let lower = said.to_lowercase();
        let (kind, message) = match status.as_u16() {
            401 => (
                BackendErrorKind::Unauthorized,
                format!(
                    "Argo CD rejected breakwater's token ({answer}); {done}. Renew the token in \
                     backends.{name}.token (argocd account generate-token --account ACCOUNT), \
                     then try again"
                ),
            ),
            403 => (
                BackendErrorKind::Unauthorized,
                format!(
                    "the Argo CD token of backends.{name} may not {} application {app} \
                     ({answer}); {done}. Grant its account or project role \
                     \"applications, {}\" on the application (see the README), then try again",
                    phase.rbac_action(),
                    phase.rbac_action()
                ),
            ),
            404 => (
                BackendErrorKind::NotFound,
                format!(
                    "Argo CD has no application {app} ({answer}); {done}. Check the service's \
                     app and app_namespace settings against `argocd app list`"
                ),
            ),
            _ if lower.contains("auto-sync") => (
                BackendErrorKind::Refused,
                format!(
                    "Argo CD refused: auto-sync is on for {app}, so a rollback would be reverted \
                     ({answer}); {done}. Turn automated sync off (argocd app set {} \
                     --sync-policy none) or use \"Disable auto-sync and roll back\", then ask \
                     for a fresh plan",
                    app.name
                ),
            ),
            _ if lower.contains("another operation is already in progress") => (
                BackendErrorKind::Conflict,
                format!(
                    "Argo CD is already running an operation on {app} ({answer}); {done}. Wait \
                     for it to finish (or terminate it in Argo CD), check the application, then \
                     ask for a fresh plan"
                ),
            ),
            _ if lower.contains("does not have deployment with id") => (
                BackendErrorKind::NotFound,
                format!(
                    "that revision is no longer in the history of {app} ({answer}); {done}. \
                     Argo CD keeps only revisionHistoryLimit entries: ask for a fresh plan, or \
                     sync to the wanted Git revision in Argo CD"
                ),
            ),
            500..=599 => (
                BackendErrorKind::Unavailable,
                format!(
                    "Argo CD failed ({answer}); {}. Open {} and check the application before \
                     retrying",
                    match phase {
                        Phase::Rollback | Phase::DisableAutoSync =>
                            "the request may or may not have taken effect",
                        other => other.consequence(),
                    },
                    self.ui_link(app)
                ),
            ),
            _ => (
                BackendErrorKind::Refused,
                format!(
                    "Argo CD refused the request for {app} ({answer}); {done}. Deal with the \
                     reason it gives, then ask for a fresh plan"
                ),
            ),
        };
        BackendError::new(kind, message)
    }
}
