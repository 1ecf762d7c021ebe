//! Names of agents and environments, and agent tags: checked once at the edge and
//! returned in NFC (see [`crate::names`]).

use crate::names;

/// Longest agent name, environment name and tag.
pub const MAX_NAME: usize = 100;
/// Most tags an agent may have.
pub const MAX_TAGS: usize = 50;

/// An agent's name: letters, digits, `.`, `_` and `-`, like a host name.
pub fn check_agent_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("an agent needs a name".to_owned());
    }
    let name = &names::normalize(name).map_err(|e| format!("an agent's name {e}"))?;
    if name.chars().count() > MAX_NAME {
        return Err(format!("an agent's name has at most {MAX_NAME} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "agent name `{name}` holds `{bad}`; use letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(name.clone())
}

/// An environment's name: any printable text without leading or trailing spaces.
pub fn check_environment_name(name: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        return Err("an environment needs a name".to_owned());
    }
    let name = &names::normalize(name).map_err(|e| format!("an environment's name {e}"))?;
    if name.trim() != name {
        return Err(format!(
            "environment name `{name}` starts or ends with spaces"
        ));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!(
            "an environment's name has at most {MAX_NAME} characters"
        ));
    }
    Ok(name.clone())
}

/// Tags: each non-empty, without spaces or commas (they separate tags on command
/// lines), at most [`MAX_TAGS`]. Returns them sorted, without duplicates.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, String> {
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "an agent has at most {MAX_TAGS} tags, {} were given",
            tags.len()
        ));
    }
    let mut clean = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() {
            return Err("a tag cannot be empty".to_owned());
        }
        // The tag itself is not echoed: shown, it would hide or reverse what it holds.
        let tag = &names::normalize(tag).map_err(|e| format!("tag {} {e}", i + 1))?;
        if tag.chars().count() > MAX_NAME {
            return Err(format!("tag `{tag}` is longer than {MAX_NAME} characters"));
        }
        if let Some(bad) = tag
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == ',')
        {
            return Err(format!(
                "tag `{tag}` holds {bad:?}; tags cannot hold spaces or commas"
            ));
        }
        clean.push(tag.clone());
    }
    clean.sort();
    clean.dedup();
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        assert!(check_agent_name("web01.example-eu_2").is_ok());
        assert!(check_agent_name("").is_err());
        assert!(check_agent_name("web 01").unwrap_err().contains("` `"));
        assert!(check_agent_name(&"a".repeat(101)).is_err());
        assert!(check_environment_name("Production EU").is_ok());
        assert!(check_environment_name(" Production").is_err());
        assert!(check_environment_name("").is_err());
        assert_eq!(
            normalize_tags(&["web".into(), "api".into(), "web".into()]).unwrap(),
            ["api", "web"]
        );
        assert!(
            normalize_tags(&["a,b".into()])
                .unwrap_err()
                .contains("commas")
        );
        assert!(normalize_tags(&["".into()]).is_err());
        assert!(normalize_tags(&vec!["t".to_owned(); 51]).is_err());
    }

    #[test]
    fn names_and_tags_come_back_in_nfc_and_without_hidden_characters() {
        assert_eq!(check_agent_name("cafe\u{301}").unwrap(), "caf\u{e9}");
        assert_eq!(
            check_environment_name("Re\u{301}sume\u{301}").unwrap(),
            "R\u{e9}sum\u{e9}"
        );
        assert_eq!(
            normalize_tags(&["caf\u{e9}".into(), "cafe\u{301}".into()]).unwrap(),
            ["caf\u{e9}"]
        );
        let refused = normalize_tags(&["web".into(), "web\u{202e}".into()]).unwrap_err();
        assert!(
            refused.contains("tag 2 holds U+202E RIGHT-TO-LEFT OVERRIDE"),
            "{refused}"
        );
        assert!(!refused.contains('\u{202e}'), "{refused}");
        assert!(
            check_environment_name("Prod\u{200b}")
                .unwrap_err()
                .contains("U+200B ZERO WIDTH SPACE")
        );
        assert!(
            check_agent_name("web\u{ad}01")
                .unwrap_err()
                .contains("U+00AD")
        );
    }
}
