//! The shape of the source tree, checked so that it stays as docs/architecture.md draws it: in
//! every crate of the workspace, no two files import each other (directly or through others),
//! no source file is much over 600 lines, and every file opens with a module comment.
//!
//! Imports are read from the text: `use` items and `crate::`/`super::`/`self::` paths, with
//! `pub use` re-exports followed to the file that defines the item. Test modules
//! (`#[cfg(test)]` to the end of a file) are left out: tests may look anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 650;

/// One crate's files: the module path of each (`[]` for the root), its file, its code.
struct Crate {
    files: BTreeMap<Vec<String>, (PathBuf, String)>,
}

fn crates() -> Vec<(String, Crate)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.join("lib.rs").exists() {
            let name = src
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((name, load(&src)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "found only {} crates", out.len());
    out
}

fn load(src: &Path) -> Crate {
    let mut files = BTreeMap::new();
    walk(src.join("lib.rs"), Vec::new(), &mut files);
    Crate { files }
}

/// Reads `file` as module `path`, then the modules it declares.
fn walk(file: PathBuf, path: Vec<String>, files: &mut BTreeMap<Vec<String>, (PathBuf, String)>) {
    let text = std::fs::read_to_string(&file).unwrap();
    let code = without_tests(&text);
    let dir = match file.file_name().unwrap().to_str().unwrap() {
        "lib.rs" | "mod.rs" => file.parent().unwrap().to_path_buf(),
        other => file.parent().unwrap().join(other.trim_end_matches(".rs")),
    };
    for child in declared_modules(&code) {
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let child_file = if flat.exists() { flat } else { nested };
        if child_file.exists() {
            let mut child_path = path.clone();
            child_path.push(child);
            walk(child_file, child_path, files);
        }
    }
    files.insert(path, (file, text));
}

/// The file's code before its test module.
fn without_tests(text: &str) -> String {
    let code = strip_comments(text);
    match code.find("#[cfg(test)]") {
        Some(at) => code[..at].to_string(),
        None => code,
    }
}

/// Removes comments and the contents of string literals, so that paths in them are not read.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        chars.next();
                    } else if c == '"' {
                        break;
                    }
                }
                out.push('"');
            }
            // A character literal that is a quote would open a string above.
            '\'' if chars.peek() == Some(&'"') => {
                chars.next();
                out.push_str("' '");
            }
            c => out.push(c),
        }
    }
    out
}

fn declared_modules(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))
                .or_else(|| l.strip_prefix("pub(super) mod "))
                .or_else(|| l.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(|n| n.trim().to_string())
        })
        .collect()
}

/// Every path the code names that starts at `crate`, `super` or `self`, or at a module this
/// file declares; `use` groups are expanded (`a::{b, c::d}` is `a::b` and `a::c::d`).
fn paths(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for item in use_items(code) {
        expand(&item, &mut Vec::new(), &mut out);
    }
    // Paths in code, outside `use` items.
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        if starts_word && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            let end = (i..bytes.len())
                .find(|&j| {
                    !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b':')
                })
                .unwrap_or(bytes.len());
            let word = &code[i..end];
            if word.contains("::") {
                let segs: Vec<String> = word
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                out.push(segs);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out.retain(|p| {
        p.first()
            .is_some_and(|f| f == "crate" || f == "super" || f == "self" || children.contains(f))
    });
    out
}

/// The text of each `use ...;` item.
fn use_items(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use ") {
        let after = &rest[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        out.push(after[..end].split_whitespace().collect::<Vec<_>>().join(""));
        rest = &after[end..];
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find(word) {
        let at = from + at;
        let before = text[..at].chars().last();
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Expands one `use` tree into paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim().trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let n = prefix.len();
        prefix.extend(
            head.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        for part in split_top(inner) {
            expand(part, prefix, out);
        }
        prefix.truncate(n);
    } else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let mut full = prefix.clone();
        full.extend(
            path.split("::")
                .filter(|s| !s.is_empty() && *s != "*")
                .map(str::to_string),
        );
        if full.last().is_some_and(|s| s == "self") {
            full.pop();
        }
        out.push(full);
    }
}

/// Splits a `use` group's contents at its top-level commas.
fn split_top(inner: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

impl Crate {
    /// The file that defines what `path` names, seen from module `from`.
    fn resolve(&self, from: &[String], path: &[String], depth: usize) -> Option<Vec<String>> {
        let (mut module, mut segs) = match path.first()?.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (from.to_vec(), &path[1..]),
            _ => (from.to_vec(), path),
        };
        while segs.first().is_some_and(|s| s == "super") {
            module.pop()?;
            segs = &segs[1..];
        }
        for seg in segs {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.files.contains_key(&next) {
                module = next;
                continue;
            }
            // `seg` is an item of `module`: follow a re-export to where it is defined.
            if depth < 8 {
                if let Some(target) = self.reexport(&module, seg, depth) {
                    return Some(target);
                }
            }
            break;
        }
        Some(module)
    }

    /// Where module `module` re-exports `item` from (`pub use x::item`), if it does.
    fn reexport(&self, module: &[String], item: &str, depth: usize) -> Option<Vec<String>> {
        let (_, text) = self.files.get(module)?;
        let code = without_tests(text);
        for line in use_items_pub(&code) {
            let mut paths = Vec::new();
            expand(&line, &mut Vec::new(), &mut paths);
            for p in paths {
                if p.last().map(String::as_str) == Some(item) {
                    return self.resolve(module, &p, depth + 1);
                }
            }
        }
        None
    }

    /// The files each file imports from.
    fn graph(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut graph = BTreeMap::new();
        for (module, (_, text)) in &self.files {
            let code = without_tests(text);
            let children = declared_modules(&code);
            let mut deps = BTreeSet::new();
            for p in paths(&code, &children) {
                let p = if children.contains(&p[0]) {
                    std::iter::once("self".to_string()).chain(p).collect()
                } else {
                    p
                };
                if let Some(target) = self.resolve(module, &p, 0) {
                    if &target != module {
                        deps.insert(target);
                    }
                }
            }
            graph.insert(module.clone(), deps);
        }
        graph
    }
}

/// The text of each `pub use ...;` item.
fn use_items_pub(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("pub use ") {
        let after = &rest[at + 8..];
        let end = after.find(';').unwrap_or(after.len());
        out.push(after[..end].split_whitespace().collect::<Vec<_>>().join(""));
        rest = &after[end..];
    }
    out
}

/// The groups of files that import each other, directly or through others (the graph's
/// strongly connected components of more than one file).
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<_, _> = graph.keys().map(|n| (n.clone(), reach(n))).collect();
    let mut grouped = BTreeSet::new();
    let mut out = Vec::new();
    for n in graph.keys() {
        if grouped.contains(n) || !reaches[n].contains(n) {
            continue;
        }
        let group: Vec<Vec<String>> = reaches[n]
            .iter()
            .filter(|m| reaches[*m].contains(n))
            .cloned()
            .collect();
        grouped.extend(group.iter().cloned());
        out.push(group.iter().map(|m| name(m)).collect());
    }
    out
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[test]
fn no_file_imports_a_file_that_imports_it() {
    let mut problems = Vec::new();
    for (krate, c) in crates() {
        let graph = c.graph();
        assert!(graph.len() > 5, "{krate}: only {} files read", graph.len());
        for group in cycles(&graph) {
            problems.push(format!("{krate}: {}", group.join(", ")));
        }
    }
    assert!(
        problems.is_empty(),
        "files that import each other:\n{}",
        problems.join("\n")
    );
}

#[test]
fn files_are_short_and_say_what_they_are_for() {
    let mut problems = Vec::new();
    for (krate, c) in crates() {
        for (path, text) in c.files.values() {
            let lines = text.lines().count();
            let generated = text.contains("Generated by");
            if lines > MAX_LINES && !generated {
                problems.push(format!("{krate}: {} has {lines} lines", path.display()));
            }
            if !text.trim_start().starts_with("//!") {
                problems.push(format!("{krate}: {} has no module comment", path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_import_reader_sees_cycles() {
    let mut files = BTreeMap::new();
    let module = |code: &str| (PathBuf::new(), code.to_string());
    files.insert(
        vec![],
        module("//! root\nmod a;\nmod b;\npub use a::Thing;\n"),
    );
    files.insert(
        vec!["a".into()],
        module("//! a\nuse crate::b::{Other, self};\npub struct Thing;\n"),
    );
    files.insert(vec!["b".into()], module("//! b\npub struct Other;\nfn f() { let _ = crate::Thing; }\n#[cfg(test)]\nmod tests { use super::super::a; }\n"));
    let c = Crate { files };
    let graph = c.graph();
    assert!(graph[&vec!["a".to_string()]].contains(&vec!["b".to_string()]));
    // `crate::Thing` is a re-export of `a::Thing`: b imports a.
    assert!(graph[&vec!["b".to_string()]].contains(&vec!["a".to_string()]));
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".to_string()]]);
}
