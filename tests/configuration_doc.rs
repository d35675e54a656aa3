//! docs/configuration.md lists exactly the settings `lectern --help` shows, with the
//! same defaults, so the page cannot drift from the binary.

use std::collections::BTreeMap;
use std::process::Command;

/// `VARIABLE -> default` from the help text: each option's `[env: NAME=...]` and the
/// `[default: ...]` clap writes after it (one written before it is the description's
/// prose about a computed default).
fn from_help() -> BTreeMap<String, Option<String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_lectern"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("lectern --help runs");
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let mut settings = BTreeMap::new();
    for entry in help.split("\n      --").skip(1) {
        let Some(env) = entry.split("[env: ").nth(1) else {
            continue;
        };
        let name: String = env
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let default = env
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
            .map(str::to_string);
        settings.insert(name, default);
    }
    settings
}

/// `VARIABLE -> default` from the page's table rows: | `NAME` | `default` or unset | ...
fn from_docs() -> BTreeMap<String, Option<String>> {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let mut settings = BTreeMap::new();
    for row in page.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let default = cells[2]
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .map(str::to_string);
        settings.insert(name, default);
    }
    settings
}

#[test]
fn the_configuration_page_lists_every_setting_with_its_default() {
    let (help, docs) = (from_help(), from_docs());
    assert!(
        help.len() > 30,
        "too few settings read from --help: {help:?}"
    );
    let missing: Vec<_> = help.keys().filter(|k| !docs.contains_key(*k)).collect();
    let extra: Vec<_> = docs.keys().filter(|k| !help.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not in docs/configuration.md: {missing:?}; not a setting any more: {extra:?}"
    );
    for (name, default) in &help {
        assert_eq!(
            default, &docs[name],
            "{name}: the default in --help and in docs/configuration.md differ"
        );
    }
}
