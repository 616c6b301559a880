//! The gateway's module graph, read from its sources: each layer names only the layers below it
//! (see `lib.rs`), `metrics` and `config` name no layer, and no modules name each other in a
//! cycle. A file is a module (`mod.rs` is its directory's); it names the modules its `crate::`
//! paths (`use crate::{..}` groups included) and `super::` paths land on. A module's own tests
//! naming it through `super::*` are no cycle, nor is a module naming its own submodules: it
//! declares them, and reaches them by relative paths this test does not follow.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

const LAYERS: [&str; 5] = ["s3", "ops", "background", "api", "server"];

/// Each layer (or module beside the layers), and the layers of the gateway it must not name.
const FORBIDDEN: [(&str, &[&str]); 5] = [
    ("s3", &["ops", "background", "api", "server"]),
    ("ops", &["background", "api", "server"]),
    ("background", &["api", "server"]),
    ("metrics", &LAYERS),
    ("config", &LAYERS),
];

/// Each module, by path without `crate::` (the root is `crate`), and the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn layers_only_name_the_layers_below() {
    let graph = graph();
    let mut violations = Vec::new();
    for (module, named) in &graph {
        let layer = top(module);
        for (from, forbidden) in FORBIDDEN {
            for other in named
                .iter()
                .filter(|n| layer == from && forbidden.contains(&top(n)))
            {
                violations.push(format!("{module} names {other}"));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn no_modules_name_each_other_in_a_cycle() {
    let graph = graph();
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for module in graph.keys() {
        visit(&graph, module, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "modules in a cycle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_s3_layer_names_no_node_calls() {
    let mut files = BTreeMap::new();
    sources(&src().join("s3"), &mut vec!["s3".into()], &mut files);
    for (module, text) in files {
        for cluster_part in ["node_rpc::client", "node_rpc::protocol", "placement::"] {
            assert!(
                !text.contains(cluster_part),
                "{module} names {cluster_part}"
            );
        }
    }
}

/// Depth first from `module`; a module met again while still on `path` closes a cycle.
fn visit(
    graph: &Graph,
    module: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    cycles: &mut Vec<String>,
) {
    if let Some(at) = path.iter().position(|m| m == module) {
        cycles.push(format!("{} -> {module}", path[at..].join(" -> ")));
        return;
    }
    if !done.insert(module.to_string()) {
        return;
    }
    path.push(module.to_string());
    for next in &graph[module] {
        visit(graph, next, path, done, cycles);
    }
    path.pop();
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn graph() -> Graph {
    let mut files = BTreeMap::new();
    sources(&src(), &mut Vec::new(), &mut files);
    let mut graph = Graph::new();
    for (module, text) in &files {
        let own: Vec<String> = module.split("::").map(String::from).collect();
        let own = if module == "crate" { Vec::new() } else { own };
        let named = graph.entry(module.clone()).or_default();
        for path in paths(&own, &tokens(text)) {
            let landed = (0..=path.len())
                .rev()
                .map(|n| name(&path[..n]))
                .find(|m| files.contains_key(m))
                .unwrap();
            let submodule = module == "crate" || landed.starts_with(&format!("{module}::"));
            if landed != *module && !submodule {
                named.insert(landed);
            }
        }
    }
    graph
}

/// Every `.rs` file under `dir`, by its module's name, with its text.
fn sources(dir: &Path, module: &mut Vec<String>, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            module.push(stem);
            sources(&path, module, out);
            module.pop();
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut file = module.clone();
            if !(stem == "mod" || (stem == "lib" && module.is_empty())) {
                file.push(stem);
            }
            out.insert(name(&file), fs::read_to_string(&path).unwrap());
        }
    }
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

/// The paths that `crate::` and `super::` start in a file of module `own`, each as far as it
/// goes (to an item, a module, or a group's member).
fn paths(own: &[String], tokens: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // Inline modules (`mod tests {`) around the token, with the brace depth inside each.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let at = |j: usize| tokens.get(j).map(String::as_str);
        match tokens[i].as_str() {
            "mod" if at(i + 2) == Some("{") => inline.push((tokens[i + 1].clone(), depth + 1)),
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            "crate" if at(i + 1) == Some("::") => {
                i = tree(tokens, i + 2, Vec::new(), &mut out);
                continue;
            }
            "super" if at(i + 1) == Some("::") => {
                let mut scope: Vec<String> = own.to_vec();
                scope.extend(inline.iter().map(|(m, _)| m.clone()));
                while at(i) == Some("super") && at(i + 1) == Some("::") {
                    scope.pop();
                    i += 2;
                }
                i = tree(tokens, i, scope, &mut out);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The paths of a path or use tree from `tokens[i]` on, under `prefix`; returns where it ends.
fn tree(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                while tokens.get(i).is_some_and(|t| t != "}") {
                    i = tree(tokens, i, prefix.clone(), out);
                    // Past an `as` rename to the `,` or `}`.
                    while tokens.get(i).is_some_and(|t| t != "," && t != "}") {
                        i += 1;
                    }
                    if tokens.get(i).is_some_and(|t| t == ",") {
                        i += 1;
                    }
                }
                return i + 1;
            }
            Some("self") => i += 1,
            Some(t) if t.starts_with(|c: char| c.is_alphabetic() || c == '_') => {
                prefix.push(t.to_string());
                i += 1;
            }
            Some("*") => {
                out.push(prefix);
                return i + 1;
            }
            _ => {
                out.push(prefix);
                return i;
            }
        }
        if tokens.get(i).is_some_and(|t| t == "::") {
            i += 1;
        } else {
            out.push(prefix);
            return i;
        }
    }
}

/// The identifiers, `::` and other punctuation of Rust source, without comments, strings and
/// character literals (whose braces would throw off the count of inline modules).
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut nested = 0;
            loop {
                if at(i) == '/' && at(i + 1) == '*' {
                    nested += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    nested -= 1;
                    i += 2;
                    if nested == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while at(i) != '"' {
                i += if at(i) == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A character literal, or else a lifetime's quote.
            if at(i + 1) == '\\' {
                i += 3;
                while at(i) != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let hashes = chars[i..].iter().take_while(|c| **c == '#').count();
            if (word == "r" || word == "br") && at(i + hashes) == '"' {
                i += hashes + 1;
                while !(at(i) == '"' && chars[i + 1..].iter().take(hashes).all(|c| *c == '#')) {
                    i += 1;
                }
                i += 1 + hashes;
            } else {
                out.push(word);
            }
        } else if c == ':' && at(i + 1) == ':' {
            out.push("::".to_string());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}
