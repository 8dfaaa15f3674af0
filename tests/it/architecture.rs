//! ARCHITECTURE.md's code map against the tree: every source file is named by the map, or
//! its folder is, and every path the map names exists. A file added or removed without the
//! map changing fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The folders whose files the map must account for.
const MAPPED_ROOTS: &[&str] = &[
    ".ci",
    "actors",
    "bench",
    "config",
    "grafana",
    "migrations",
    "prometheus",
    "schemas",
    "scripts",
    "src",
    "tests",
];

/// Folders too broad to stand for their files: naming `src/` says nothing about a file in it.
const TOO_BROAD: &[&str] = &[
    "src",
    "actors",
    "actors/src",
    "bench",
    "bench/src",
    "tests",
    "config",
    "scripts",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') && name != ".ci" {
            continue;
        }
        if path.is_dir() {
            files_under(&path, out);
        } else {
            let relative = path.strip_prefix(root()).expect("under the root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The `## Code map` section's text.
fn code_map() -> String {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find("\n## Code map").expect("a `## Code map` section");
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// Backticked tokens that look like paths: they contain `/` or end in a file extension.
fn path_tokens(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        // Routes (`/metrics`) and media types are not paths.
        .filter(|token| {
            !token.is_empty()
                && !token.starts_with('/')
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        })
        .filter(|token| {
            token.contains('/')
                || [
                    ".rs", ".toml", ".sh", ".sql", ".json", ".yml", ".yaml", ".md", ".pem",
                ]
                .iter()
                .any(|ext| token.ends_with(ext))
        })
        .map(|token| token.to_owned())
        .collect()
}

/// Resolves the map's paths: relative to a folder named earlier in the same paragraph or
/// bullet (`history/` then `plan.rs`), else to a folder in the current `###` heading
/// (`### \`actors/\`` then `lifecycle.rs` names `actors/src/lifecycle.rs`, as a crate's files
/// live in its `src/`), else from the root, else under `src/`.
fn resolved_paths() -> (BTreeSet<String>, Vec<String>) {
    let root = root();
    let mut context: Vec<String> = Vec::new();
    let mut local: Vec<String> = Vec::new();
    let mut found = BTreeSet::new();
    let mut missing = Vec::new();
    for line in code_map().lines() {
        let tokens = path_tokens(line);
        if line.trim().is_empty() || line.starts_with("- ") || line.starts_with('#') {
            local.clear();
        }
        if line.starts_with("### ") {
            // A folder in the heading, or the folder of a file in it.
            context = tokens
                .iter()
                .flat_map(|t| {
                    let dir = match t.strip_suffix('/') {
                        Some(dir) => dir.to_owned(),
                        None => t.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned(),
                    };
                    [format!("{dir}/src"), dir]
                })
                .collect();
        }
        for token in tokens {
            let clean = token.trim_end_matches('/').to_owned();
            let candidates = local
                .iter()
                .chain(&context)
                .map(|dir| format!("{dir}/{clean}"))
                .chain([clean.clone(), format!("src/{clean}")]);
            match candidates.into_iter().find(|c| root.join(c).exists()) {
                Some(path) => {
                    if token.ends_with('/') {
                        local.extend([format!("{path}/src"), path.clone()]);
                    }
                    found.insert(path);
                }
                None => missing.push(token),
            }
        }
    }
    (found, missing)
}

#[test]
fn the_code_map_names_every_file_and_only_files_that_exist() {
    let (named, missing) = resolved_paths();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map names paths that do not exist: {missing:?}"
    );
    let mut files = Vec::new();
    for dir in MAPPED_ROOTS {
        files_under(&root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let unmapped: Vec<&String> = files
        .iter()
        .filter(|file| {
            !named.iter().any(|path| {
                *file == path
                    || (!TOO_BROAD.contains(&path.as_str())
                        && file.starts_with(&format!("{path}/")))
            })
        })
        .collect();
    assert!(
        unmapped.is_empty(),
        "files missing from ARCHITECTURE.md's code map (name the file or its folder): {unmapped:#?}"
    );
}
