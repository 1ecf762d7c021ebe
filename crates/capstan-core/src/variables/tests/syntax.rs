//! What each construct renders to.

use super::super::{Template, VariableMap, evaluate_condition};
use super::{rendered, vars};

#[test]
fn text_without_tags_renders_unchanged() {
    let text = "echo 'hello' } # { ]\n  second line #";
    assert_eq!(rendered(text, &[]), text);
    assert_eq!(rendered("", &[]), "");
}

#[test]
fn substitution_replaces_a_name_with_its_value() {
    assert_eq!(
        rendered("Deploying #{Release} now", &[("Release", "1.2.3")]),
        "Deploying 1.2.3 now"
    );
}

#[test]
fn names_are_case_insensitive() {
    assert_eq!(
        rendered("#{db.password}", &[("Db.Password", "s3cret")]),
        "s3cret"
    );
}

#[test]
fn whitespace_inside_a_tag_is_trimmed() {
    assert_eq!(rendered("#{  Name \t}", &[("Name", "x")]), "x");
    assert_eq!(rendered("#{\n Name\n}", &[("Name", "x")]), "x");
    assert_eq!(rendered("#{ A . B }", &[("A.B", "x")]), "x");
}

#[test]
fn names_may_contain_spaces() {
    assert_eq!(
        rendered("#{Web Site Name}", &[("web site name", "shop")]),
        "shop"
    );
}

#[test]
fn indexes_are_literal_text_that_may_contain_spaces() {
    let pairs = [(
        "Capstan.Action[Deploy web].Output[web01].Url",
        "http://web01",
    )];
    assert_eq!(
        rendered("#{Capstan.Action[Deploy web].Output[web01].Url}", &pairs),
        "http://web01"
    );
}

#[test]
fn a_nested_substitution_is_evaluated_first_and_becomes_the_index() {
    let pairs = [
        ("Capstan.Machine.Name", "web02"),
        ("Capstan.Action[Test].Output[web02].Ok", "True"),
    ];
    assert_eq!(
        rendered(
            "#{Capstan.Action[Test].Output[#{Capstan.Machine.Name}].Ok}",
            &pairs
        ),
        "True"
    );
}

#[test]
fn an_index_may_mix_text_and_nested_substitutions() {
    let pairs = [("N", "2"), ("Host[web-2]", "ok")];
    assert_eq!(rendered("#{Host[web-#{N}]}", &pairs), "ok");
}

#[test]
fn nested_substitutions_nest_further() {
    let pairs = [("C", "c"), ("B[c]", "b"), ("A[b]", "a")];
    assert_eq!(rendered("#{A[#{B[#{C}]}]}", &pairs), "a");
}

#[test]
fn double_hash_escapes_a_literal_tag_opening() {
    assert_eq!(rendered("##{Name}", &[]), "#{Name}");
    assert_eq!(rendered("a ##{ b ##{", &[]), "a #{ b #{");
    assert_eq!(rendered("###{N}", &[]), "##{N}");
    assert_eq!(rendered("# #{N}", &[("N", "x")]), "# x");
}

#[test]
fn if_renders_its_body_only_when_the_condition_is_truthy() {
    let template = "#{if Enabled}on#{/if}";
    assert_eq!(rendered(template, &[("Enabled", "True")]), "on");
    assert_eq!(rendered(template, &[("Enabled", "false")]), "");
    assert_eq!(rendered(template, &[("Enabled", "")]), "");
}

#[test]
fn an_undefined_name_in_a_condition_is_false() {
    assert_eq!(rendered("#{if Missing}yes#{else}no#{/if}", &[]), "no");
    assert_eq!(rendered("#{unless Missing}yes#{/unless}", &[]), "yes");
}

#[test]
fn else_renders_when_the_condition_does_not_hold() {
    let template = "#{if Debug}verbose#{else}quiet#{/if}";
    assert_eq!(rendered(template, &[("Debug", "0")]), "quiet");
    assert_eq!(rendered(template, &[("Debug", "1")]), "verbose");
}

#[test]
fn unless_is_if_negated() {
    let template = "#{unless Debug}quiet#{else}verbose#{/unless}";
    assert_eq!(rendered(template, &[("Debug", "no")]), "quiet");
    assert_eq!(rendered(template, &[("Debug", "yes")]), "verbose");
}

#[test]
fn blocks_nest() {
    let template = "#{if A}a#{if B}b#{else}!b#{/if}#{unless C}!c#{/unless}#{else}!a#{/if}";
    assert_eq!(rendered(template, &[("A", "1"), ("B", "1")]), "ab!c");
    assert_eq!(
        rendered(template, &[("A", "1"), ("B", "0"), ("C", "1")]),
        "a!b"
    );
    assert_eq!(rendered(template, &[]), "!a");
}

#[test]
fn comparisons_test_exact_text() {
    let template = r#"#{if Env == "Production"}prod#{else}other#{/if}"#;
    assert_eq!(rendered(template, &[("Env", "Production")]), "prod");
    assert_eq!(rendered(template, &[("Env", "production")]), "other");
    let template = r#"#{if Env != "Production"}other#{/if}"#;
    assert_eq!(rendered(template, &[("Env", "Staging")]), "other");
    assert_eq!(rendered(template, &[("Env", "Production")]), "");
}

#[test]
fn either_side_of_a_comparison_may_be_a_string_or_a_name() {
    let pairs = [("A", "x"), ("B", "x"), ("C", "y")];
    assert_eq!(rendered(r#"#{if "x" == A}1#{/if}"#, &pairs), "1");
    assert_eq!(rendered("#{if A == B}1#{/if}", &pairs), "1");
    assert_eq!(rendered("#{if A != C}1#{/if}", &pairs), "1");
    assert_eq!(rendered(r#"#{if "a" == "a"}1#{/if}"#, &[]), "1");
}

#[test]
fn an_undefined_name_in_a_comparison_reads_as_empty_text() {
    assert_eq!(rendered(r#"#{if Missing == ""}empty#{/if}"#, &[]), "empty");
    assert_eq!(
        rendered(r#"#{if Missing != "x"}differs#{/if}"#, &[]),
        "differs"
    );
}

#[test]
fn quoted_strings_escape_quotes_and_backslashes() {
    let pairs = [("Path", r#"C:\"x""#)];
    assert_eq!(rendered(r#"#{if Path == "C:\\\"x\""}1#{/if}"#, &pairs), "1");
    let pairs = [("Text", "a}b")];
    assert_eq!(rendered(r#"#{if Text == "a}b"}1#{/if}"#, &pairs), "1");
}

#[test]
fn a_condition_name_may_have_a_nested_index() {
    let template = r#"#{if Capstan.Action[Sanity Test].Output[#{Capstan.Machine.Name}].AddBack == "True"}True#{/if}"#;
    let pairs = [
        ("Capstan.Machine.Name", "web01"),
        ("Capstan.Action[Sanity Test].Output[web01].AddBack", "True"),
    ];
    assert_eq!(rendered(template, &pairs), "True");
    assert_eq!(rendered(template, &[("Capstan.Machine.Name", "web02")]), "");
}

#[test]
fn keywords_only_count_as_whole_words() {
    let pairs = [("iffy", "1"), ("elsewhere", "2"), ("unlessx", "3")];
    assert_eq!(rendered("#{iffy}#{elsewhere}#{unlessx}", &pairs), "123");
    assert_eq!(rendered("#{ if A }a#{ else }b#{ /if }", &[]), "b");
}

#[test]
fn multi_line_templates_keep_their_line_breaks() {
    let template = "#{if A}\nline #{A}\n#{/if}\nend";
    assert_eq!(rendered(template, &[("A", "1")]), "\nline 1\n\nend");
}

#[test]
fn references_lists_every_name_once_in_order() {
    let template = Template::parse(
        r#"#{A} #{a} #{if B == "x"}#{C[lit]}#{/if}#{unless D != E}#{/unless} #{Outer[#{Inner}]} #{F[x-#{G}]}"#,
    )
    .unwrap();
    assert_eq!(
        template.references(),
        [
            "A", "B", "C[lit]", "D", "E", "Outer[*]", "Inner", "F[*]", "G"
        ]
    );
}

#[test]
fn references_of_plain_text_are_empty() {
    assert!(Template::parse("no tags").unwrap().references().is_empty());
}

#[test]
fn a_parsed_template_renders_against_many_variable_sets() {
    let template = Template::parse("#{Name}").unwrap();
    for name in ["a", "b"] {
        let vars: VariableMap = [("Name", name)].into_iter().collect();
        assert_eq!(template.render(&vars).unwrap(), name);
    }
}

#[test]
fn a_run_condition_is_a_template_whose_result_is_tested_for_truthiness() {
    let condition = "#{if Capstan.Deployment.Error}false#{else}true#{/if}";
    assert!(evaluate_condition(condition, &vars(&[])).unwrap());
    let failed = vars(&[("Capstan.Deployment.Error", "step Deploy failed")]);
    assert!(!evaluate_condition(condition, &failed).unwrap());
    assert!(evaluate_condition("#{Ready}", &vars(&[("Ready", "True")])).unwrap());
    assert!(!evaluate_condition("", &vars(&[])).unwrap());
}
