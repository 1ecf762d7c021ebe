//! The frame of every page (header, navigation, the signed-in person, sign out) and the
//! small pieces pages share: a form's CSRF field, a problem shown in words, a field's
//! error beside it, a time, a state's colour.

use capstan_api::Problem;
use maud::{DOCTYPE, Markup, html};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{assets, caller::Viewer};
use crate::identity::sessions;

/// The sections of the navigation; a page names the one it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Dashboard,
    Projects,
    Tasks,
    Nodes,
    Agents,
    Environments,
    Lifecycles,
    Approvals,
    Freezes,
    Audit,
    Admin,
    Account,
}

const NAVIGATION: &[(Section, &str, &str)] = &[
    (Section::Dashboard, "/", "Dashboard"),
    (Section::Projects, "/projects", "Projects"),
    (Section::Tasks, "/tasks", "Tasks"),
    (Section::Approvals, "/approvals", "Approvals"),
    (Section::Nodes, "/nodes", "Nodes"),
    (Section::Agents, "/agents", "Agents"),
    (Section::Environments, "/environments", "Environments"),
    (Section::Lifecycles, "/lifecycles", "Lifecycles"),
    (Section::Freezes, "/freezes", "Freezes"),
    (Section::Audit, "/audit", "Audit log"),
    (Section::Admin, "/admin/users", "Users & teams"),
];

/// The document around a page's body: one style sheet and the scripts, all from this
/// node (the Content-Security-Policy allows nothing else).
fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx must not add an inline style sheet, which the policy refuses.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · Capstan" }
                link rel="stylesheet" href=(assets::url("capstan.css"));
                script src=(assets::url("htmx.js")) defer {}
                script src=(assets::url("capstan.js")) defer {}
            }
            (body)
        }
    }
}

/// A page for a signed-in person, in `section`.
pub(crate) fn page(title: &str, viewer: &Viewer, section: Section, main: Markup) -> Markup {
    document(
        title,
        html! {
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/" { "Capstan" }
                    nav aria-label="Main" {
                        ul {
                            @for (each, href, label) in NAVIGATION {
                                li {
                                    @if *each == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        a href="/account" aria-current=[(section == Section::Account).then_some("page")] {
                            (viewer.user_name)
                        }
                        form method="post" action="/logout" {
                            (csrf_field(viewer))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" { (main) }
            }
        },
    )
}

/// A page without navigation: signing in, or an error for somebody not signed in.
pub(crate) fn bare(title: &str, main: Markup) -> Markup {
    document(
        title,
        html! {
            body.bare {
                header.top { a.brand href="/" { "Capstan" } }
                main id="main" { (main) }
            }
        },
    )
}

/// The hidden field every form that changes something carries.
pub(crate) fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name=(sessions::CSRF_FIELD) value=(viewer.csrf_token); }
}

/// The sign-in page's address, returning to `next` after.
pub(crate) fn sign_in_url(next: &str) -> String {
    if next == "/" {
        return "/login".to_owned();
    }
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/login?next={next}")
}

/// A problem the API answered, in words, announced to screen readers.
pub(crate) fn problem_box(problem: &Problem) -> Markup {
    let fields = field_errors(problem);
    html! {
        div.problem role="alert" {
            p { strong { (problem.title) ": " } (problem.detail) }
            @if !fields.is_empty() {
                ul {
                    @for (field, detail) in &fields {
                        li {
                            @if !field.is_empty() { code { (field) } ": " }
                            (detail)
                        }
                    }
                }
            }
        }
    }
}

/// A notice that something was done.
pub(crate) fn notice(text: &str) -> Markup {
    html! { p.notice role="status" { (text) } }
}

/// The field-level problems of a 422 (`errors: [{field, detail}]`).
pub(crate) fn field_errors(problem: &Problem) -> Vec<(String, String)> {
    problem
        .extensions
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| {
                    Some((
                        e.get("field")?.as_str()?.to_owned(),
                        e.get("detail")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The problems of `field` (and of the fields inside it), for showing beside it.
pub(crate) fn errors_of(problem: Option<&Problem>, field: &str) -> Vec<String> {
    let Some(problem) = problem else {
        return Vec::new();
    };
    field_errors(problem)
        .into_iter()
        .filter(|(f, _)| {
            f == field
                || f.strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .map(|(_, detail)| detail)
        .collect()
}

/// A time, readable, with the exact instant for machines and tooltips.
pub(crate) fn time(at: OffsetDateTime) -> Markup {
    let exact = at.format(&Rfc3339).unwrap_or_default();
    let shown = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    html! { time datetime=(exact) title=(exact) { (shown) } }
}

/// A time that may be missing.
pub(crate) fn maybe_time(at: Option<OffsetDateTime>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span.none { "—" } },
    }
}

/// A state word in its colour (`state-succeeded`, `state-failed`, …): the word is
/// always shown, so colour is never the only sign.
pub(crate) fn state(word: &str) -> Markup {
    html! { span class={ "state state-" (word) } { (word) } }
}
