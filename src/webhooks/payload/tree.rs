//! The generic tree both body encodings decode into: PHP-style nested arrays,
//! where lists are maps keyed by index, so the interpretation is written once.
//! A form body's tree borrows its names and values from the decoded pairs: every
//! delivery is parsed at the acknowledgement and again when applied, so a copy of
//! each key segment would be most of the parsing's cost.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::brackets::{abbreviate, split_key_into, Segment, MAX_SEGMENTS};
use crate::webhooks::PayloadError;

/// Most values one body may carry: far above any real delivery, it bounds the memory
/// a hostile body can take.
pub(super) const MAX_VALUES: usize = 200_000;

/// A map key. Canonical decimal integers are indices, as in PHP arrays, so that lists
/// iterate by numeric value ("9" before "10") and come before named keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key<'a> {
    Index(u64),
    Name(Cow<'a, str>),
}

impl<'a> Key<'a> {
    pub(super) fn parse(raw: &'a str) -> Key<'a> {
        Key::from_cow(Cow::Borrowed(raw))
    }

    fn from_cow(raw: Cow<'a, str>) -> Key<'a> {
        let canonical = match raw.as_bytes() {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        match canonical.then(|| raw.parse::<u64>()) {
            Some(Ok(index)) => Key::Index(index),
            _ => Key::Name(raw),
        }
    }
}

pub(super) type Map<'a> = BTreeMap<Key<'a>, Node<'a>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node<'a> {
    Leaf(Cow<'a, str>),
    Map(Map<'a>),
}

impl<'a> Node<'a> {
    /// The child named `name` (a field name of the layout), when this node is a map
    /// that has one.
    pub(super) fn get(&self, name: &'static str) -> Option<&Node<'a>> {
        match self {
            Node::Map(map) => map.get(&Key::parse(name)),
            Node::Leaf(_) => None,
        }
    }

    pub(super) fn leaf(&self) -> Option<&str> {
        match self {
            Node::Leaf(value) => Some(value),
            Node::Map(_) => None,
        }
    }

    /// The value of the leaf child named `name`.
    pub(super) fn text(&self, name: &'static str) -> Option<&str> {
        self.get(name).and_then(Node::leaf)
    }

    /// Children in index order; a leaf has none.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&Key<'a>, &Node<'a>)> {
        let map = match self {
            Node::Map(map) => Some(map),
            Node::Leaf(_) => None,
        };
        map.into_iter().flatten()
    }

    pub(super) fn children(&self) -> impl Iterator<Item = &Node<'a>> {
        self.entries().map(|(_, child)| child)
    }
}

/// Builds the tree from decoded form pairs, borrowing from them. A repeated key keeps
/// its last value, as in PHP, also when one is a value and the other nested keys:
/// AmoCRM sends note bodies with both `[note][type]=3` and `[note][type][message_uuid]`.
pub(super) fn from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Node<'a>, PayloadError> {
    let mut root = Map::new();
    let mut path = Vec::new();
    for (count, (key, value)) in pairs.into_iter().enumerate() {
        if count == MAX_VALUES {
            return Err(too_many_values());
        }
        if split_key_into(key, &mut path)? {
            insert(&mut root, &path, Cow::Borrowed(value)).map_err(|conflict| {
                PayloadError::Malformed(format!("key `{}` {conflict}", abbreviate(key)))
            })?;
        }
    }
    Ok(Node::Map(root))
}

/// Builds the tree from a JSON object under the same limits as a form body; scalars become
/// the strings a form body would carry, and `null` an empty string.
pub(super) fn from_json(root: serde_json::Value) -> Result<Node<'static>, PayloadError> {
    let serde_json::Value::Object(object) = root else {
        return Err(PayloadError::Malformed("JSON body is not an object".into()));
    };
    let mut budget = MAX_VALUES;
    convert_object(object, 0, &mut budget).map(Node::Map)
}

fn convert_object(
    object: serde_json::Map<String, serde_json::Value>,
    depth: usize,
    budget: &mut usize,
) -> Result<Map<'static>, PayloadError> {
    object
        .into_iter()
        .map(|(name, value)| {
            let key = Key::from_cow(Cow::Owned(name));
            Ok((key, convert(value, depth + 1, budget)?))
        })
        .collect()
}

fn convert(
    value: serde_json::Value,
    depth: usize,
    budget: &mut usize,
) -> Result<Node<'static>, PayloadError> {
    use serde_json::Value;

    if depth > MAX_SEGMENTS {
        return Err(PayloadError::Malformed(format!(
            "JSON body is nested deeper than {MAX_SEGMENTS} levels"
        )));
    }
    let leaf = match value {
        Value::Object(object) => return convert_object(object, depth, budget).map(Node::Map),
        Value::Array(items) => {
            let mut map = Map::new();
            for (index, item) in (0u64..).zip(items) {
                map.insert(Key::Index(index), convert(item, depth + 1, budget)?);
            }
            return Ok(Node::Map(map));
        }
        Value::String(text) => text,
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => String::new(),
    };
    *budget = budget.checked_sub(1).ok_or_else(too_many_values)?;
    Ok(Node::Leaf(Cow::Owned(leaf)))
}

fn too_many_values() -> PayloadError {
    PayloadError::Malformed(format!("body carries more than {MAX_VALUES} values"))
}

fn insert<'a>(
    root: &mut Map<'a>,
    path: &[Segment<'a>],
    value: Cow<'a, str>,
) -> Result<(), &'static str> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut map = root;
    for segment in parents {
        let key = resolve(map, segment)?;
        let node = map.entry(key).or_insert_with(|| Node::Map(Map::new()));
        if let Node::Leaf(_) = node {
            *node = Node::Map(Map::new());
        }
        let Node::Map(child) = node else {
            return Err("nests under a value");
        };
        map = child;
    }
    let key = resolve(map, last)?;
    map.insert(key, Node::Leaf(value));
    Ok(())
}

/// `[]` takes the index after the largest one present, as PHP does.
fn resolve<'a>(map: &Map<'a>, segment: &Segment<'a>) -> Result<Key<'a>, &'static str> {
    match segment {
        Segment::Named(name) => Ok(Key::parse(name)),
        Segment::Append => {
            let last = map.range(..Key::Name(Cow::Borrowed(""))).next_back();
            match last {
                Some((Key::Index(index), _)) => index
                    .checked_add(1)
                    .map(Key::Index)
                    .ok_or("appends past the largest possible index"),
                _ => Ok(Key::Index(0)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree<'a>(pairs: &'a [(&'a str, &'a str)]) -> Result<Node<'a>, PayloadError> {
        from_pairs(pairs.iter().copied())
    }

    fn owned(pairs: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn leaves<'a>(node: &'a Node<'_>) -> Vec<&'a str> {
        node.children().filter_map(Node::leaf).collect()
    }

    #[test]
    fn indexed_lists_iterate_by_numeric_value_not_lexically() {
        let pairs: Vec<(String, String)> = [10, 9, 2, 100, 0, 1]
            .iter()
            .map(|i| (format!("list[{i}]"), i.to_string()))
            .collect();
        let root = from_pairs(owned(&pairs)).unwrap();
        let list = root.get("list").unwrap();
        assert_eq!(leaves(list), ["0", "1", "2", "9", "10", "100"]);
    }

    #[test]
    fn indices_come_before_names_and_non_canonical_numbers_stay_names() {
        let root = tree(&[
            ("a[b]", "b"),
            ("a[07]", "07"),
            ("a[7]", "7"),
            ("a[-1]", "-1"),
        ])
        .unwrap();
        let a = root.get("a").unwrap();
        assert_eq!(leaves(a), ["7", "-1", "07", "b"]);
        assert_eq!(a.text("7"), Some("7"));
        assert_eq!(a.text("07"), Some("07"));
    }

    #[test]
    fn empty_brackets_append_after_the_largest_index() {
        let root = tree(&[
            ("t[]", "a"),
            ("t[5]", "b"),
            ("t[]", "c"),
            ("t[x]", "d"),
            ("t[]", "e"),
        ])
        .unwrap();
        let t = root.get("t").unwrap();
        assert_eq!(t.text("0"), Some("a"));
        assert_eq!(t.text("5"), Some("b"));
        assert_eq!(t.text("6"), Some("c"));
        assert_eq!(t.text("7"), Some("e"));
    }

    #[test]
    fn empty_brackets_in_the_middle_start_a_new_item_each_time() {
        let root = tree(&[("t[][id]", "1"), ("t[][id]", "2")]).unwrap();
        let ids: Vec<_> = root
            .get("t")
            .unwrap()
            .children()
            .filter_map(|c| c.text("id"))
            .collect();
        assert_eq!(ids, ["1", "2"]);
    }

    #[test]
    fn appending_past_the_largest_index_is_malformed_not_a_panic() {
        let result = tree(&[("t[18446744073709551615]", "x"), ("t[]", "y")]);
        assert!(matches!(result, Err(PayloadError::Malformed(_))));
    }

    #[test]
    fn a_key_that_is_both_a_value_and_a_map_keeps_the_last_as_php_does() {
        let root = tree(&[("a", "1"), ("a[b]", "2")]).unwrap();
        assert_eq!(root.get("a").and_then(|a| a.text("b")), Some("2"));
        let root = tree(&[("a[b]", "2"), ("a", "1")]).unwrap();
        assert_eq!(root.text("a"), Some("1"));
    }

    #[test]
    fn a_repeated_value_keeps_the_last_one() {
        let root = tree(&[("a[b]", "1"), ("a[b]", "2")]).unwrap();
        assert_eq!(root.get("a").and_then(|a| a.text("b")), Some("2"));
    }

    #[test]
    fn keys_deeper_than_the_limit_are_malformed() {
        let ok = format!("a{}", "[0]".repeat(MAX_SEGMENTS - 1));
        assert!(tree(&[(&ok, "x")]).is_ok());
        let too_deep = format!("a{}", "[0]".repeat(MAX_SEGMENTS));
        assert!(matches!(
            tree(&[(&too_deep, "x")]),
            Err(PayloadError::Malformed(_))
        ));
    }

    #[test]
    fn more_values_than_the_limit_are_malformed() {
        let pairs: Vec<_> = (0..=MAX_VALUES)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(matches!(
            from_pairs(owned(&pairs)),
            Err(PayloadError::Malformed(_))
        ));
        assert!(from_pairs(owned(&pairs[1..])).is_ok());
    }

    #[test]
    fn json_lists_and_index_keyed_objects_give_the_same_tree() {
        let from_list = from_json(serde_json::json!({"a": [{"id": 1}, {"id": "2"}]})).unwrap();
        let from_object =
            from_json(serde_json::json!({"a": {"1": {"id": 2}, "0": {"id": "1"}}})).unwrap();
        assert_eq!(from_list, from_object);
        let from_form = tree(&[("a[0][id]", "1"), ("a[1][id]", "2")]).unwrap();
        assert_eq!(from_list, from_form);
    }

    #[test]
    fn json_scalars_become_form_strings() {
        let root =
            from_json(serde_json::json!({"n": 1.5, "t": true, "f": false, "z": null})).unwrap();
        assert_eq!(root.text("n"), Some("1.5"));
        assert_eq!(root.text("t"), Some("true"));
        assert_eq!(root.text("f"), Some("false"));
        assert_eq!(root.text("z"), Some(""));
    }

    #[test]
    fn json_that_is_not_an_object_or_is_too_deep_is_malformed() {
        assert!(matches!(
            from_json(serde_json::json!([1])),
            Err(PayloadError::Malformed(_))
        ));
        let mut deep = serde_json::json!("x");
        for _ in 0..MAX_SEGMENTS {
            deep = serde_json::json!({ "a": deep });
        }
        assert!(from_json(deep.clone()).is_ok());
        let too_deep = serde_json::json!({ "a": deep });
        assert!(matches!(
            from_json(too_deep),
            Err(PayloadError::Malformed(_))
        ));
    }
}
