//! The files and programs a valid configuration names, checked by `check-config` before
//! they are first needed: a CA bundle or kubeconfig that is missing, or a `helm` or
//! rollback command that is not installed, would otherwise surface only in the middle of
//! someone's rollback. `{ file = … }` secrets are read when the configuration loads.

use std::path::{Path, PathBuf};

use super::{BackendConfig, Config, Problem, io_message, join};

impl Config {
    /// Each named file that does not exist or cannot be read, and each program that
    /// cannot be found or run, with the key that names it. Relative paths are taken from
    /// the current directory, as the backends will.
    pub fn file_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |path: String, problem: Option<String>| {
            if let Some(message) = problem {
                problems.push(Problem { path, message });
            }
        };
        for (name, backend) in &self.backends {
            let at = |key: &str| join(&format!("backends.{name}"), key);
            match backend {
                BackendConfig::ArgoCd(argocd) => {
                    if let Some(ca) = &argocd.ca_file {
                        check(at("ca_file"), readable_file(ca));
                    }
                }
                BackendConfig::Kubernetes(kubernetes) | BackendConfig::ArgoRollouts(kubernetes) => {
                    if let Some(kubeconfig) = &kubernetes.kubeconfig {
                        check(at("kubeconfig"), readable_file(kubeconfig));
                    }
                }
                BackendConfig::Helm(helm) => {
                    check(at("helm"), program(&helm.helm, None));
                    if let Some(kubeconfig) = &helm.kubeconfig {
                        check(at("kubeconfig"), readable_file(kubeconfig));
                    }
                }
                BackendConfig::Command(command) => {
                    let working_dir = command.working_dir.as_deref();
                    if let Some(dir) = working_dir {
                        check(at("working_dir"), directory(dir));
                    }
                    // A program named by a placeholder is known only per rollback.
                    if let Some(first) = command.argv.first().filter(|p| !p.contains('{')) {
                        check(
                            format!("backends.{name}.argv[0]"),
                            program(Path::new(first), working_dir),
                        );
                    }
                }
                BackendConfig::Webhook(_) | BackendConfig::Simulated(_) => {}
            }
        }
        problems
    }
}

/// Why `path` is not a file breakwater can read, if it is not.
fn readable_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some(format!("{} is a directory, not a file", path.display())),
        Ok(_) => std::fs::File::open(path)
            .err()
            .map(|error| cannot(path, &error)),
        Err(error) => Some(cannot(path, &error)),
    }
}

fn directory(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some(format!("{} is not a directory", path.display())),
        Err(error) => Some(cannot(path, &error)),
    }
}

/// Why `program` cannot be run, if it cannot: a bare name is looked up on `PATH`, a
/// relative path from the working directory the command will run in.
fn program(program: &Path, working_dir: Option<&Path>) -> Option<String> {
    let bare = program.components().count() == 1 && !program.to_string_lossy().contains('/');
    if bare {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .any(|candidate| is_executable(&candidate));
        return (!found).then(|| {
            format!(
                "program {} is not found on PATH; install it or give its full path",
                program.display()
            )
        });
    }
    let full: PathBuf = match working_dir {
        Some(dir) if program.is_relative() => dir.join(program),
        _ => program.to_owned(),
    };
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => {
            Some(format!("{} is a directory, not a program", full.display()))
        }
        Ok(_) if !is_executable(&full) => {
            Some(format!("{} is not executable; chmod +x it", full.display()))
        }
        Ok(_) => None,
        Err(error) => Some(cannot(&full, &error)),
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn cannot(path: &Path, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
        std::io::ErrorKind::PermissionDenied => {
            format!(
                "{} is not readable by this user (permission denied)",
                path.display()
            )
        }
        _ => format!("cannot read {}: {}", path.display(), io_message(error)),
    }
}
