//! The list-valued settings' types: key prefixes, cacheable command names and ACL user names,
//! each comma-separated as text and an array in TOML.
//!
//! Owns parsing and display only, as [`super::values`] does for the other types. Never decides
//! what a prefix or a name does (the cache rules and the session do).

use super::values::Value;

/// Key prefixes: comma-separated as text, an array in TOML; none may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefixes(pub Vec<String>);

fn prefix(p: &str) -> Result<String, String> {
    if p.is_empty() {
        Err("an empty prefix (it would match every key)".into())
    } else {
        Ok(p.to_string())
    }
}

impl Value for Prefixes {
    const KIND: &'static str = "PREFIX,...";
    const BAD: &'static str = "a,,b";

    fn parse(text: &str) -> Result<Self, String> {
        list(text, prefix).map(Prefixes)
    }

    fn show(&self) -> String {
        self.0.join(",")
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        toml_list(value, prefix).map(Prefixes)
    }
}

/// ACL user names: comma-separated as text, an array in TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNames(pub Vec<String>);

fn user_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!("{name:?} is not a user name"))
    } else {
        Ok(name.to_string())
    }
}

impl Value for UserNames {
    const KIND: &'static str = "USER,...";
    const BAD: &'static str = "a,,b";

    fn parse(text: &str) -> Result<Self, String> {
        list(text, user_name).map(UserNames)
    }

    fn show(&self) -> String {
        self.0.join(",")
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        toml_list(value, user_name).map(UserNames)
    }
}

/// Names of reads the cache may answer: comma-separated as text, an array in TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheableCommands(pub Vec<String>);

fn cacheable(name: &str) -> Result<String, String> {
    if crate::command::is_cacheable(name) {
        Ok(name.to_ascii_uppercase())
    } else {
        Err(format!("{name:?} is not a read the cache answers"))
    }
}

impl Value for CacheableCommands {
    const KIND: &'static str = "COMMAND,...";
    const BAD: &'static str = "GET,SET";

    fn parse(text: &str) -> Result<Self, String> {
        list(text, cacheable).map(CacheableCommands)
    }

    fn show(&self) -> String {
        self.0.join(",")
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        toml_list(value, cacheable).map(CacheableCommands)
    }
}

/// Splits a comma-separated list (empty text: an empty list) and checks each item.
fn list(text: &str, item: fn(&str) -> Result<String, String>) -> Result<Vec<String>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(|s| item(s.trim())).collect()
}

/// A TOML array of strings, each item checked as it is (so it may hold a comma), or one string
/// read as a comma-separated list.
fn toml_list(
    value: &toml::Value,
    item: fn(&str) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    match value {
        toml::Value::String(s) => list(s, item),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => item(s),
                other => Err(format!("expected strings, not {}", other.type_str())),
            })
            .collect(),
        other => Err(format!(
            "expected a list of strings, not {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_refuse_empty_items_and_unknown_commands() {
        assert_eq!(Prefixes::parse(""), Ok(Prefixes(vec![])));
        assert_eq!(
            Prefixes::parse("user:, item:"),
            Ok(Prefixes(vec!["user:".into(), "item:".into()]))
        );
        assert!(Prefixes::parse("a,,b").is_err());
        let arr = toml::Value::Array(vec!["a,b".into(), "c".into()]);
        assert_eq!(
            Prefixes::from_toml(&arr),
            Ok(Prefixes(vec!["a,b".into(), "c".into()]))
        );
        assert!(Prefixes::from_toml(&toml::Value::Array(vec!["".into()])).is_err());
        assert_eq!(
            CacheableCommands::parse("get,hgetall"),
            Ok(CacheableCommands(vec!["GET".into(), "HGETALL".into()]))
        );
        assert!(CacheableCommands::parse("GET,SET").is_err());
        assert_eq!(
            UserNames::parse("ops, app"),
            Ok(UserNames(vec!["ops".into(), "app".into()]))
        );
        assert!(UserNames::parse("a b").is_err() && UserNames::parse("a,,b").is_err());
    }
}
