//! Secrets: where a `"${ENV_VAR}"` or `{ file = "…" }` value is looked up, and the rules a
//! secret value must meet. The lookup is a trait so that tests resolve secrets without
//! touching the process environment or the file system.

use std::path::{Path, PathBuf};

use super::validate::Validator;
use super::{Secret, io_message, join};

pub(super) trait SecretResolver {
    fn env(&self, name: &str) -> Option<String>;
    fn file(&self, path: &str) -> Result<String, String>;
}

pub(super) struct EnvSecrets {
    pub(super) base: PathBuf,
}

impl SecretResolver for EnvSecrets {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &str) -> Result<String, String> {
        let path = Path::new(path);
        let full = if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        };
        std::fs::read_to_string(&full)
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("secret file {} does not exist", full.display())
                }
                _ => format!(
                    "cannot read secret file {}: {}",
                    full.display(),
                    io_message(&e)
                ),
            })
    }
}

impl Validator<'_> {
    pub(super) fn secret(&mut self, path: &str, value: &toml::Value) -> Option<Secret> {
        const HOW: &str =
            "secrets are written as \"${ENV_VAR}\" or { file = \"/run/secrets/name\" }";
        match value {
            toml::Value::String(raw) => {
                let Some(name) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
                    self.problem(path, format!("must not be written inline; {HOW}"));
                    return None;
                };
                match self.secrets.env(name) {
                    Some(value) if !value.is_empty() => Some(Secret(value)),
                    Some(_) => {
                        self.problem(path, format!("environment variable {name} is empty"));
                        None
                    }
                    None => {
                        self.problem(path, format!("environment variable {name} is not set"));
                        None
                    }
                }
            }
            toml::Value::Table(table) if table.len() == 1 && table.contains_key("file") => {
                match table.get("file") {
                    Some(toml::Value::String(file)) => match self.secrets.file(file) {
                        Ok(value) if !value.is_empty() => Some(Secret(value)),
                        Ok(_) => {
                            self.problem(path, format!("secret file {file} is empty"));
                            None
                        }
                        Err(error) => {
                            self.problem(path, error);
                            None
                        }
                    },
                    _ => {
                        self.problem(join(path, "file"), "must be a path");
                        None
                    }
                }
            }
            _ => {
                self.problem(path, HOW);
                None
            }
        }
    }

    pub(super) fn optional_secret(
        &mut self,
        path: &str,
        value: Option<&toml::Value>,
    ) -> Option<Secret> {
        value.and_then(|v| self.secret(path, v))
    }

    /// A secret that authenticates a sender: at least 16 characters, since anyone who
    /// guesses it can write deploys into the registry.
    pub(super) fn long_secret(&mut self, path: &str, value: &toml::Value) -> Option<Secret> {
        let secret = self.secret(path, value)?;
        if secret.expose().len() < 16 {
            self.problem(
                path,
                "is shorter than 16 characters; use a long random secret",
            );
        }
        Some(secret)
    }
}
