//! docs/ARCHITECTURE.md cannot rot: every `src/FILE.rs::function` (or `::Type::method`) it
//! cites must still be there, and the README must point to it.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `src/...rs::name[::name]` in backticks.
fn citations(doc: &str) -> Vec<(String, Vec<String>)> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (file, path) = quoted.split_once(".rs::")?;
            let names: Vec<String> = path.split("::").map(str::to_string).collect();
            let ok = file.starts_with("src/")
                && !names.is_empty()
                && names
                    .iter()
                    .all(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'));
            ok.then(|| (format!("{file}.rs"), names))
        })
        .collect()
}

/// Whether `text` defines `name` as a function, a type or a trait (for a type, an `impl` of it
/// counts too).
fn defines(text: &str, name: &str, as_type: bool) -> bool {
    let items: &[&str] = if as_type {
        &["struct", "enum", "trait", "type"]
    } else {
        &["fn"]
    };
    text.lines().any(|line| {
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        words
            .windows(2)
            .any(|w| items.contains(&w[0]) && w[1] == name)
            || (as_type && words.first() == Some(&"impl") && words.contains(&name))
    })
}

#[test]
fn every_function_the_map_names_exists() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let cited = citations(&doc);
    assert!(cited.len() >= 40, "only {} citations found", cited.len());
    let mut missing = Vec::new();
    for (file, names) in &cited {
        let Ok(text) = std::fs::read_to_string(root().join(file)) else {
            missing.push(format!("{file}: no such file"));
            continue;
        };
        // `Type::method`: the type is defined (or implemented) there, and the method too;
        // `function`: a function; a lone capitalised name: a type.
        let (last, types) = names.split_last().unwrap();
        for t in types {
            if !defines(&text, t, true) {
                missing.push(format!("{file}::{}: no type {t}", names.join("::")));
            }
        }
        let as_type = types.is_empty() && last.starts_with(|c: char| c.is_uppercase());
        if !defines(&text, last, as_type) {
            missing.push(format!("{file}::{}: no {last}", names.join("::")));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md cites what is gone:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_missing_function_is_caught() {
    let doc = "see `src/broker.rs::no_such_function` and `src/broker.rs::Broker::start`";
    let cited = citations(doc);
    assert_eq!(cited.len(), 2);
    let text = std::fs::read_to_string(root().join("src/broker.rs")).unwrap();
    assert!(!defines(&text, "no_such_function", false));
    assert!(defines(&text, "Broker", true) && defines(&text, "start", false));
}

#[test]
fn the_readme_links_to_the_map() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("docs/ARCHITECTURE.md"));
}
