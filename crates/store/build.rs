// `sqlx::migrate!` embeds the migrations at compile time; without this, Cargo does not
// notice a new migration file and an incremental build ships the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
