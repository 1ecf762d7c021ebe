//! Where a template's variables come from.

use std::collections::HashMap;

/// Resolves a variable name to its value.
///
/// `name` arrives as written in the template (nested indexes already replaced by their
/// values), in whatever case the author used; implementations compare names
/// case-insensitively.
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<T: Lookup + ?Sized> Lookup for &T {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// Variables by name, compared case-insensitively, kept in insertion order.
///
/// Inserting a name that is already present (in any case) replaces its value and
/// keeps the first spelling and position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariableMap {
    entries: Vec<(String, String)>,
    by_key: HashMap<String, usize>,
}

impl VariableMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let name = name.into();
        let value = value.into();
        match self.by_key.get(&key(&name)) {
            Some(&i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                self.by_key.insert(key(&name), self.entries.len());
                self.entries.push((name, value));
                None
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let &i = self.by_key.get(&key(name))?;
        Some(&self.entries[i].1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(name, value)` pairs in insertion order, names spelled as first inserted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// The case-insensitive identity of a name.
pub(super) fn key(name: &str) -> String {
    name.to_lowercase()
}

impl Lookup for VariableMap {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

impl FromIterator<(String, String)> for VariableMap {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut map = Self::new();
        map.extend(iter);
        map
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for VariableMap {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        iter.into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }
}

impl Extend<(String, String)> for VariableMap {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_any_case() {
        let mut map = VariableMap::new();
        map.insert("Db.Password", "s3cret");
        assert_eq!(map.get("db.password"), Some("s3cret"));
        assert_eq!(map.lookup("DB.PASSWORD"), Some("s3cret"));
        assert_eq!(map.get("Db.User"), None);
    }

    #[test]
    fn inserting_again_replaces_the_value_and_keeps_the_first_spelling() {
        let mut map = VariableMap::new();
        assert_eq!(map.insert("Port", "80"), None);
        map.insert("Host", "web01");
        assert_eq!(map.insert("PORT", "8080"), Some("80".to_owned()));
        assert_eq!(map.len(), 2);
        let entries: Vec<_> = map.iter().collect();
        assert_eq!(entries, [("Port", "8080"), ("Host", "web01")]);
    }

    #[test]
    fn collects_from_owned_pairs() {
        let map: VariableMap = [("A".to_owned(), "1".to_owned())].into_iter().collect();
        assert_eq!(map.get("a"), Some("1"));
        assert!(!map.is_empty());
    }
}
