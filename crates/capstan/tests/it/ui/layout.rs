//! Every page on a phone's screen: nothing wider than the screen but the tables, which
//! scroll inside their own frame; and a keyboard user's first stop is the link past the
//! navigation.

use capstan_testkit::{TestCluster, browser::Browser};

use super::{PASSWORD, person};

const PAGES: &[(&str, &str)] = &[
    ("dashboard", "/"),
    ("projects", "/projects"),
    ("tasks", "/tasks"),
    ("approvals", "/approvals"),
    ("nodes", "/nodes"),
    ("agents", "/agents"),
    ("environments", "/environments"),
    ("lifecycles", "/lifecycles"),
    ("freezes", "/freezes"),
    ("audit", "/audit"),
    ("users", "/admin/users"),
    ("teams", "/admin/teams"),
    ("roles", "/admin/roles"),
    ("account", "/account"),
];

#[tokio::test]
async fn every_page_fits_a_phone_and_starts_with_a_skip_link() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0).url();
    person(&node, "pocket").await;
    let browser = Browser::start_sized(390, 844).await;
    browser.sign_in(&node, "pocket", PASSWORD).await;
    for (name, path) in PAGES {
        browser.open(&format!("{node}{path}")).await;
        browser.find("main#main").await;
        let overflow = browser
            .client()
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        let wide = browser
            .client()
            .execute(
                "return [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                        && !e.closest('.table-wrap'))
                    .slice(0, 5)
                    .map(e => e.tagName + '.' + e.className + '#' + e.id).join(', ');",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(i64::MAX) <= 1,
            "{path} is {overflow} px wider than a phone's screen: {wide}"
        );
        let skip = browser
            .client()
            .execute(
                "const first = document.querySelector('body a');
                 return first && first.getAttribute('href');",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(skip, "#main", "{path}: the first link skips to the content");
        browser.screenshot(&format!("phone-{name}")).await;
    }
}
