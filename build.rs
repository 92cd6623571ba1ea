//! Build-time facts for the binary:
//!
//! - Rebuilds when a migration is added: `sqlx::migrate!` embeds the migration files at
//!   compile time but only tracks the files that existed when it last ran.
//! - `BREAKWATER_COMMIT`, the git commit the binary is built from, for `--version`: taken
//!   from `$BREAKWATER_COMMIT` when set (container builds copy the sources without
//!   `.git` and pass it as a build argument), else from `git`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/store/migrations");
    println!("cargo:rerun-if-env-changed=BREAKWATER_COMMIT");
    let commit = std::env::var("BREAKWATER_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BREAKWATER_COMMIT={}", commit.trim());
    watch_git_head();
}

/// The output of a git command run in the package directory, if git and a repository are there.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Reruns this script when HEAD moves: a commit on the current branch or a checkout of
/// another one (worktrees keep HEAD and the branch refs in different directories, so
/// both paths come from git itself).
fn watch_git_head() {
    let paths = [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"])
            .and_then(|branch| git(&["rev-parse", "--git-path", &branch])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ];
    for path in paths.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
