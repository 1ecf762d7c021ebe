//! The web UI in a real headless Chromium against real nodes: every page signed in
//! through its form, acted on with clicks, screenshotted (`target/ui-screenshots`) and
//! checked against axe-core's serious and critical rules.

mod account;
mod admin;
mod agents;
mod approvals;
mod audit;
mod dashboard;
mod deployment;
mod freezes;
mod journey;
mod layout;
mod lifecycles;
mod nodes;
mod projects;
mod sign_in;
mod task_log;
mod tasks;

use capstan_testkit::browser::Browser;

pub(crate) use crate::identity::login::{PASSWORD, person};

/// A browser signed in at `base` as a new administrator `name`.
pub(crate) async fn signed_in(base: &str, name: &str) -> Browser {
    person(base, name).await;
    let browser = Browser::start().await;
    browser.sign_in(base, name, PASSWORD).await;
    browser
}
