//! Properties of the template language and masking that must hold for any input.

use capstan_core::variables::{
    MASK, MIN_LINE_CHARS, Masker, Template, TemplateError, VariableMap, evaluate, validate_name,
};
use proptest::prelude::*;

/// Values that refer to each other, to themselves and to undefined names, so random
/// templates exercise expansion, cycles and errors inside values.
fn tangled_vars() -> VariableMap {
    [
        ("A", "#{B}"),
        ("B", "#{if A}x#{/if}"),
        ("C", "c"),
        ("A[c]", "#{C}"),
        ("Loop", "#{Loop}"),
        ("Twice", "#{C}#{C}"),
        ("Flag", "False"),
        ("Broken", "#{if"),
        ("Missing", "#{Nowhere}"),
    ]
    .into_iter()
    .collect()
}

/// Text built from the pieces the template language gives meaning to.
fn template_ish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("#{"),
        Just("##{"),
        Just("}"),
        Just("if "),
        Just("unless "),
        Just("/if"),
        Just("/unless"),
        Just("else"),
        Just("["),
        Just("]"),
        Just("\""),
        Just("\\"),
        Just("=="),
        Just("!="),
        Just("."),
        Just(" "),
        Just("\n"),
        Just("A"),
        Just("B"),
        Just("C"),
        Just("Loop"),
        Just("Twice"),
        Just("Flag"),
        Just("Missing"),
        Just("é"),
    ];
    prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

/// An error must point inside the template it is about.
fn assert_points_inside(template: &str, error: &TemplateError) {
    let lines = u32::try_from(template.split('\n').count()).unwrap();
    assert!(error.line >= 1 && error.column >= 1, "{error}");
    assert!(error.line <= lines, "{error} in a {lines}-line template");
}

fn check_any(template: &str) {
    let vars = tangled_vars();
    match Template::parse(template) {
        Ok(parsed) => {
            let _ = parsed.references();
            if let Err(error) = parsed.render(&vars) {
                assert_points_inside(template, &error);
                let _ = error.to_string();
            }
        }
        Err(error) => {
            assert_points_inside(template, &error);
            let _ = error.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(template in any::<String>()) {
        check_any(&template);
    }

    #[test]
    fn template_ish_text_never_panics(template in template_ish()) {
        check_any(&template);
    }
}

proptest! {
    #[test]
    fn text_without_tags_renders_to_itself(text in any::<String>()) {
        prop_assume!(!text.contains("#{"));
        prop_assert_eq!(evaluate(&text, &VariableMap::new()).unwrap(), text);
    }

    #[test]
    fn escaping_every_tag_opening_renders_the_original(text in template_ish()) {
        let escaped = text.replace("#{", "##{");
        prop_assert_eq!(evaluate(&escaped, &tangled_vars()).unwrap(), text);
    }

    #[test]
    fn escaping_arbitrary_text_renders_the_original(text in any::<String>()) {
        let escaped = text.replace("#{", "##{");
        prop_assert_eq!(evaluate(&escaped, &VariableMap::new()).unwrap(), text);
    }

    #[test]
    fn every_valid_name_substitutes_its_value(
        entries in prop::collection::vec(("\\PC{1,24}", any::<String>()), 1..12),
    ) {
        let vars: VariableMap = entries
            .into_iter()
            .filter(|(name, _)| validate_name(name).is_ok())
            .map(|(name, value)| (name, value.replace("#{", "")))
            .collect();
        for (name, value) in vars.iter() {
            prop_assert_eq!(evaluate(&format!("#{{{name}}}"), &vars).unwrap(), value);
            prop_assert_eq!(evaluate(&format!("#{{ {name} }}"), &vars).unwrap(), value);
        }
    }

    #[test]
    fn names_match_in_any_ascii_case(
        name in "[A-Za-z][A-Za-z0-9_]{0,10}(\\.[A-Za-z][A-Za-z0-9_ ]{0,10}[a-z]){0,3}",
        value in "[^#]{0,40}",
    ) {
        prop_assume!(validate_name(&name).is_ok());
        // `If` is a name, but `#{if}` is a keyword tag whatever the name's case: such a
        // name is reached in its own case or upper case only.
        let first = name.split(' ').next().unwrap_or_default().to_ascii_lowercase();
        prop_assume!(!["if", "unless", "else"].contains(&first.as_str()));
        let vars: VariableMap = [(name.clone(), value.clone())].into_iter().collect();
        let upper = format!("#{{{}}}", name.to_ascii_uppercase());
        let lower = format!("#{{{}}}", name.to_ascii_lowercase());
        prop_assert_eq!(evaluate(&upper, &vars).unwrap(), value.as_str());
        prop_assert_eq!(evaluate(&lower, &vars).unwrap(), value.as_str());
    }

    #[test]
    fn masked_text_never_contains_a_secret(
        secrets in prop::collection::vec("[a-c0-1 \n]{1,12}", 1..5),
        pieces in prop::collection::vec("[a-d0-2 \n]{0,8}", 0..12),
    ) {
        // Weave the secrets into the text so they occur, overlap and touch.
        let mut text = String::new();
        for (i, piece) in pieces.iter().enumerate() {
            text.push_str(piece);
            text.push_str(&secrets[i % secrets.len()]);
        }
        let masker = Masker::new(&secrets);
        let masked = masker.mask(&text);
        for secret in &secrets {
            prop_assert!(
                !masked.contains(secret.as_str()),
                "{secret:?} survives in {masked:?}"
            );
            let long_enough = |line: &&str| {
                line.chars().filter(|c| !c.is_whitespace()).count() >= MIN_LINE_CHARS
            };
            for line in secret.split('\n').map(str::trim).filter(long_enough) {
                prop_assert!(!masked.contains(line), "line {line:?} survives in {masked:?}");
            }
        }
    }

    #[test]
    fn masking_changes_nothing_without_secrets_in_the_text(
        secrets in prop::collection::vec("[x-z]{1,6}", 0..5),
        text in "[a-w \n]{0,80}",
    ) {
        let masked = Masker::new(&secrets).mask(&text).into_owned();
        prop_assert_eq!(masked, text.as_str());
        prop_assert!(!text.contains(MASK));
    }
}
