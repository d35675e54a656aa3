// `sqlx::migrate!` embeds the migrations when the crate is built: build it again when
// one is added or changed (sqlx's advice; cargo does not see the folder otherwise).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
