//! No import circles between modules: at every level of `src/`, the sibling modules
//! (`amo`, `services`, … under the crate; `amo::http`, `amo::tokens`, … under `amo`)
//! must depend on each other without a cycle. A module depends on a sibling when
//! its non-test code names it: a `use` (groups such as `use crate::{a, b::{c}}` and
//! `pub use` included) or an inline `crate::…` / `super::…` path. Comments, string
//! literals and `#[cfg(test)]` items (and the files of `#[cfg(test)] mod x;`) do not
//! count. ARCHITECTURE.md ("Layers") says which way each dependency points.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every module of the crate, by path, with its source file (`lib.rs` and `main.rs`
/// are both the root).
fn modules(src: &Path) -> BTreeMap<Module, Vec<PathBuf>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .expect("under src")
                .with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] {
                module.clear();
            }
            found.entry(module).or_insert_with(Vec::new).push(path);
        }
    }
    found
}

/// The source with comments and the insides of string and character literals
/// replaced by spaces, so that neither braces nor paths in them are read as code.
fn blank(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let blanked = |bytes: &[u8], out: &mut Vec<u8>| {
        out.extend(bytes.iter().map(|&c| if c == b'\n' { c } else { b' ' }));
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blanked(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blanked(&rest[..j], &mut out);
            i += j;
        } else if let Some(len) = raw_string(rest).filter(|_| i == 0 || !ident(b[i - 1])) {
            out.extend_from_slice(b"\"\"");
            blanked(&rest[2.min(len)..len], &mut out);
            i += len;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            out.push(b'"');
            blanked(&rest[1..end.saturating_sub(1).max(1)], &mut out);
            out.push(b'"');
            i += end;
        } else if let Some(len) = char_literal(rest) {
            out.push(b'\'');
            blanked(&rest[1..len - 1], &mut out);
            out.push(b'\'');
            i += len;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length of a raw (byte) string literal at the start of `s`: `r"…"`, `r#"…"#`, `br"…"`.
fn raw_string(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let body = start + hashes + 1;
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let end = s[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map_or(s.len(), |p| body + p + close.len());
    Some(end)
}

/// The length of a character literal at the start of `s` (`'a'`, `'\n'`, `'\u{7f}'`),
/// or None for a lifetime.
fn char_literal(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'\'') {
        return None;
    }
    if s.get(1) == Some(&b'\\') {
        let close = s[2..].iter().position(|&c| c == b'\'')?;
        return Some(close + 3);
    }
    // One (possibly multi-byte) character, then the closing quote.
    let text = std::str::from_utf8(&s[1..s.len().min(6)])
        .ok()
        .or_else(|| {
            (2..6)
                .rev()
                .find_map(|n| std::str::from_utf8(&s[1..s.len().min(n)]).ok())
        })?;
    let c = text.chars().next()?;
    let len = 1 + c.len_utf8();
    (s.get(len) == Some(&b'\'')).then_some(len + 1)
}

/// The blanked source without its `#[cfg(test)]` items, and the names of the test
/// modules it declares as files (`#[cfg(test)] mod tests;`).
fn without_tests(src: &str) -> (String, Vec<String>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut kept = String::with_capacity(src.len());
    let mut test_files = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(ATTR) {
        kept.push_str(&rest[..at]);
        let item = &rest[at + ATTR.len()..];
        let Some(stop) = item.find([';', '{']) else {
            rest = "";
            break;
        };
        if item.as_bytes()[stop] == b';' {
            let words: Vec<&str> = item[..stop].split_whitespace().collect();
            if let [.., "mod", name] = words.as_slice() {
                test_files.push((*name).to_owned());
            }
            rest = &item[stop + 1..];
            continue;
        }
        let mut depth = 0;
        let mut end = item.len();
        for (i, c) in item[stop..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = stop + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    kept.push_str(rest);
    (kept, test_files)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `prefix` joined with every path of a use tree (`a::{b, c::{d as e}, self}`).
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tree[start..]);
    for item in items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let join = |tail: &str| match (prefix.is_empty(), tail.is_empty()) {
            (true, _) => tail.to_owned(),
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}::{tail}"),
        };
        if let (Some(open), Some(close)) = (item.find('{'), item.rfind('}')) {
            let head = item[..open].trim_end_matches(':');
            expand(&join(head), &item[open + 1..close], out);
        } else {
            let item = item.split(" as ").next().unwrap_or(item);
            let item = item.split_whitespace().collect::<String>();
            out.push(if item == "self" {
                join("")
            } else {
                join(&item)
            });
        }
    }
}

/// Every `crate`, `super` or `self` path the code names: in `use` declarations and
/// inline (`crate::metrics::Metrics::new()`).
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let at_word = |i: usize| code[..i].chars().next_back().is_none_or(|c| !is_ident(c));
    for (i, _) in code.match_indices("use") {
        let after = &code[i + 3..];
        if !at_word(i) || !after.starts_with(char::is_whitespace) {
            continue;
        }
        let Some(end) = after.find(';') else { continue };
        let tree: String = after[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let tree = tree
            .replace(" :: ", "::")
            .replace(":: ", "::")
            .replace(" ::", "::");
        expand("", tree.trim(), &mut paths);
    }
    for root in ["crate::", "super::"] {
        for (i, _) in code.match_indices(root) {
            if !at_word(i) || code[..i].ends_with("::") {
                continue;
            }
            let end = code[i..]
                .char_indices()
                .find(|&(_, c)| !(is_ident(c) || c == ':'))
                .map_or(code.len(), |(j, _)| i + j);
            paths.push(code[i..end].trim_end_matches(':').to_owned());
        }
    }
    paths.retain(|p| {
        ["crate", "super", "self"]
            .iter()
            .any(|r| p == r || p.starts_with(&format!("{r}::")))
    });
    paths
}

/// The module a path from `from` names: its longest prefix that is a module.
fn resolve(from: &Module, path: &str, known: &BTreeSet<Module>) -> Option<Module> {
    let mut parts = path.split("::").filter(|p| !p.is_empty()).peekable();
    let mut full = match parts.peek() {
        Some(&"crate") => {
            parts.next();
            Vec::new()
        }
        Some(&"self") => {
            parts.next();
            from.clone()
        }
        Some(&"super") => {
            let mut base = from.clone();
            while parts.peek() == Some(&"super") {
                parts.next();
                base.pop();
            }
            base
        }
        _ => return None,
    };
    full.extend(parts.map(str::to_owned));
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| known.contains(m))
}

/// One dependency: `from` names `path`, which lies in module `to`.
struct Edge {
    from: Module,
    to: Module,
    path: String,
}

fn edges(src: &Path) -> Vec<Edge> {
    let modules = modules(src);
    let mut sources = BTreeMap::new();
    let mut test_modules = BTreeSet::new();
    for (module, files) in &modules {
        let mut code = String::new();
        for file in files {
            let text =
                fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let (kept, tests) = without_tests(&blank(&text));
            code.push_str(&kept);
            for name in tests {
                let mut test = module.clone();
                test.push(name);
                test_modules.insert(test);
            }
        }
        sources.insert(module.clone(), code);
    }
    let in_tests = |m: &Module| (1..=m.len()).any(|n| test_modules.contains(&m[..n]));
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    let mut found = Vec::new();
    for (from, code) in &sources {
        if in_tests(from) {
            continue;
        }
        for path in named_paths(code) {
            if let Some(to) = resolve(from, &path, &known) {
                if &to != from && !in_tests(&to) {
                    found.push(Edge {
                        from: from.clone(),
                        to,
                        path,
                    });
                }
            }
        }
    }
    found
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[v].min(s.low[w.as_str()]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w.as_str()) {
                let low = s.low[v].min(s.index[w.as_str()]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let at = s.stack.iter().rposition(|&x| x == v).expect("on the stack");
            let component: Vec<String> = s.stack.drain(at..).map(str::to_owned).collect();
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    let nodes: BTreeSet<&String> = graph.keys().chain(graph.values().flatten()).collect();
    for v in nodes {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found.iter_mut().for_each(|c| c.sort());
    state.found
}

/// Every cycle among siblings, at every level, each with the dependencies that close it.
fn import_cycles(src: &Path) -> Vec<String> {
    let edges = edges(src);
    let mut parents = BTreeSet::new();
    for e in &edges {
        for m in [&e.from, &e.to] {
            (0..m.len()).for_each(|n| {
                parents.insert(m[..n].to_vec());
            });
        }
    }
    let mut report = Vec::new();
    for parent in parents {
        let depth = parent.len();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut why: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for e in &edges {
            if e.from.len() <= depth || e.to.len() <= depth {
                continue;
            }
            if e.from[..depth] != parent[..]
                || e.to[..depth] != parent[..]
                || e.from[depth] == e.to[depth]
            {
                continue;
            }
            let (a, b) = (e.from[depth].clone(), e.to[depth].clone());
            graph.entry(a.clone()).or_default().insert(b.clone());
            why.entry((a, b)).or_default().insert(format!(
                "{} names {}",
                e.from.join("::"),
                e.path
            ));
        }
        for component in cycles(&graph) {
            let name = if parent.is_empty() {
                "crate".to_owned()
            } else {
                parent.join("::")
            };
            let mut text = format!("under {name}: {}", component.join(", "));
            for ((a, b), reasons) in &why {
                if component.contains(a) && component.contains(b) {
                    let shown: Vec<&str> = reasons.iter().take(3).map(String::as_str).collect();
                    let more = reasons.len() - shown.len();
                    let more = if more > 0 {
                        format!(" (and {more} more)")
                    } else {
                        String::new()
                    };
                    text.push_str(&format!("\n    {a} -> {b}: {}{more}", shown.join("; ")));
                }
            }
            report.push(text);
        }
    }
    report
}

#[test]
fn sibling_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let report = import_cycles(&src);
    assert!(
        report.is_empty(),
        "import cycles between modules:\n{}",
        report.join("\n")
    );
}

#[cfg(test)]
mod checker {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().expect("a parent")).expect("create dir");
            fs::write(path, text).expect("write");
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("amosync-layers-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn use_groups_are_expanded() {
        let mut out = Vec::new();
        expand("", "crate::{a::X, b::{c, d as e}, self}", &mut out);
        assert_eq!(out, ["crate::a::X", "crate::b::c", "crate::b::d", "crate"]);
    }

    #[test]
    fn comments_and_strings_name_nothing() {
        let code = blank("// use crate::a;\nlet s = \"crate::b::X\"; let c = '{'; /* crate::c::Y */ r#\"crate::d::Z\"#;");
        assert!(named_paths(&code).is_empty(), "{code}");
    }

    #[test]
    fn a_cycle_through_a_group_and_a_pub_use_is_found_and_test_code_is_not() {
        let dir = scratch("cycle");
        write(
            &dir,
            &[
                ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
                ("a.rs", "use crate::{b::Thing, c};\n"),
                ("b.rs", "pub use super::c::Other;\npub struct Thing;\n"),
                ("c.rs", "pub struct Other;\n#[cfg(test)]\nmod tests { use crate::a; }\n#[cfg(test)]\nmod more;\n"),
                ("c/more.rs", "use crate::a::*;\n"),
            ],
        );
        assert!(import_cycles(&dir).is_empty());
        write(&dir, &[("c.rs", "pub struct Other(crate::a::Marker);\n")]);
        write(
            &dir,
            &[("a.rs", "use crate::{b::Thing, c};\npub struct Marker;\n")],
        );
        let report = import_cycles(&dir);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(
            report[0].starts_with("under crate: a, b, c"),
            "{}",
            report[0]
        );
    }
}
