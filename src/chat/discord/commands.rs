//! The `/breakwater` application command: its definition (subcommands with typed options,
//! service and environment names autocompleted), its registration, and reading an
//! invocation back into the core's [`Command`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serenity::all::{
    AutocompleteChoice, CommandDataOption, CommandDataOptionValue, CommandOptionType,
    CreateCommand, CreateCommandOption, GuildId, Http,
};

use super::rest::{Rest, RestError};
use crate::chat::Lane;
use crate::core::alert::KnownService;
use crate::core::event::Command;

pub(crate) const NAME: &str = "breakwater";
/// Discord shows at most 25 autocomplete choices.
const MAX_CHOICES: usize = 25;

fn text_option(
    name: &str,
    description: &str,
    required: bool,
    autocomplete: bool,
) -> CreateCommandOption {
    CreateCommandOption::new(CommandOptionType::String, name, description)
        .required(required)
        .set_autocomplete(autocomplete)
        .max_length(100)
}

fn subcommand(name: &str, description: &str) -> CreateCommandOption {
    CreateCommandOption::new(CommandOptionType::SubCommand, name, description)
}

/// `/breakwater deploys|rollback|status|audit|timeline|help`.
pub(crate) fn definition() -> CreateCommand {
    CreateCommand::new(NAME)
        .description("Recent deploys, rollback plans and the audit log")
        .add_option(
            subcommand("deploys", "Recent deploys, newest first")
                .add_sub_option(text_option("service", "Service", false, true))
                .add_sub_option(text_option("environment", "Environment", false, true)),
        )
        .add_option(
            subcommand(
                "rollback",
                "Offer a rollback plan with a button (nothing runs until someone presses it)",
            )
            .add_sub_option(text_option("service", "Service", true, true))
            .add_sub_option(text_option("environment", "Environment", true, true))
            .add_sub_option(text_option(
                "version",
                "Version to roll back to (default: the one before the current)",
                false,
                false,
            )),
        )
        .add_option(
            subcommand(
                "status",
                "What runs now, open alerts, rollbacks in progress",
            )
            .add_sub_option(text_option("service", "Service", true, true))
            .add_sub_option(text_option("environment", "Environment", true, true)),
        )
        .add_option(
            subcommand("audit", "The latest audit records")
                .add_sub_option(text_option("service", "Service", false, true)),
        )
        .add_option(
            subcommand("timeline", "The latest incident's timeline")
                .add_sub_option(text_option("service", "Service", false, true)),
        )
        .add_option(subcommand("help", "How to use breakwater"))
}

/// Registers the command: in one guild when `guild_id` is set (available at once), else
/// globally (Discord may take a while to show it everywhere). Bulk overwrite, so
/// re-registering on every start is idempotent.
pub(crate) async fn register(http: &Http, guild_id: Option<u64>) -> serenity::Result<()> {
    let commands = vec![definition()];
    match guild_id {
        Some(guild) => {
            http.create_guild_commands(GuildId::new(guild), &commands)
                .await?
        }
        None => http.create_global_commands(&commands).await?,
    };
    Ok(())
}

/// Registers `/breakwater` once per process (again after a failure, at the next chance).
pub(crate) struct Registration {
    rest: Arc<Rest>,
    guild_id: Option<u64>,
    started: AtomicBool,
}

impl Registration {
    pub(crate) fn new(rest: Arc<Rest>, guild_id: Option<u64>) -> Self {
        Self {
            rest,
            guild_id,
            started: AtomicBool::new(false),
        }
    }

    pub(crate) async fn register_once(&self) -> Result<(), RestError> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = self
            .rest
            .call(Lane::Interactive, "register /breakwater", || {
                register(&self.rest.http, self.guild_id)
            })
            .await;
        match result {
            Ok(()) => {
                tracing::info!(
                    guild = ?self.guild_id,
                    "registered /breakwater {}",
                    if self.guild_id.is_some() { "in the guild" } else { "globally" }
                );
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "could not register /breakwater (does the invite include the applications.commands scope?)");
                self.started.store(false, Ordering::SeqCst);
                Err(error)
            }
        }
    }
}

/// The subcommand and its options, flattened.
struct Invocation<'a> {
    name: &'a str,
    options: &'a [CommandDataOption],
}

impl<'a> Invocation<'a> {
    fn of(options: &'a [CommandDataOption]) -> Option<Self> {
        let first = options.first()?;
        match &first.value {
            CommandDataOptionValue::SubCommand(options) => Some(Self {
                name: &first.name,
                options,
            }),
            _ => None,
        }
    }

    fn text(&self, name: &str) -> Option<String> {
        self.options
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| match &o.value {
                CommandDataOptionValue::String(value) => Some(value.trim().to_owned()),
                CommandDataOptionValue::Autocomplete { value, .. } => Some(value.trim().to_owned()),
                _ => None,
            })
            .filter(|v| !v.is_empty())
    }
}

/// The core command for an invocation; `Err` carries the usage.
pub(crate) fn parse(options: &[CommandDataOption]) -> Result<Command, String> {
    let Some(invocation) = Invocation::of(options) else {
        return Ok(Command::Help);
    };
    let required = |name: &str| invocation.text(name).ok_or_else(Command::usage);
    match invocation.name {
        "deploys" => Ok(Command::Deploys {
            service: invocation.text("service"),
            environment: invocation.text("environment"),
        }),
        "rollback" => Ok(Command::Rollback {
            service: required("service")?,
            environment: required("environment")?,
            version: invocation.text("version"),
        }),
        "status" => Ok(Command::Status {
            service: required("service")?,
            environment: required("environment")?,
        }),
        "audit" => Ok(Command::Audit {
            service: invocation.text("service"),
        }),
        "timeline" => Ok(Command::Timeline {
            service: invocation.text("service"),
        }),
        "help" => Ok(Command::Help),
        _ => Err(Command::usage()),
    }
}

/// Choices for the option being typed: service names (and aliases' services) matching
/// the prefix, or the environments of the service already chosen.
pub(crate) fn autocomplete(
    options: &[CommandDataOption],
    services: &[KnownService],
) -> Vec<AutocompleteChoice> {
    let Some(invocation) = Invocation::of(options) else {
        return Vec::new();
    };
    let Some((focused, typed)) = invocation.options.iter().find_map(|o| match &o.value {
        CommandDataOptionValue::Autocomplete { value, .. } => Some((o.name.as_str(), value)),
        _ => None,
    }) else {
        return Vec::new();
    };
    let typed = typed.trim().to_lowercase();
    let mut names: Vec<String> = match focused {
        "service" => services
            .iter()
            .filter(|s| {
                s.name.as_str().to_lowercase().contains(&typed)
                    || s.aliases.iter().any(|a| a.to_lowercase().contains(&typed))
            })
            .map(|s| s.name.to_string())
            .collect(),
        "environment" => {
            let chosen = invocation.text("service").map(|s| s.to_lowercase());
            services
                .iter()
                .filter(|s| {
                    chosen.as_ref().is_none_or(|c| {
                        s.name.as_str().to_lowercase() == *c
                            || s.aliases.iter().any(|a| a.to_lowercase() == *c)
                    })
                })
                .flat_map(|s| s.environments.iter().map(ToString::to_string))
                .filter(|e| e.to_lowercase().contains(&typed))
                .collect()
        }
        _ => Vec::new(),
    };
    names.sort();
    names.dedup();
    // Prefix matches first, then the rest.
    names.sort_by_key(|n| !n.to_lowercase().starts_with(&typed));
    names
        .into_iter()
        .take(MAX_CHOICES)
        .map(|name| AutocompleteChoice::new(name.clone(), name))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::deploy::{Environment, ServiceName};

    fn options(value: serde_json::Value) -> Vec<CommandDataOption> {
        serde_json::from_value(value).expect("documented option payload")
    }

    fn services() -> Vec<KnownService> {
        vec![
            KnownService {
                name: ServiceName::parse("checkout").expect("name"),
                aliases: vec!["checkout-svc".into()],
                environments: vec![
                    Environment::parse("staging").expect("env"),
                    Environment::parse("production").expect("env"),
                ],
            },
            KnownService {
                name: ServiceName::parse("payments").expect("name"),
                aliases: vec![],
                environments: vec![Environment::parse("production").expect("env")],
            },
        ]
    }

    #[test]
    fn the_definition_has_the_five_subcommands_with_autocompleted_names() {
        let body = serde_json::to_value(definition()).expect("json");
        assert_eq!(body["name"], "breakwater");
        let names: Vec<&str> = body["options"]
            .as_array()
            .expect("options")
            .iter()
            .map(|o| o["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names,
            ["deploys", "rollback", "status", "audit", "timeline", "help"]
        );
        let rollback = &body["options"][1];
        assert_eq!(rollback["type"], 1);
        assert_eq!(rollback["options"][0]["name"], "service");
        assert_eq!(rollback["options"][0]["required"], true);
        assert_eq!(rollback["options"][0]["autocomplete"], true);
        assert_eq!(rollback["options"][2]["name"], "version");
    }

    #[test]
    fn a_rollback_invocation_becomes_the_rollback_command() {
        let parsed = parse(&options(json!([{
            "name": "rollback", "type": 1, "options": [
                {"name": "service", "type": 3, "value": "checkout"},
                {"name": "environment", "type": 3, "value": "production"},
                {"name": "version", "type": 3, "value": "v41"}
            ]
        }])));
        assert_eq!(
            parsed,
            Ok(Command::Rollback {
                service: "checkout".into(),
                environment: "production".into(),
                version: Some("v41".into())
            })
        );
    }

    #[test]
    fn optional_options_may_be_left_out() {
        let parsed = parse(&options(
            json!([{"name": "deploys", "type": 1, "options": []}]),
        ));
        assert_eq!(
            parsed,
            Ok(Command::Deploys {
                service: None,
                environment: None
            })
        );
        let help = parse(&options(
            json!([{"name": "help", "type": 1, "options": []}]),
        ));
        assert_eq!(help, Ok(Command::Help));
    }

    #[test]
    fn services_are_completed_by_name_or_alias() {
        let choices = autocomplete(
            &options(json!([{
                "name": "rollback", "type": 1, "options": [
                    {"name": "service", "type": 3, "value": "svc", "focused": true}
                ]
            }])),
            &services(),
        );
        let names: Vec<String> = choices
            .iter()
            .map(|c| serde_json::to_value(c).expect("json")["name"].to_string())
            .collect();
        assert_eq!(names, ["\"checkout\""]);
    }

    #[test]
    fn environments_are_completed_for_the_chosen_service() {
        let choices = autocomplete(
            &options(json!([{
                "name": "status", "type": 1, "options": [
                    {"name": "service", "type": 3, "value": "payments"},
                    {"name": "environment", "type": 3, "value": "", "focused": true}
                ]
            }])),
            &services(),
        );
        let names: Vec<serde_json::Value> = choices
            .iter()
            .map(|c| serde_json::to_value(c).expect("json")["value"].clone())
            .collect();
        assert_eq!(names, [json!("production")]);
    }
}
