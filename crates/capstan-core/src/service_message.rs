//! Service messages: lines a script prints to talk to Capstan, such as
//! `##capstan[set-output name='Ready' value='True']`.
//!
//! Values are quoted with `'`; inside them `|` escapes the next character
//! (`|'` quote, `||` bar, `|n` newline, `|r` carriage return, `|[` and `|]` brackets),
//! as in the service messages of other build and deploy tools.

use std::collections::BTreeMap;

const START: &str = "##capstan[";

/// Longest name of an output variable.
pub const MAX_OUTPUT_NAME: usize = 200;

/// A message a script sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceMessage {
    SetOutput { name: String, value: String },
}

/// `None` when the line is ordinary output, else the message or why it is malformed.
pub fn parse(line: &str) -> Option<Result<ServiceMessage, String>> {
    let rest = line.trim().strip_prefix(START)?;
    Some(parse_body(rest))
}

fn parse_body(rest: &str) -> Result<ServiceMessage, String> {
    let Some(body) = rest.strip_suffix(']') else {
        return Err("a service message must end with `]`".to_owned());
    };
    let (name, attributes) = match body.split_once(char::is_whitespace) {
        Some((name, attributes)) => (name, attributes),
        None => (body, ""),
    };
    let attributes = parse_attributes(attributes)?;
    match name {
        "set-output" => {
            let name = attributes
                .get("name")
                .ok_or("set-output needs name='…'")?
                .clone();
            let value = attributes
                .get("value")
                .ok_or("set-output needs value='…'")?
                .clone();
            check_output_name(&name)?;
            if let Some(other) = attributes.keys().find(|k| *k != "name" && *k != "value") {
                return Err(format!("set-output has no attribute `{other}`"));
            }
            Ok(ServiceMessage::SetOutput { name, value })
        }
        "" => Err("a service message needs a name, e.g. set-output".to_owned()),
        other => Err(format!(
            "there is no service message `{other}`; the one there is: set-output"
        )),
    }
}

/// An output variable's name: 1 to 200 characters, no control characters.
pub fn check_output_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("an output variable needs a name".to_owned());
    }
    if name.chars().count() > MAX_OUTPUT_NAME {
        return Err(format!(
            "an output variable's name has at most {MAX_OUTPUT_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("an output variable's name cannot hold control characters".to_owned());
    }
    Ok(())
}

fn parse_attributes(mut text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut found = BTreeMap::new();
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(found);
        }
        let Some((key, rest)) = text.split_once('=') else {
            return Err(format!("expected name='value' at `{text}`"));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("`{key}` is not an attribute name"));
        }
        let Some(quoted) = rest.strip_prefix('\'') else {
            return Err(format!("the value of `{key}` must be in single quotes"));
        };
        let (value, rest) = unquote(quoted).ok_or_else(|| {
            format!("the value of `{key}` has no closing quote (write a quote inside as |')")
        })?;
        if found.insert(key.to_owned(), value).is_some() {
            return Err(format!("`{key}` is given twice"));
        }
        text = rest;
    }
}

/// Reads up to the closing quote, undoing escapes; returns the value and what follows.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => return Some((value, &text[i + 1..])),
            '|' => {
                let (_, escaped) = chars.next()?;
                value.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    other => other,
                });
            }
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &str, value: &str) -> Option<Result<ServiceMessage, String>> {
        Some(Ok(ServiceMessage::SetOutput {
            name: name.to_owned(),
            value: value.to_owned(),
        }))
    }

    #[test]
    fn ordinary_lines_are_not_messages() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("## capstan[set-output]"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn set_output_with_escapes() {
        assert_eq!(
            parse("##capstan[set-output name='Ready' value='True']"),
            output("Ready", "True")
        );
        assert_eq!(
            parse("  ##capstan[set-output value='it|'s |[a|] |n|| b' name='Note']"),
            output("Note", "it's [a] \n| b")
        );
        assert_eq!(
            parse("##capstan[set-output name='Empty' value='']"),
            output("Empty", "")
        );
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let err = |line: &str| parse(line).unwrap().unwrap_err();
        assert_eq!(
            err("##capstan[set-output name='A' value='B'"),
            "a service message must end with `]`"
        );
        assert_eq!(
            err("##capstan[set-output name='A']"),
            "set-output needs value='…'"
        );
        assert!(err("##capstan[set-output name='A' value='B]").contains("no closing quote"));
        assert!(err("##capstan[set-output name=A value='B']").contains("single quotes"));
        assert_eq!(
            err("##capstan[set-outptu name='A' value='B']"),
            "there is no service message `set-outptu`; the one there is: set-output"
        );
        assert_eq!(
            err("##capstan[set-output name='A' name='B' value='C']"),
            "`name` is given twice"
        );
        assert_eq!(
            err("##capstan[set-output name=' ' value='C']"),
            "an output variable needs a name"
        );
        assert_eq!(
            err("##capstan[set-output name='A' value='B' colour='red']"),
            "set-output has no attribute `colour`"
        );
    }
}
