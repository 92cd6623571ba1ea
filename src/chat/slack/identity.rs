//! Who pressed or typed: `slack:<user id>`, the display name people know them by (for the
//! audit log and status lines), and the user groups the policy names
//! (`slack:usergroup:S…`) they belong to. Names and memberships come from the Web API and
//! are cached briefly: a membership change takes effect within [`MEMBERS_TTL`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::web::Web;
use crate::core::message::Platform;
use crate::core::policy::{Actor, Policy, Principal};
use crate::sync::lock;

const NAMES_TTL: Duration = Duration::from_secs(3600);
pub(crate) const MEMBERS_TTL: Duration = Duration::from_secs(60);
const USERGROUP_PREFIX: &str = "slack:usergroup:";

pub(crate) struct Identity {
    web: Arc<Web>,
    /// The user groups the policy mentions; only these are looked up.
    usergroups: Vec<String>,
    names: Mutex<HashMap<String, (String, Instant)>>,
    members: Mutex<HashMap<String, (HashSet<String>, Instant)>>,
}

/// The user group ids a policy grants anything to.
pub(crate) fn usergroups_in(policy: &Policy) -> Vec<String> {
    let mut groups: Vec<String> = policy
        .rollback_allowed
        .iter()
        .chain(policy.service_rollback_allowed.values().flatten())
        .filter_map(|p| p.as_str().strip_prefix(USERGROUP_PREFIX))
        .map(str::to_owned)
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

impl Identity {
    pub(crate) fn new(web: Arc<Web>, usergroups: Vec<String>) -> Self {
        Self {
            web,
            usergroups,
            names: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
        }
    }

    /// The actor for `user`; `seen_name` is what the payload called them, used when the
    /// Web API cannot tell.
    pub(crate) async fn actor(&self, user: &str, seen_name: Option<&str>) -> Actor {
        let name = self.name(user, seen_name).await;
        let mut groups = Vec::new();
        for group in &self.usergroups {
            if self.is_member(group, user).await {
                groups.push(Principal::slack_usergroup(group));
            }
        }
        Actor::new(Principal::user(Platform::Slack, user), name).with_groups(groups)
    }

    pub(crate) async fn name(&self, user: &str, seen_name: Option<&str>) -> String {
        if let Some((name, at)) = lock(&self.names).get(user)
            && at.elapsed() < NAMES_TTL
        {
            return name.clone();
        }
        match self.web.user_name(user).await {
            Ok(Some(name)) => {
                lock(&self.names).insert(user.to_owned(), (name.clone(), Instant::now()));
                name
            }
            Ok(None) => seen_name.unwrap_or(user).to_owned(),
            Err(error) => {
                tracing::warn!(
                    user,
                    ?error,
                    "users.info failed; using the name in the payload"
                );
                seen_name.unwrap_or(user).to_owned()
            }
        }
    }

    /// Membership from a fresh cache, else from `usergroups.users.list`; when Slack cannot
    /// answer, a stale answer is better than none, and no answer means no membership.
    async fn is_member(&self, group: &str, user: &str) -> bool {
        let cached = lock(&self.members)
            .get(group)
            .map(|(members, at)| (members.contains(user), at.elapsed() < MEMBERS_TTL));
        if let Some((member, true)) = cached {
            return member;
        }
        match self.web.usergroup_members(group).await {
            Ok(members) => {
                let members: HashSet<String> = members.into_iter().collect();
                let member = members.contains(user);
                lock(&self.members).insert(group.to_owned(), (members, Instant::now()));
                member
            }
            Err(error) => {
                tracing::warn!(group, ?error, "usergroups.users.list failed");
                cached.is_some_and(|(member, _)| member)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::deploy::ServiceName;

    #[test]
    fn only_the_usergroups_the_policy_names_are_looked_up() {
        let mut policy = Policy {
            rollback_allowed: vec![
                Principal::parse("slack:usergroup:S0ONCALL").expect("principal"),
                Principal::parse("slack:U0ALICE").expect("principal"),
                Principal::parse("discord:role:1").expect("principal"),
            ],
            ..Policy::default()
        };
        policy.service_rollback_allowed.insert(
            ServiceName::parse("checkout").expect("service"),
            vec![
                Principal::parse("slack:usergroup:S0PAY").expect("principal"),
                Principal::parse("slack:usergroup:S0ONCALL").expect("principal"),
            ],
        );
        assert_eq!(usergroups_in(&policy), ["S0ONCALL", "S0PAY"]);
    }
}
