//! Values that are templates themselves, and the limits on expanding them.

use std::time::{Duration, Instant};

use super::super::{
    MAX_EXPANSION_DEPTH, MAX_OUTPUT_BYTES, TemplateError, TemplateErrorKind as Kind, VariableMap,
    evaluate,
};
use super::{error, render, rendered};

#[test]
fn values_that_reference_variables_are_expanded() {
    let pairs = [
        ("Url", "https://#{Host}:#{Port}/"),
        ("Host", "#{Machine}.example.com"),
        ("Machine", "web01"),
        ("Port", "443"),
    ];
    assert_eq!(rendered("#{Url}", &pairs), "https://web01.example.com:443/");
}

#[test]
fn values_used_in_conditions_are_expanded_first() {
    let pairs = [
        ("Flag", "#{Other}"),
        ("Other", "false"),
        ("Env", "#{E}"),
        ("E", "prod"),
    ];
    assert_eq!(rendered("#{if Flag}on#{else}off#{/if}", &pairs), "off");
    assert_eq!(rendered(r#"#{if Env == "prod"}p#{/if}"#, &pairs), "p");
}

#[test]
fn values_may_use_blocks_and_escapes() {
    let pairs = [
        ("Greeting", "#{if Formal}Good day#{else}Hi#{/if}"),
        ("Formal", "yes"),
        ("Literal", "##{not a tag}"),
    ];
    assert_eq!(rendered("#{Greeting}", &pairs), "Good day");
    assert_eq!(rendered("#{Literal}", &pairs), "#{not a tag}");
}

#[test]
fn a_value_used_many_times_expands_each_time() {
    let pairs = [("Twice", "#{X}#{X}"), ("X", "x")];
    assert_eq!(rendered("#{Twice}-#{Twice}-#{twice}", &pairs), "xx-xx-xx");
}

#[test]
fn a_cycle_is_an_error_naming_it() {
    let pairs = [("A", "#{B}"), ("B", "#{A}")];
    let e = render("x #{A}", &pairs).unwrap_err();
    assert_eq!(
        (e.line, e.column, &e.kind),
        (
            1,
            3,
            &Kind::Cycle {
                names: vec!["A".to_owned(), "B".to_owned(), "A".to_owned()]
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "line 1, column 3: the variables refer to each other in a cycle: A -> B -> A"
    );
}

#[test]
fn a_value_referring_to_itself_is_a_cycle() {
    assert_eq!(
        error("#{A}", &[("A", "a#{A}")]),
        (
            1,
            1,
            Kind::Cycle {
                names: vec!["A".to_owned(), "A".to_owned()]
            }
        )
    );
    assert_eq!(
        error("#{if A}x#{/if}", &[("A", "#{if A}1#{/if}")]),
        (
            1,
            6,
            Kind::Cycle {
                names: vec!["A".to_owned(), "A".to_owned()]
            }
        )
    );
}

#[test]
fn a_cycle_that_is_never_reached_is_not_an_error() {
    let pairs = [("A", "#{B}"), ("B", "#{A}"), ("Use", "no")];
    assert_eq!(rendered("#{if Use}#{A}#{/if}ok", &pairs), "ok");
}

#[test]
fn an_error_inside_a_value_names_the_variable_and_the_place_in_it() {
    let pairs = [("A", "x #{Missing}")];
    let e = render("\n  #{A}", &pairs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column 3: in the value of \"A\": line 1, column 3: the variable \"Missing\" is not defined"
    );
    let pairs = [("A", "oops #{")];
    assert_eq!(
        error("#{A}", &pairs),
        (
            1,
            1,
            Kind::InValue {
                name: "A".to_owned(),
                error: Box::new(TemplateError {
                    line: 1,
                    column: 6,
                    kind: Kind::UnclosedTag
                })
            }
        )
    );
}

#[test]
fn errors_in_values_of_values_nest() {
    let pairs = [("A", "#{B}"), ("B", "- #{C}")];
    let e = render("#{A}", &pairs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1, column 1: in the value of \"A\": line 1, column 1: in the value of \"B\": line 1, column 3: the variable \"C\" is not defined"
    );
}

fn chain(length: usize) -> VariableMap {
    let mut vars = VariableMap::new();
    vars.insert("V0", "end");
    for i in 1..=length {
        vars.insert(format!("V{i}"), format!("#{{V{}}}", i - 1));
    }
    vars
}

#[test]
fn expansion_depth_is_limited() {
    let ok = chain(MAX_EXPANSION_DEPTH);
    assert_eq!(
        evaluate(&format!("#{{V{MAX_EXPANSION_DEPTH}}}"), &ok).unwrap(),
        "end"
    );
    let deep = chain(MAX_EXPANSION_DEPTH + 1);
    let e = evaluate(&format!(" #{{V{}}}", MAX_EXPANSION_DEPTH + 1), &deep).unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind),
        (
            1,
            2,
            Kind::ExpansionTooDeep {
                limit: MAX_EXPANSION_DEPTH
            }
        )
    );
}

#[test]
fn a_billion_laughs_stops_at_the_output_limit() {
    let mut vars = VariableMap::new();
    vars.insert("L0", "lol".repeat(10));
    for i in 1..=9 {
        vars.insert(format!("L{i}"), format!("#{{L{}}}", i - 1).repeat(10));
    }
    let e = evaluate("#{L9}", &vars).unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind),
        (
            1,
            1,
            Kind::OutputTooLarge {
                limit: MAX_OUTPUT_BYTES
            }
        )
    );
}

#[test]
fn conditions_that_multiply_work_without_output_are_stopped() {
    let mut vars = VariableMap::new();
    vars.insert("C0", "1");
    for i in 1..=30 {
        let test = format!("#{{if C{}}}#{{/if}}", i - 1);
        vars.insert(format!("C{i}"), test.repeat(2));
    }
    let started = Instant::now();
    let e = evaluate("#{if C30}x#{/if}", &vars).unwrap_err();
    assert_eq!((e.line, e.column, e.kind), (1, 6, Kind::TooMuchWork));
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn deep_blocks_in_deep_values_hit_the_depth_limit_before_the_stack_does() {
    let mut vars = VariableMap::new();
    vars.insert("X", "1");
    vars.insert("V0", "end");
    let blocks = 60;
    for i in 1..=20 {
        let value = format!(
            "{}#{{V{}}}{}",
            "#{if X}".repeat(blocks),
            i - 1,
            "#{/if}".repeat(blocks)
        );
        vars.insert(format!("V{i}"), value);
    }
    // Half of what a test thread gets by default: room to spare, known exactly.
    let result = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || evaluate("#{V20}", &vars))
        .unwrap()
        .join()
        .unwrap();
    let e = result.unwrap_err();
    assert!(matches!(e.kind, Kind::TooDeep { .. }), "{e}");
}
