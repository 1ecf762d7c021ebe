//! Packages of the built-in feed: ids, versions, and the `<id>.<version>.<ext>` file
//! names that build servers produce.

use std::cmp::Ordering;

/// A package id: 1-100 characters of letters, digits, `.`, `_` and `-`, starting with
/// a letter, digit or `_`, without `..` or a trailing `.` (ids become blob keys and
/// file names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(String);

impl PackageId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("`{s}` is not a package id: {why}"));
        if s.is_empty() || s.len() > 100 {
            return bad("it must be 1 to 100 characters");
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad("use only letters, digits, `.`, `_` and `-`");
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            return bad("it must start with a letter, a digit or `_`");
        }
        if s.contains("..") || s.ends_with('.') {
            return bad("it must not contain `..` or end with `.`");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PackageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version: 1-4 numbers (`1`, `1.2`, `1.2.3`, `1.2.3.4`), an optional pre-release
/// (`-beta.2`) and optional build metadata (`+abc`). Versions order as SemVer does:
/// by number, a pre-release before its release; build metadata does not order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackageVersion {
    text: String,
    numbers: Vec<u64>,
    pre: Vec<String>,
}

impl PackageVersion {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{s}` is not a version: {why} (write e.g. 1.2.3 or 2.0.0-beta.1)"
            ))
        };
        if s.is_empty() || s.len() > 64 {
            return bad("it must be 1 to 64 characters");
        }
        let (rest, build) = match s.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (s, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 4 {
            return bad("it has more than four numbers");
        }
        let mut numbers = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() || !part.chars().all(|c| c.is_ascii_digit()) {
                return bad("it must start with numbers separated by dots");
            }
            match part.parse() {
                Ok(n) => numbers.push(n),
                Err(_) => return bad("a number is too large"),
            }
        }
        let identifiers = |text: &str| {
            text.split('.').all(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        };
        if pre.is_some_and(|p| !identifiers(p)) {
            return bad("the pre-release after `-` must be dot-separated letters, digits and `-`");
        }
        if build.is_some_and(|b| !identifiers(b)) {
            return bad(
                "the build metadata after `+` must be dot-separated letters, digits and `-`",
            );
        }
        Ok(Self {
            text: s.to_owned(),
            numbers,
            pre: pre
                .map(|p| p.split('.').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The `i`th number (0-based); missing numbers are 0, as `1.2` is `1.2.0`.
    pub fn number(&self, i: usize) -> u64 {
        self.numbers.get(i).copied().unwrap_or(0)
    }

    /// The SemVer order: numbers, then pre-release; `1.0` equals `1.0.0+build`.
    pub fn cmp_precedence(&self, other: &Self) -> Ordering {
        for i in 0..4 {
            match self.number(i).cmp(&other.number(i)) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => compare_pre(&self.pre, &other.pre),
        }
    }

    /// A text that sorts byte-wise (`COLLATE "C"`) as versions order, so the database
    /// can page versions newest first.
    pub fn sort_key(&self) -> String {
        let mut key = String::new();
        for i in 0..4 {
            let n = self.numbers.get(i).copied().unwrap_or(0);
            key.push_str(&format!("{n:020}."));
        }
        if self.pre.is_empty() {
            // `~` sorts after `-`: a release after its pre-releases.
            key.push('~');
        } else {
            key.push('-');
            let ids: Vec<String> = self
                .pre
                .iter()
                .map(|id| match id.parse::<u64>() {
                    Ok(n) => format!("0{n:020}"),
                    Err(_) => format!("1{id}"),
                })
                .collect();
            key.push_str(&ids.join("."));
        }
        key.push(' ');
        key.push_str(&self.text);
        key
    }
}

impl std::fmt::Display for PackageVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for PackageVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        // Versions that differ only in build metadata or spelling (1.0 vs 1.0.0)
        // still need a stable order to be distinct.
        self.cmp_precedence(other)
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for PackageVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The archive formats the feed accepts, longest first so `.tar.gz` wins over `.gz`.
pub const PACKAGE_EXTENSIONS: [&str; 9] = [
    "tar.bz2", "tar.gz", "tar.xz", "nupkg", "tgz", "zip", "tar", "jar", "war",
];

/// What a package file's name says: `MyApp.Web.1.2.3.zip` is `MyApp.Web` 1.2.3, a zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFileName {
    pub id: PackageId,
    pub version: PackageVersion,
    pub extension: &'static str,
}

impl PackageFileName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let expected = "name the file <id>.<version>.<extension>, e.g. MyApp.Web.1.2.3.zip";
        let extension = PACKAGE_EXTENSIONS
            .iter()
            .find(|ext| {
                name.len() > ext.len() + 1
                    && name.ends_with(*ext)
                    && name.as_bytes()[name.len() - ext.len() - 1] == b'.'
            })
            .ok_or_else(|| {
                format!(
                    "`{name}` does not end in a package extension ({}); {expected}",
                    PACKAGE_EXTENSIONS.join(", ")
                )
            })?;
        let stem = &name[..name.len() - extension.len() - 1];
        // The version starts at the first `.` followed by something that reads as one.
        for (at, _) in stem.match_indices('.') {
            let (id, version) = (&stem[..at], &stem[at + 1..]);
            if !version.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            if let (Ok(id), Ok(version)) = (PackageId::parse(id), PackageVersion::parse(version)) {
                return Ok(Self {
                    id,
                    version,
                    extension,
                });
            }
        }
        Err(format!(
            "cannot read an id and a version from `{name}`; {expected}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> PackageVersion {
        PackageVersion::parse(s).unwrap()
    }

    #[test]
    fn versions_order_as_semver_does() {
        let mut versions: Vec<_> = [
            "1.10.0",
            "1.2.0",
            "1.2.0-beta.2",
            "1.2.0-beta.10",
            "1.2.0-alpha",
            "2",
            "1.2.0.1",
        ]
        .into_iter()
        .map(v)
        .collect();
        versions.sort();
        let text: Vec<_> = versions.iter().map(PackageVersion::as_str).collect();
        assert_eq!(
            text,
            [
                "1.2.0-alpha",
                "1.2.0-beta.2",
                "1.2.0-beta.10",
                "1.2.0",
                "1.2.0.1",
                "1.10.0",
                "2"
            ]
        );
    }

    #[test]
    fn sort_keys_sort_as_versions_do() {
        let mut versions: Vec<_> = [
            "1.10.0",
            "1.2.0",
            "1.2.0-beta.2",
            "1.2.0-beta.10",
            "1.2.0-alpha",
            "2",
            "1.2.0.1",
            "1.2.0-alpha.1",
            "1.2.0-alpha.b",
            "1.2.0-alphab",
            "1.2.0+build",
        ]
        .into_iter()
        .map(v)
        .collect();
        versions.sort();
        let mut by_key = versions.clone();
        by_key.sort_by_key(PackageVersion::sort_key);
        assert_eq!(versions, by_key);
    }

    #[test]
    fn bad_versions_and_ids_are_explained() {
        for bad in [
            "",
            "v1",
            "1..2",
            "1.2.3.4.5",
            "1.0-",
            "1.0+",
            "1.0-be ta",
            "1.x",
        ] {
            assert!(PackageVersion::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", ".hidden", "a..b", "a/b", "x.", "-x", &"a".repeat(101)] {
            assert!(PackageId::parse(bad).is_err(), "{bad}");
        }
        let err = PackageId::parse("../etc").unwrap_err();
        assert!(err.starts_with("`../etc` is not a package id"), "{err}");
    }

    #[test]
    fn file_names_split_into_id_version_and_extension() {
        let parsed = PackageFileName::parse("MyApp.Web.1.2.3.zip").unwrap();
        assert_eq!(parsed.id.as_str(), "MyApp.Web");
        assert_eq!(parsed.version.as_str(), "1.2.3");
        assert_eq!(parsed.extension, "zip");
        let parsed = PackageFileName::parse("api.2.0.0-beta.1.tar.gz").unwrap();
        assert_eq!(
            (
                parsed.id.as_str(),
                parsed.version.as_str(),
                parsed.extension
            ),
            ("api", "2.0.0-beta.1", "tar.gz")
        );
        let parsed = PackageFileName::parse("App2.x.3.1.nupkg").unwrap();
        assert_eq!(
            (parsed.id.as_str(), parsed.version.as_str()),
            ("App2.x", "3.1")
        );
        for bad in ["app.zip", "app.1.0.exe", "app.v1.zip", ".zip", "app.1.0"] {
            assert!(PackageFileName::parse(bad).is_err(), "{bad}");
        }
    }
}
