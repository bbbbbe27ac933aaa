//! The alert rules and the Grafana dashboard may only name metrics amosync exposes:
//! a renamed or removed metric would otherwise leave an alert that never fires and
//! a panel that stays empty, and nobody would notice until the outage.

use std::collections::BTreeSet;

use amosync::metrics::Metrics;

const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yml");
const DASHBOARD: &str = include_str!("../deploy/grafana/amosync.json");

/// Metrics Prometheus itself records for every target.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

/// PromQL words that are not metric names (besides `LABEL_LISTS`, checked first).
const KEYWORDS: [&str; 20] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "inf",
    "nan",
    "atan2",
];

/// Words after which a parenthesised list holds label names, not expressions.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers and ranges that are neither functions, keywords, numbers nor label lists.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let mut quote = None;
                while i < chars.len() && (quote.is_some() || chars[i] != close) {
                    match (quote, chars[i]) {
                        (None, q @ ('"' | '\'' | '`')) => quote = Some(q),
                        (Some(_), '\\') => i += 1,
                        (Some(q), ch) if ch == q => quote = None,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_label_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_label_list = false;
                i += 1;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if LABEL_LISTS.contains(&word.as_str()) {
                    skip_label_list = true;
                } else if next != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every `expr:` of the rules file, block scalars (`expr: |`) included.
fn rule_expressions(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !matches!(rest, "|" | "|-" | ">" | ">-") {
            exprs.push(rest.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[n + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .copied()
            .collect();
        exprs.push(block.join("\n"));
    }
    exprs
}

/// Every `expr` of every panel's targets, rows' nested panels included.
fn dashboard_expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_expressions(v, out)),
        _ => {}
    }
}

/// A referenced name is exposed when it is a registered metric or one of the
/// series a histogram adds to its name.
fn unexposed(referenced: &BTreeSet<String>, exposed: &[String]) -> Vec<String> {
    referenced
        .iter()
        .filter(|name| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            !PROMETHEUS_OWN.contains(&name.as_str())
                && !exposed.iter().any(|e| e == *name || e == base)
        })
        .cloned()
        .collect()
}

#[test]
fn the_expression_reader_finds_metrics_and_nothing_else() {
    let found = metric_names(
        r#"sum by (job, le) (rate(a_total{status=~"5..", x="y{z}"}[5m])) / on (instance) group_left(mode) b_seconds > 10e9 or max(c) > bool 0.5 and up offset 5m"#,
    );
    let want: BTreeSet<String> = ["a_total", "b_seconds", "c", "up"].map(String::from).into();
    assert_eq!(found, want);
}

#[test]
fn alert_rules_name_only_metrics_amosync_exposes() {
    let exposed = Metrics::new().expect("registry").names().to_vec();
    let exprs = rule_expressions(ALERTS);
    assert!(exprs.len() >= 12, "rules read: {exprs:?}");
    let referenced: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(
        referenced.len() >= 12,
        "metrics read from the rules: {referenced:?}"
    );
    let missing = unexposed(&referenced, &exposed);
    assert!(
        missing.is_empty(),
        "alerts.yml names metrics amosync does not expose: {missing:?}"
    );
}

#[test]
fn dashboard_names_only_metrics_amosync_exposes() {
    let exposed = Metrics::new().expect("registry").names().to_vec();
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut exprs = Vec::new();
    dashboard_expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "expressions read: {exprs:?}");
    let referenced: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let missing = unexposed(&referenced, &exposed);
    assert!(
        missing.is_empty(),
        "amosync.json names metrics amosync does not expose: {missing:?}"
    );
}
