//! docs/ARCHITECTURE.md cannot rot: every `src/FILE.rs::function` (or `::Type::method`, in an
//! `impl` of that type) it cites must still be there, its Layout must name every file under
//! `src/`, and the README must point to it.

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

/// Whether `text` defines `name` as a function, or as a type or trait with `as_type`.
fn defines(text: &str, name: &str, as_type: bool) -> bool {
    let items: &[&str] = if as_type {
        &["struct", "enum", "trait", "type"]
    } else {
        &["fn"]
    };
    text.lines().any(|line| {
        words(line)
            .windows(2)
            .any(|w| items.contains(&w[0]) && w[1] == name)
    })
}

fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The bodies of every `impl` of `ty` (inherent or of a trait) and of `trait ty` in `text`.
fn impl_bodies<'a>(text: &'a str, ty: &str) -> Vec<&'a str> {
    let mut bodies = Vec::new();
    let mut at = 0;
    while let Some(found) = find_item(&text[at..]) {
        let start = at + found;
        let Some(open) = text[start..].find(['{', ';']).map(|o| start + o) else {
            break;
        };
        at = open + 1;
        if text.as_bytes()[open] == b';' {
            continue;
        }
        let header = &text[start..open];
        if implemented(header) != Some(ty) {
            continue;
        }
        let mut depth = 0usize;
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        bodies.push(&text[open..open + i]);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    bodies
}

/// Where the next line that starts an `impl` or a `trait` begins.
fn find_item(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let trimmed = trimmed.strip_prefix("pub ").unwrap_or(trimmed);
        if trimmed.starts_with("impl") || trimmed.starts_with("trait ") {
            return Some(offset + line.len() - line.trim_start().len());
        }
        offset += line.len();
    }
    None
}

/// The type an `impl` header is for (after `for` when it implements a trait), or a trait's name.
fn implemented(header: &str) -> Option<&str> {
    let header = header.trim_start();
    let header = header.strip_prefix("pub ").unwrap_or(header);
    if let Some(rest) = header.strip_prefix("trait ") {
        return words(rest).first().copied();
    }
    let rest = header.strip_prefix("impl")?;
    // Skip the impl's own generics, `impl<T: Trait>`.
    let rest = match rest.strip_prefix('<') {
        Some(generics) => {
            let mut depth = 1;
            let end = generics.char_indices().find_map(|(i, c)| {
                match c {
                    '<' => depth += 1,
                    '>' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })?;
            &generics[end + 1..]
        }
        None => rest,
    };
    let target = match rest.split_once(" for ") {
        Some((_, target)) => target,
        None => rest,
    };
    let target = target.split(['<', '{']).next()?.split(" where ").next()?;
    words(target).last().copied()
}

/// Whether `text` defines `method` in an `impl` of `ty` (or in `trait ty`).
fn defines_method(text: &str, ty: &str, method: &str) -> bool {
    impl_bodies(text, ty)
        .iter()
        .any(|body| defines(body, method, false))
}

/// The `src/...rs` paths the Layout section names.
fn layout_files(doc: &str) -> std::collections::BTreeSet<String> {
    let section = doc
        .split_once("## Layout")
        .expect("docs/ARCHITECTURE.md has a Layout section")
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .split(|c: char| c.is_whitespace() || c == '`')
        .filter(|w| w.starts_with("src/") && w.ends_with(".rs"))
        .map(str::to_string)
        .collect()
}

/// Every `.rs` file under `src/`, as `src/...`.
fn source_files() -> std::collections::BTreeSet<String> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root()).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&root().join("src"), &mut out);
    out
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
        // `Type::method`: the method is defined in an `impl` of that type there (or in the
        // trait of that name); `function`: a function; a lone capitalised name: a type.
        let cited = names.join("::");
        match names.as_slice() {
            [ty, method] => {
                if !defines(&text, ty, true) {
                    missing.push(format!("{file}::{cited}: no type {ty}"));
                } else if !defines_method(&text, ty, method) {
                    missing.push(format!("{file}::{cited}: no {method} in an impl of {ty}"));
                }
            }
            [name] => {
                let as_type = name.starts_with(|c: char| c.is_uppercase());
                if !defines(&text, name, as_type) {
                    missing.push(format!("{file}::{cited}: no {name}"));
                }
            }
            _ => missing.push(format!(
                "{file}::{cited}: cite `file::function` or `file::Type::method`"
            )),
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
    let doc = "see `src/broker/mod.rs::no_such_function` and `src/broker/mod.rs::Broker::start`";
    let cited = citations(doc);
    assert_eq!(cited.len(), 2);
    let text = std::fs::read_to_string(root().join("src/broker/mod.rs")).unwrap();
    assert!(!defines(&text, "no_such_function", false));
    assert!(defines_method(&text, "Broker", "start"));
}

/// A method must be in an impl of the type cited: both names appearing somewhere is not enough.
#[test]
fn a_method_of_another_type_is_caught() {
    let text = "struct A;\nstruct B;\nimpl A {\n    fn run(&self) {}\n}\nimpl<T: Clone> Trait for B {\n    fn go() { if x { y } }\n}\nimpl B where B: Sized {\n}\npub trait Seam {\n    fn call(&mut self);\n}\n";
    assert!(defines_method(text, "A", "run"));
    assert!(!defines_method(text, "B", "run"), "run is A's, not B's");
    assert!(defines_method(text, "B", "go"));
    assert!(!defines_method(text, "A", "go"));
    assert!(defines_method(text, "Seam", "call"));
    let broker = std::fs::read_to_string(root().join("src/broker/mod.rs")).unwrap();
    // Both names are in that file, but `refresh` belongs to the Refresher.
    assert!(broker.contains("Broker") && broker.contains("fn refresh("));
    assert!(!defines_method(&broker, "Broker", "refresh"));
    assert!(defines_method(&broker, "Refresher", "refresh"));
}

/// The Layout section names every file under `src/`, and none that is gone.
#[test]
fn the_layout_names_every_source_file() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let named = layout_files(&doc);
    let present = source_files();
    let unnamed: Vec<_> = present.difference(&named).collect();
    let gone: Vec<_> = named.difference(&present).collect();
    assert!(
        unnamed.is_empty() && gone.is_empty(),
        "docs/ARCHITECTURE.md's Layout: not named {unnamed:?}; gone {gone:?}"
    );
}

#[test]
fn a_layout_that_misses_a_file_is_caught() {
    let doc = "## Layout\n```\nsrc/main.rs  wiring\n```\n## Benchmarks\nsrc/exit.rs";
    let named = layout_files(doc);
    assert_eq!(named.into_iter().collect::<Vec<_>>(), ["src/main.rs"]);
    assert!(source_files().contains("src/exit.rs"));
}

#[test]
fn the_readme_links_to_the_map() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("docs/ARCHITECTURE.md"));
}

/// The functions in `text` longer than `max` lines, as `name (lines)`: from a line that starts
/// an `fn` to the line that closes it at the same indentation.
fn long_functions(text: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let words = words(trimmed);
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let starts_item = words[..at]
            .iter()
            .all(|w| ["pub", "crate", "super", "async", "const", "unsafe"].contains(w));
        if !starts_item || !trimmed.starts_with(words[0]) {
            continue;
        }
        let close = " ".repeat(indent) + "}";
        let end = lines[i..]
            .iter()
            .position(|l| l.starts_with(&close) && l[indent..].starts_with('}'));
        // A declaration without a body (a trait's) ends with `;` before any `{`.
        let Some(end) = end else { continue };
        let body = &lines[i..=i + end];
        if body
            .iter()
            .take_while(|l| !l.contains('{'))
            .any(|l| l.ends_with(';'))
        {
            continue;
        }
        if end + 1 > max {
            long.push(format!("{} ({} lines)", words[at + 1], end + 1));
        }
    }
    long
}

/// `main.rs` stays wiring, and no function in `src/` outgrows a screen or two.
#[test]
fn main_is_wiring_and_no_function_is_over_80_lines() {
    let main = std::fs::read_to_string(root().join("src/main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(
        lines <= 150,
        "src/main.rs has {lines} lines: move a step into its stage"
    );
    let mut long = Vec::new();
    for file in source_files() {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        for f in long_functions(&text, 80) {
            long.push(format!("{file}: {f}"));
        }
    }
    assert!(
        long.is_empty(),
        "functions over 80 lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn a_long_function_is_caught() {
    let body = "    x += 1;\n".repeat(80);
    let text = format!(
        "pub async fn long() {{\n{body}}}\nfn short() {{\n}}\ntrait T {{\n    fn decl(&self);\n}}\n"
    );
    assert_eq!(long_functions(&text, 80), ["long (82 lines)"]);
    assert!(long_functions(&text, 82).is_empty());
}
