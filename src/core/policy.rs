//! Who may roll back what, where and when. The policy is data from the configuration; the
//! decision is a pure function of it, the actor, the target, the place and the time, so
//! it is tested without any platform.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deploy::{Environment, ServiceName, Target};
use super::message::Platform;

/// A person or a group on a platform: `slack:U0123`, `slack:usergroup:S0123`,
/// `discord:123`, `discord:role:456`, `console:alice`; `slack:*` stands for anyone on that
/// platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Principal(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principal {value:?} {reason}")]
pub struct PrincipalError {
    pub value: String,
    pub reason: String,
}

impl Principal {
    pub fn parse(raw: &str) -> Result<Self, PrincipalError> {
        let fail = |reason: &str| PrincipalError {
            value: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let (platform, rest) = raw
            .split_once(':')
            .ok_or_else(|| fail("must look like slack:U0123, discord:role:456 or console:alice"))?;
        let platform = Platform::parse(platform)
            .ok_or_else(|| fail("must start with slack:, discord: or console:"))?;
        if rest == "*" {
            return Ok(Self(raw.to_owned()));
        }
        let (kind, id) = match rest.split_once(':') {
            Some((kind, id)) => (Some(kind), id),
            None => (None, rest),
        };
        match (platform, kind) {
            (_, None) => {}
            (Platform::Slack, Some("usergroup")) | (Platform::Discord, Some("role")) => {}
            (Platform::Slack, Some(_)) => {
                return Err(fail("the only Slack group kind is usergroup"));
            }
            (Platform::Discord, Some(_)) => {
                return Err(fail("the only Discord group kind is role"));
            }
            (Platform::Console, Some(_)) => return Err(fail("console principals are user names")),
        }
        let valid_id = !id.is_empty()
            && id.len() <= 100
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !valid_id {
            return Err(fail("has an empty or malformed id"));
        }
        if platform == Platform::Discord && !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(fail("Discord ids are numeric snowflakes"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn user(platform: Platform, id: &str) -> Self {
        Self(format!("{platform}:{id}"))
    }

    pub fn slack_usergroup(id: &str) -> Self {
        Self(format!("slack:usergroup:{id}"))
    }

    pub fn discord_role(id: &str) -> Self {
        Self(format!("discord:role:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn platform(&self) -> Option<Platform> {
        self.0.split_once(':').and_then(|(p, _)| Platform::parse(p))
    }

    /// Whether an allow-list entry covers this principal.
    fn covers(&self, other: &Principal) -> bool {
        match self.0.strip_suffix(":*") {
            Some(platform) => other
                .0
                .strip_prefix(platform)
                .is_some_and(|rest| rest.starts_with(':')),
            None => self == other,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Principal {
    type Error = PrincipalError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Principal> for String {
    fn from(value: Principal) -> String {
        value.0
    }
}

/// The person acting, as the adapter identified them: their own principal, the groups
/// or roles they belong to, and a name people recognise in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub principal: Principal,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Principal>,
}

impl Actor {
    pub fn new(principal: Principal, display_name: impl Into<String>) -> Self {
        Self {
            principal,
            display_name: display_name.into(),
            groups: Vec::new(),
        }
    }

    pub fn with_groups(mut self, groups: Vec<Principal>) -> Self {
        self.groups = groups;
        self
    }

    /// The name shown to people: the display name, else the principal.
    pub fn name(&self) -> &str {
        if self.display_name.is_empty() {
            self.principal.as_str()
        } else {
            &self.display_name
        }
    }

    /// The same person, whatever groups they were seen with.
    pub fn is_same_person(&self, other: &Actor) -> bool {
        self.principal == other.principal
    }
}

/// A period in which rollbacks are refused, for some or all services and environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Empty means every service.
    pub services: Vec<ServiceName>,
    /// Empty means every environment.
    pub environments: Vec<Environment>,
    pub reason: String,
}

impl FreezeWindow {
    fn applies(&self, target: &Target, now: DateTime<Utc>) -> bool {
        now >= self.start
            && now < self.end
            && (self.services.is_empty() || self.services.contains(&target.service))
            && (self.environments.is_empty() || self.environments.contains(&target.environment))
    }
}

/// The rollback policy from `[policy]` and the per-service overrides.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rollback_allowed: Vec<Principal>,
    pub service_rollback_allowed: HashMap<ServiceName, Vec<Principal>>,
    /// Channels (`slack:C0123`, `discord:987`, `console:*`) where rollbacks may be started;
    /// empty means anywhere the bot is.
    pub channels: Vec<String>,
    pub lookback: Duration,
    pub plan_ttl: Duration,
    pub cooldown: Duration,
    pub freezes: Vec<FreezeWindow>,
    pub two_person: Vec<Environment>,
    pub verify_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rollback_allowed: Vec::new(),
            service_rollback_allowed: HashMap::new(),
            channels: Vec::new(),
            lookback: Duration::from_secs(6 * 3600),
            plan_ttl: Duration::from_secs(30 * 60),
            cooldown: Duration::from_secs(10 * 60),
            freezes: Vec::new(),
            two_person: Vec::new(),
            verify_window: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a rollback was refused, in words for the person who pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NotAllowed {
        target: Target,
    },
    WrongChannel,
    Frozen {
        reason: String,
        until: DateTime<Utc>,
    },
    Cooldown {
        last_finished: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

impl Denial {
    /// A short machine-readable code for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed { .. } => "not_allowed",
            Self::WrongChannel => "wrong_channel",
            Self::Frozen { .. } => "freeze",
            Self::Cooldown { .. } => "cooldown",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAllowed { target } => write!(
                f,
                "You are not allowed to roll back {target}. Ask someone on the rollback list in \
                 breakwater's [policy] (or the service's rollback_allowed)."
            ),
            Self::WrongChannel => {
                f.write_str("Rollbacks cannot be started from this channel (see policy.channels).")
            }
            Self::Frozen { reason, until } => write!(
                f,
                "Rollbacks are frozen until {} UTC: {reason}.",
                until.format("%Y-%m-%d %H:%M")
            ),
            Self::Cooldown {
                last_finished,
                until,
            } => write!(
                f,
                "The last rollback of this service finished at {} UTC; the cooldown ends at {} UTC.",
                last_finished.format("%H:%M:%S"),
                until.format("%H:%M:%S")
            ),
        }
    }
}

/// Everything a decision depends on besides the policy itself.
#[derive(Debug, Clone)]
pub struct RollbackRequest<'a> {
    pub actor: &'a Actor,
    pub target: &'a Target,
    /// `platform:channel` where the press happened, when known.
    pub channel: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// When the last rollback of the target finished, for the cooldown.
    pub last_rollback_finished: Option<DateTime<Utc>>,
}

impl Policy {
    /// The principals allowed to roll back a service.
    pub fn allowed_for(&self, service: &ServiceName) -> &[Principal] {
        self.service_rollback_allowed
            .get(service)
            .map_or(self.rollback_allowed.as_slice(), Vec::as_slice)
    }

    /// Whether the actor is on the allow-list for the target, ignoring time and place.
    pub fn may_roll_back(&self, actor: &Actor, service: &ServiceName) -> bool {
        self.allowed_for(service).iter().any(|allowed| {
            allowed.covers(&actor.principal) || actor.groups.iter().any(|g| allowed.covers(g))
        })
    }

    pub fn check(&self, request: &RollbackRequest<'_>) -> Result<(), Denial> {
        if !self.may_roll_back(request.actor, &request.target.service) {
            return Err(Denial::NotAllowed {
                target: request.target.clone(),
            });
        }
        if !self.channels.is_empty() {
            let allowed = request.channel.is_some_and(|channel| {
                self.channels
                    .iter()
                    .any(|pattern| channel_matches(pattern, channel))
            });
            if !allowed {
                return Err(Denial::WrongChannel);
            }
        }
        if let Some(freeze) = self
            .freezes
            .iter()
            .find(|freeze| freeze.applies(request.target, request.now))
        {
            return Err(Denial::Frozen {
                reason: freeze.reason.clone(),
                until: freeze.end,
            });
        }
        if let Some(last_finished) = request.last_rollback_finished {
            let until = last_finished + self.cooldown;
            if request.now < until {
                return Err(Denial::Cooldown {
                    last_finished,
                    until,
                });
            }
        }
        Ok(())
    }

    /// Whether rolling back in this environment needs a second person's approval.
    pub fn needs_two_people(&self, target: &Target) -> bool {
        self.two_person.contains(&target.environment)
    }
}

fn channel_matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix(":*") {
        Some(platform) => channel
            .strip_prefix(platform)
            .is_some_and(|rest| rest.starts_with(':')),
        None => pattern == channel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(raw: &str) -> Principal {
        Principal::parse(raw).expect("valid principal")
    }

    fn target() -> Target {
        Target::new(
            ServiceName::parse("checkout").expect("valid"),
            Environment::parse("production").expect("valid"),
        )
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn policy(allowed: &[&str]) -> Policy {
        Policy {
            rollback_allowed: allowed.iter().map(|p| principal(p)).collect(),
            ..Policy::default()
        }
    }

    fn request<'a>(actor: &'a Actor, target: &'a Target) -> RollbackRequest<'a> {
        RollbackRequest {
            actor,
            target,
            channel: Some("slack:C1"),
            now: now(),
            last_rollback_finished: None,
        }
    }

    #[test]
    fn principals_of_every_documented_form_parse() {
        for raw in [
            "slack:U0123",
            "slack:usergroup:S0123",
            "discord:123",
            "discord:role:456",
            "console:alice",
            "console:*",
        ] {
            assert!(Principal::parse(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn malformed_principals_are_rejected_with_a_reason() {
        for raw in [
            "alice",
            "teams:U1",
            "slack:",
            "discord:abc",
            "slack:role:S1",
            "console:a b",
        ] {
            assert!(Principal::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_listed_user_may_roll_back() {
        let actor = Actor::new(principal("slack:U1"), "Ada");
        assert_eq!(
            policy(&["slack:U1"]).check(&request(&actor, &target())),
            Ok(())
        );
    }

    #[test]
    fn membership_of_a_listed_group_is_enough() {
        let actor = Actor::new(principal("discord:42"), "Ada")
            .with_groups(vec![principal("discord:role:7")]);
        assert_eq!(
            policy(&["discord:role:7"]).check(&request(&actor, &target())),
            Ok(())
        );
    }

    #[test]
    fn an_unlisted_user_is_refused() {
        let actor = Actor::new(principal("slack:U2"), "Bob");
        let denial = policy(&["slack:U1"]).check(&request(&actor, &target()));
        assert_eq!(denial.map_err(|d| d.code()), Err("not_allowed"));
    }

    #[test]
    fn a_platform_wildcard_does_not_cover_other_platforms() {
        let actor = Actor::new(principal("slack:U2"), "Bob");
        assert!(
            policy(&["console:*"])
                .check(&request(&actor, &target()))
                .is_err()
        );
        let console = Actor::new(principal("console:bob"), "Bob");
        assert!(
            policy(&["console:*"])
                .check(&request(&console, &target()))
                .is_ok()
        );
    }

    #[test]
    fn a_service_override_replaces_the_global_list() {
        let mut policy = policy(&["slack:U1"]);
        policy
            .service_rollback_allowed
            .insert(target().service, vec![principal("slack:U9")]);
        let actor = Actor::new(principal("slack:U1"), "Ada");
        assert!(policy.check(&request(&actor, &target())).is_err());
    }

    #[test]
    fn a_freeze_window_refuses_with_its_reason() {
        let mut policy = policy(&["slack:U1"]);
        policy.freezes.push(FreezeWindow {
            start: now() - chrono::Duration::hours(1),
            end: now() + chrono::Duration::hours(1),
            services: vec![],
            environments: vec![Environment::parse("production").expect("valid")],
            reason: "Black Friday".into(),
        });
        let actor = Actor::new(principal("slack:U1"), "Ada");
        let denial = policy
            .check(&request(&actor, &target()))
            .expect_err("frozen");
        assert!(denial.to_string().contains("Black Friday"));
    }

    #[test]
    fn the_cooldown_refuses_a_rollback_soon_after_the_last() {
        let policy = policy(&["slack:U1"]);
        let actor = Actor::new(principal("slack:U1"), "Ada");
        let target = target();
        let mut req = request(&actor, &target);
        req.last_rollback_finished = Some(now() - chrono::Duration::minutes(2));
        assert_eq!(policy.check(&req).map_err(|d| d.code()), Err("cooldown"));
        req.last_rollback_finished = Some(now() - chrono::Duration::minutes(11));
        assert_eq!(policy.check(&req), Ok(()));
    }

    #[test]
    fn channel_restrictions_apply_when_configured() {
        let mut policy = policy(&["slack:U1"]);
        policy.channels = vec!["slack:C9".into()];
        let actor = Actor::new(principal("slack:U1"), "Ada");
        assert_eq!(
            policy
                .check(&request(&actor, &target()))
                .map_err(|d| d.code()),
            Err("wrong_channel")
        );
    }
}
