//! Links to investigate a deploy: a service's source repository (`[[services]] repository`)
//! turned into commit and compare URLs in the form of its forge, and the other places the
//! summary points the on-call engineer to (the service's owners, the console's pages).
//!
//! Commit ids and versions come from deploy reports, that is from outside: only
//! characters a git ref can carry unescaped in a URL path are linked, anything else stays
//! plain text rather than becoming a link somewhere unexpected.

use std::fmt;

/// The URL forms of the forges breakwater knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryKind {
    /// `/commit/SHA`, `/compare/A...B`.
    GitHub,
    /// `/-/commit/SHA`, `/-/compare/A...B`.
    GitLab,
    /// Gitea and Forgejo: `/commit/SHA`, `/compare/A...B`.
    Gitea,
}

impl RepositoryKind {
    pub const NAMES: [&'static str; 3] = ["github", "gitlab", "gitea"];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "github" => Some(Self::GitHub),
            "gitlab" => Some(Self::GitLab),
            "gitea" | "forgejo" => Some(Self::Gitea),
            _ => None,
        }
    }

    /// The kind a well-known host implies; self-hosted forges name it in
    /// `repository_kind`.
    fn from_host(host: &str) -> Option<Self> {
        let host = host.to_ascii_lowercase();
        if host == "github.com" || host.starts_with("github.") {
            Some(Self::GitHub)
        } else if host == "gitlab.com" || host.starts_with("gitlab.") {
            Some(Self::GitLab)
        } else if host == "codeberg.org"
            || host.starts_with("gitea.")
            || host.starts_with("forgejo.")
        {
            Some(Self::Gitea)
        } else {
            None
        }
    }
}

impl fmt::Display for RepositoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    #[error("{0:?} is not an http(s) URL like \"https://github.com/acme/checkout\"")]
    NotAUrl(String),
    #[error("{0:?} names no repository path (expected https://HOST/OWNER/NAME)")]
    NoPath(String),
    #[error(
        "cannot tell the forge from the host {0:?}: set repository_kind to \"github\", \"gitlab\" or \"gitea\""
    )]
    UnknownKind(String),
    #[error("{0:?} is not one of \"github\", \"gitlab\", \"gitea\"")]
    BadKind(String),
}

/// A service's repository: where commits and compares are linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `https://host/owner/name`, without a trailing slash or `.git`.
    base: String,
    kind: RepositoryKind,
}

impl Repository {
    /// Reads `repository` (and `repository_kind`, inferred from the host when absent).
    pub fn parse(url: &str, kind: Option<&str>) -> Result<Self, RepositoryError> {
        let trimmed = url.trim();
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .ok_or_else(|| RepositoryError::NotAUrl(url.to_owned()))?;
        let rest = rest.trim_end_matches('/');
        let rest = rest.strip_suffix(".git").unwrap_or(rest);
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| RepositoryError::NoPath(url.to_owned()))?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/' | '~')
                })
        };
        if !plain(host) || host.contains('/') {
            return Err(RepositoryError::NotAUrl(url.to_owned()));
        }
        if !plain(path) || path.split('/').any(str::is_empty) {
            return Err(RepositoryError::NoPath(url.to_owned()));
        }
        let kind = match kind {
            Some(raw) => RepositoryKind::parse(raw)
                .ok_or_else(|| RepositoryError::BadKind(raw.to_owned()))?,
            None => RepositoryKind::from_host(host.split(':').next().unwrap_or(host))
                .ok_or_else(|| RepositoryError::UnknownKind(host.to_owned()))?,
        };
        let scheme = if trimmed.starts_with("http://") {
            "http"
        } else {
            "https"
        };
        Ok(Self {
            base: format!("{scheme}://{host}/{path}"),
            kind,
        })
    }

    pub fn kind(&self) -> RepositoryKind {
        self.kind
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn section(&self) -> &'static str {
        match self.kind {
            RepositoryKind::GitHub | RepositoryKind::Gitea => "",
            RepositoryKind::GitLab => "/-",
        }
    }

    /// The page of one commit; `None` when the id is not a plain git ref.
    pub fn commit_url(&self, commit: &str) -> Option<String> {
        linkable_ref(commit).then(|| format!("{}{}/commit/{commit}", self.base, self.section()))
    }

    /// The changes from `from` to `to` (commits, tags or branches).
    pub fn compare_url(&self, from: &str, to: &str) -> Option<String> {
        (linkable_ref(from) && linkable_ref(to) && from != to)
            .then(|| format!("{}{}/compare/{from}...{to}", self.base, self.section()))
    }
}

/// Characters a ref can hold that need no escaping in a URL path and cannot end it.
fn linkable_ref(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 200
        && !raw.contains("..")
        && !raw.starts_with(['/', '.', '-'])
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
}

/// What a summary points to for its service, beyond the deploys themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceLinks {
    pub repository: Option<Repository>,
    /// `[[services]] owners`, named in the summary so people know whom to page.
    pub owners: Vec<String>,
}

/// The console's pages for a service, when `server.public_url` says where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLinks {
    base: String,
}

impl ConsoleLinks {
    /// `public_url` as configured (`https://breakwater.example.com/`).
    pub fn new(public_url: &str) -> Self {
        Self {
            base: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The Deploys page, filtered to the service.
    pub fn deploys(&self, service: &str) -> String {
        format!(
            "{}/console/deploys?service={}",
            self.base,
            query_value(service)
        )
    }

    /// The Audit page, filtered to the service (its plans' records among them).
    pub fn audit(&self, service: &str) -> String {
        format!(
            "{}/console/audit?service={}",
            self.base,
            query_value(service)
        )
    }
}

/// Service names are already restricted to URL-safe words; this keeps it so.
fn query_value(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_links_commits_and_compares() {
        let repo = Repository::parse("https://github.com/acme/checkout", None).expect("ok");
        assert_eq!(repo.kind(), RepositoryKind::GitHub);
        assert_eq!(
            repo.commit_url("a1b2c3d").as_deref(),
            Some("https://github.com/acme/checkout/commit/a1b2c3d")
        );
        assert_eq!(
            repo.compare_url("a1b2c3d", "e4f5a6b").as_deref(),
            Some("https://github.com/acme/checkout/compare/a1b2c3d...e4f5a6b")
        );
    }

    #[test]
    fn gitlab_links_go_through_the_dash_section() {
        let repo =
            Repository::parse("https://gitlab.com/acme/shop/checkout.git/", None).expect("ok");
        assert_eq!(
            repo.commit_url("abc123").as_deref(),
            Some("https://gitlab.com/acme/shop/checkout/-/commit/abc123")
        );
        assert_eq!(
            repo.compare_url("v41", "v42").as_deref(),
            Some("https://gitlab.com/acme/shop/checkout/-/compare/v41...v42")
        );
    }

    #[test]
    fn a_self_hosted_forge_needs_its_kind_named() {
        assert_eq!(
            Repository::parse("https://git.acme.internal/acme/checkout", None),
            Err(RepositoryError::UnknownKind("git.acme.internal".into()))
        );
        let repo = Repository::parse("https://git.acme.internal/acme/checkout", Some("gitea"))
            .expect("ok");
        assert_eq!(
            repo.compare_url("a", "b").as_deref(),
            Some("https://git.acme.internal/acme/checkout/compare/a...b")
        );
    }

    #[test]
    fn bad_repository_settings_are_refused() {
        assert!(matches!(
            Repository::parse("github.com/acme/checkout", None),
            Err(RepositoryError::NotAUrl(_))
        ));
        assert!(matches!(
            Repository::parse("https://github.com/", None),
            Err(RepositoryError::NoPath(_))
        ));
        assert!(matches!(
            Repository::parse("https://github.com/acme/checkout", Some("bitbucket")),
            Err(RepositoryError::BadKind(_))
        ));
        assert!(matches!(
            Repository::parse("https://github.com/acme/check out", None),
            Err(RepositoryError::NoPath(_))
        ));
    }

    #[test]
    fn refs_from_outside_that_are_not_plain_are_not_linked() {
        let repo = Repository::parse("https://github.com/acme/checkout", None).expect("ok");
        for hostile in ["a b", "../../evil", "x?y=1", "<script>", "a#b", "", "-rf"] {
            assert_eq!(repo.commit_url(hostile), None, "{hostile}");
        }
        assert_eq!(repo.compare_url("v42", "v42"), None);
    }

    #[test]
    fn console_links_filter_by_service() {
        let console = ConsoleLinks::new("https://bw.example.com/");
        assert_eq!(
            console.deploys("checkout"),
            "https://bw.example.com/console/deploys?service=checkout"
        );
        assert_eq!(
            console.audit("checkout"),
            "https://bw.example.com/console/audit?service=checkout"
        );
    }
}
