//! The user docs stay walkable: a README that is a first read, pages that say whom they are for,
//! and links that lead somewhere. The recipes in them are run by the tests of what they show
//! (`support::doc_recipe`).

use std::path::Path;

use crate::support;

/// The README is a first read, not the manual: the manual is under docs/.
#[test]
fn the_readme_is_a_first_read() {
    let readme = support::doc("README.md");
    assert!(
        readme.len() <= 15 * 1024,
        "README.md is {} bytes: move what is not a first read into docs/",
        readme.len()
    );
    for link in [
        "docs/usage.md",
        "docs/ci.md",
        "docs/containers.md",
        "docs/security.md",
    ] {
        assert!(
            readme.contains(&format!("]({link}")),
            "README.md does not link {link}"
        );
    }
}

/// Every user page opens, under its title, with whom it is for.
#[test]
fn every_page_says_whom_it_is_for() {
    for (path, text) in support::user_docs() {
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "README.md" || name == "ARCHITECTURE.md" {
            continue;
        }
        let mut paragraphs = text.split("\n\n");
        let title = paragraphs.next().unwrap_or_default();
        assert!(title.starts_with("# "), "{name} opens with no title");
        let first = paragraphs.next().unwrap_or_default();
        assert!(
            first.starts_with("For "),
            "{name} does not open with whom it is for"
        );
    }
}

/// Markdown links `[text](target)` that point inside the repository.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        if !target.contains("://") && !target.starts_with("mailto:") && !target.contains(' ') {
            links.push(target.to_string());
        }
    }
    links
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#').trim().to_lowercase();
        let anchor: String = heading
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        out.push(anchor);
    }
    out
}

#[test]
fn every_link_in_the_docs_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = support::user_docs();
    pages.push((root.join("SECURITY.md"), support::doc("SECURITY.md")));
    let mut broken = Vec::new();
    for (page, text) in &pages {
        let dir = page.parent().unwrap();
        for link in relative_links(text) {
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", page.display()));
                continue;
            }
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {link}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn a_broken_link_is_caught() {
    let text =
        "see [a](docs/usage.md#what-the-child-gets) and [b](https://x.test/y) and [c](nope.md)";
    assert_eq!(
        relative_links(text),
        ["docs/usage.md#what-the-child-gets", "nope.md"]
    );
    assert!(
        anchors("# T\n## What the child gets\n```\n# not a heading\n```\n")
            .contains(&"what-the-child-gets".to_string())
    );
    assert!(!anchors("```\n## Hidden\n```\n").contains(&"hidden".to_string()));
}
