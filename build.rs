//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the migration files at
//! compile time but only tracks the files that existed when it last ran.

fn main() {
    println!("cargo:rerun-if-changed=src/store/migrations");
}
