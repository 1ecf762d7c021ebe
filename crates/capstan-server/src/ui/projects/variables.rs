//! A project's variables with their scopes. A sensitive variable's value never leaves
//! the API (it answers without it), and this page only says that one is set.

use capstan_api::{VariableResponse, VariableScope, VariablesResponse};
use maud::{Markup, html};

/// Variables shown on the project's page; the rest are counted.
const SHOWN: usize = 500;

pub(super) fn variables(variables: &VariablesResponse) -> Markup {
    let shown = &variables.variables[..variables.variables.len().min(SHOWN)];
    html! {
        p.hint { "Version " (variables.version) ". The most specific scope that matches a target wins." }
        @if shown.is_empty() {
            p.none { "No variables." }
        } @else {
            div.table-wrap {
                table #variables {
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Value" }
                        th scope="col" { "Scope" }
                    } }
                    tbody {
                        @for variable in shown { (row(variable)) }
                    }
                }
            }
            @if variables.variables.len() > SHOWN {
                p.hint {
                    "The first " (SHOWN) " of " (variables.variables.len())
                    " variables are shown; the API (GET /api/projects/" (variables.project_id)
                    "/variables) has them all."
                }
            }
        }
    }
}

fn row(variable: &VariableResponse) -> Markup {
    html! {
        tr id={ "variable-" (variable.id) } {
            th scope="row" { code { (variable.name) } }
            td {
                @if variable.sensitive {
                    // The API sends no value for these; nothing to leak even by mistake.
                    span.sensitive { "sensitive — set" }
                } @else {
                    @match &variable.value {
                        Some(value) => pre.value { (value) },
                        None => span.none { "—" },
                    }
                }
            }
            td { (scope(&variable.scope)) }
        }
    }
}

fn scope(scope: &VariableScope) -> Markup {
    let parts = [
        ("Environments", &scope.environments),
        ("Tags", &scope.tags),
        ("Machines", &scope.machines),
        ("Steps", &scope.steps),
    ];
    html! {
        @if parts.iter().all(|(_, names)| names.is_empty()) {
            span.none { "everywhere" }
        } @else {
            ul.scope {
                @for (label, names) in parts {
                    @if !names.is_empty() {
                        li { (label) ": " (names.join(", ")) }
                    }
                }
            }
        }
    }
}
