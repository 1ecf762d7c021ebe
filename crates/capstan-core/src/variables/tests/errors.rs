//! Every error, with the exact line and column it reports.

use super::super::{MAX_NESTING_DEPTH, MAX_TEMPLATE_BYTES, Template, TemplateErrorKind as Kind};
use super::{error, render};

#[test]
fn an_undefined_variable_is_reported_where_its_tag_starts() {
    let template = "#!/bin/sh\nset -e\nexport DB_PW=#{Db.Password}\n";
    let e = render(template, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 3, column 14: the variable \"Db.Password\" is not defined"
    );
}

#[test]
fn an_undefined_nested_index_is_reported_at_the_nested_tag() {
    assert_eq!(
        error("#{Out[#{Machine}]}", &[]),
        (
            1,
            7,
            Kind::Undefined {
                name: "Machine".to_owned()
            }
        )
    );
}

#[test]
fn the_undefined_name_is_the_one_looked_up_after_nested_indexes() {
    assert_eq!(
        error("#{ Out[#{M}].Url }", &[("M", "web01")]),
        (
            1,
            1,
            Kind::Undefined {
                name: "Out[web01].Url".to_owned()
            }
        )
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        error("héllo wörld #{X}", &[]),
        (
            1,
            13,
            Kind::Undefined {
                name: "X".to_owned()
            }
        )
    );
}

#[test]
fn an_unclosed_tag_is_reported_where_it_opens() {
    assert_eq!(error("ok\n  #{Name", &[]), (2, 3, Kind::UnclosedTag));
    assert_eq!(error("#{", &[]), (1, 1, Kind::UnclosedTag));
    assert_eq!(error("#{if A", &[]), (1, 1, Kind::UnclosedTag));
    assert_eq!(error("#{if A ==", &[]), (1, 1, Kind::UnclosedTag));
    assert_eq!(error("#{else", &[]), (1, 1, Kind::UnclosedTag));
    assert_eq!(error("#{if", &[]), (1, 1, Kind::UnclosedTag));
}

#[test]
fn an_empty_tag_is_an_error() {
    assert_eq!(error("a #{}", &[]), (1, 3, Kind::EmptyTag));
    assert_eq!(error("a #{  }", &[]), (1, 3, Kind::EmptyTag));
}

#[test]
fn an_empty_name_part_is_an_error() {
    assert_eq!(error("#{A..B}", &[]), (1, 5, Kind::EmptySegment));
    assert_eq!(error("#{.A}", &[]), (1, 3, Kind::EmptySegment));
    assert_eq!(error("#{A.}", &[]), (1, 5, Kind::EmptySegment));
    assert_eq!(error("#{[x]}", &[]), (1, 3, Kind::EmptySegment));
}

#[test]
fn an_empty_index_is_an_error() {
    assert_eq!(error("#{A[]}", &[]), (1, 4, Kind::EmptyIndex));
}

#[test]
fn an_unclosed_index_is_reported_at_its_bracket() {
    assert_eq!(error("#{A[x}", &[]), (1, 4, Kind::UnclosedIndex));
    assert_eq!(error("#{A.B[x", &[]), (1, 6, Kind::UnclosedIndex));
}

#[test]
fn unexpected_characters_are_named_with_what_was_expected() {
    assert_eq!(
        error("#{A[x]y}", &[]),
        (
            1,
            7,
            Kind::UnexpectedCharacter {
                found: 'y',
                expected: "`}` after the variable name"
            }
        )
    );
    assert_eq!(
        error("#{A[x[y]]}", &[]),
        (
            1,
            6,
            Kind::UnexpectedCharacter {
                found: '[',
                expected: "`]` to close the index"
            }
        )
    );
    assert_eq!(
        error("#{A\nB}", &[]),
        (
            2,
            1,
            Kind::UnexpectedCharacter {
                found: 'B',
                expected: "`}` after the variable name"
            }
        )
    );
    let e = render(r#"#{A == "x"}"#, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1, column 5: unexpected `=`: expected `}` after the variable name"
    );
}

#[test]
fn only_a_name_may_be_nested_in_an_index() {
    assert_eq!(
        error("#{A[#{if B}]}", &[]),
        (1, 5, Kind::BlockInIndex { keyword: "if" })
    );
}

#[test]
fn if_and_unless_need_a_condition() {
    assert_eq!(
        error("x\n#{if}y#{/if}", &[]),
        (2, 1, Kind::MissingCondition { keyword: "if" })
    );
    let e = render("#{unless  }#{/unless}", &[]).unwrap_err();
    assert_eq!(e.kind, Kind::MissingCondition { keyword: "unless" });
    assert_eq!(
        e.to_string(),
        "line 1, column 1: `#{unless}` needs a condition, such as `#{unless Name}` or `#{unless Name == \"text\"}`"
    );
}

#[test]
fn malformed_conditions_say_what_is_missing() {
    let (line, column, kind) = error(r#"#{if "x"}a#{/if}"#, &[]);
    assert_eq!((line, column), (1, 6));
    assert!(matches!(kind, Kind::InvalidCondition { .. }), "{kind:?}");

    let (line, column, kind) = error(r#"#{if == "x"}a#{/if}"#, &[]);
    assert_eq!((line, column), (1, 6));
    assert!(kind.to_string().contains("before `==`"), "{kind}");

    let (line, column, kind) = error("#{if A == }a#{/if}", &[]);
    assert_eq!((line, column), (1, 11));
    assert!(kind.to_string().contains("after `==`"), "{kind}");

    assert_eq!(
        error(r#"#{if A "x"}a#{/if}"#, &[]),
        (
            1,
            8,
            Kind::UnexpectedCharacter {
                found: '"',
                expected: "`==`, `!=` or `}` after the condition"
            }
        )
    );
    assert_eq!(
        error(r#"#{if A == "x" B}a#{/if}"#, &[]),
        (
            1,
            15,
            Kind::UnexpectedCharacter {
                found: 'B',
                expected: "`}` after the comparison"
            }
        )
    );
}

#[test]
fn an_unterminated_string_is_reported_at_its_opening_quote() {
    assert_eq!(
        error(r#"#{if A == "abc}x#{/if}"#, &[]),
        (1, 11, Kind::UnterminatedString)
    );
    assert_eq!(
        error(r#"#{if A == "ab\"#, &[]),
        (1, 11, Kind::UnterminatedString)
    );
}

#[test]
fn only_quote_and_backslash_can_be_escaped() {
    assert_eq!(
        error(r#"#{if A == "a\nb"}x#{/if}"#, &[]),
        (1, 13, Kind::UnknownEscape { found: 'n' })
    );
}

#[test]
fn else_and_closing_tags_take_nothing_else() {
    assert_eq!(
        error("#{if A}#{else B}#{/if}", &[]),
        (1, 8, Kind::TrailingAfterKeyword { keyword: "else" })
    );
    assert_eq!(
        error("#{if A}#{/if A}", &[]),
        (1, 8, Kind::TrailingAfterKeyword { keyword: "/if" })
    );
}

#[test]
fn an_unclosed_block_is_reported_where_it_opens() {
    assert_eq!(
        error("#{if A}\n  #{unless B}x#{/unless}\n", &[]),
        (1, 1, Kind::UnclosedBlock { keyword: "if" })
    );
    assert_eq!(
        error("#{if A}\n  #{unless B}x\n#{/if}", &[]),
        (
            3,
            1,
            Kind::MismatchedBlockEnd {
                expected: "unless",
                found: "if"
            }
        )
    );
    assert_eq!(
        error("#{if A}#{if B}", &[]),
        (1, 8, Kind::UnclosedBlock { keyword: "if" })
    );
}

#[test]
fn a_closing_tag_without_its_opening_is_an_error() {
    assert_eq!(
        error("a\nb #{/if}", &[]),
        (2, 3, Kind::UnexpectedBlockEnd { keyword: "if" })
    );
    assert_eq!(
        error("#{/unless}", &[]),
        (1, 1, Kind::UnexpectedBlockEnd { keyword: "unless" })
    );
}

#[test]
fn else_outside_a_block_is_an_error() {
    assert_eq!(error("x #{else}", &[]), (1, 3, Kind::ElseOutsideBlock));
    assert_eq!(
        error("#{if A}#{/if}#{else}", &[]),
        (1, 14, Kind::ElseOutsideBlock)
    );
}

#[test]
fn a_second_else_is_an_error() {
    assert_eq!(
        error("#{unless A}1#{else}2#{else}3#{/unless}", &[]),
        (1, 21, Kind::DuplicateElse { keyword: "unless" })
    );
}

#[test]
fn blocks_nested_too_deeply_are_rejected() {
    let depth = MAX_NESTING_DEPTH - 1;
    let ok = format!("{}x{}", "#{if A}".repeat(depth), "#{/if}".repeat(depth));
    assert!(Template::parse(&ok).is_ok());
    let deep = format!(
        "{}x{}",
        "#{if A}".repeat(depth + 1),
        "#{/if}".repeat(depth + 1)
    );
    let column = u32::try_from(7 * depth + 1).unwrap();
    assert_eq!(
        error(&deep, &[]),
        (
            1,
            column,
            Kind::TooDeep {
                limit: MAX_NESTING_DEPTH
            }
        )
    );
}

#[test]
fn indexes_nested_too_deeply_are_rejected() {
    let ok = format!(
        "{}A{}",
        "#{A[".repeat(MAX_NESTING_DEPTH),
        "]}".repeat(MAX_NESTING_DEPTH)
    );
    assert!(Template::parse(&ok).is_ok());
    let depth = MAX_NESTING_DEPTH + 1;
    let deep = format!("{}A{}", "#{A[".repeat(depth), "]}".repeat(depth));
    let (line, _, kind) = error(&deep, &[]);
    assert_eq!(line, 1);
    assert_eq!(
        kind,
        Kind::TooDeep {
            limit: MAX_NESTING_DEPTH
        }
    );
}

#[test]
fn adversarially_deep_input_is_rejected_without_overflowing_the_stack() {
    for template in [
        "#{A[".repeat(100_000),
        "#{if A}".repeat(100_000),
        "#{if A[#{B[".repeat(50_000),
    ] {
        let e = Template::parse(&template).unwrap_err();
        assert!(matches!(e.kind, Kind::TooDeep { .. }), "{e}");
    }
}

#[test]
fn templates_over_the_size_limit_are_rejected() {
    let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
    assert_eq!(
        error(&big, &[]),
        (
            1,
            1,
            Kind::TemplateTooLarge {
                size: MAX_TEMPLATE_BYTES + 1,
                limit: MAX_TEMPLATE_BYTES
            }
        )
    );
}

#[test]
fn a_guarded_render_refuses_to_read_a_sensitive_value_in_a_condition_or_an_index() {
    let vars = super::vars(&[
        ("Secret", "hunter2"),
        ("Wrapper", "#{Secret}"),
        ("Plain", "x"),
    ]);
    let sensitive = |name: &str| name.eq_ignore_ascii_case("secret");
    let guarded = |text: &str| {
        Template::parse(text)
            .unwrap()
            .render_guarded(&vars, &sensitive)
    };
    for template in [
        "#{if Secret == \"hunter2\"}yes#{/if}",
        "#{unless Secret}no#{/unless}",
        "#{if \"guess\" != Wrapper}x#{/if}",
        "#{Nope[#{Secret}]}",
        "#{Nope[#{Wrapper}]}",
    ] {
        let e = guarded(template).unwrap_err();
        assert_eq!(
            e.kind,
            Kind::SensitiveRead {
                name: "Secret".to_owned()
            },
            "{template}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    assert_eq!(
        guarded("#{Wrapper} #{if Plain}y#{/if}").unwrap(),
        "hunter2 y"
    );
    // Unguarded, as a deployment renders, conditions read sensitive values as any other.
    assert_eq!(
        render(
            "#{if Secret == \"hunter2\"}yes#{/if}",
            &[("Secret", "hunter2")]
        )
        .unwrap(),
        "yes"
    );
}

#[test]
fn a_masked_error_message_hides_sensitive_values_evaluated_into_it() {
    let vars = super::vars(&[("Secret", "hunter2-value")]);
    let e = Template::parse("#{Nope[#{Secret}]}")
        .unwrap()
        .render(&vars)
        .unwrap_err();
    let masker = super::super::Masker::new(["hunter2-value"]);
    assert_eq!(
        e.masked(&masker),
        "line 1, column 1: the variable \"Nope[********]\" is not defined"
    );
}
