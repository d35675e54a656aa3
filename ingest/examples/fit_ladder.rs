//! Prints the ladder Lectern would choose for a file, with the probe's measurements:
//! `cargo run --release -p lectern-ingest --example fit_ladder -- FILE [fixed]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: fit_ladder FILE [fixed]");
        std::process::exit(2);
    };
    let per_title = args.next().as_deref() != Some("fixed");
    let path = std::path::PathBuf::from(path);
    let facts = match lectern_ingest::probe::probe_file(&path, 30, &Default::default()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let fixed = lectern_ingest::ladder::ladder_for(&facts);
    let (ladder, report) = lectern_ingest::complexity::fit_ladder(
        &path,
        &facts,
        fixed,
        per_title,
        std::time::Duration::from_secs(120),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "ladder": ladder, "report": report }))
            .expect("json")
    );
}
