//! `/tasks/{id}/log`: a 20,000-line log from an agent, its tail with ANSI colours as
//! classes, new lines arriving live, earlier ones paged in as the reader scrolls up,
//! never the whole log in the page, and the end of the task shown.

use std::time::Duration;

use capstan_api::{CommandOutcome, CommandResult, TaskLogPage};
use capstan_testkit::{ADMIN_KEY, TestCluster, eventually};

use super::signed_in;
use crate::agents::{run_script, sim_agents};

/// How many lines the page holds now.
const SHOWN: &str = "document.querySelectorAll('.log-view .log-line').length";

async fn count(browser: &capstan_testkit::browser::Browser, script: &str) -> u64 {
    browser
        .client()
        .execute(&format!("return {script};"), vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

async fn tail(base: &str, id: i64) -> TaskLogPage {
    reqwest::Client::new()
        .get(format!("{base}/api/tasks/{id}/log?tail=1"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn succeeded() -> CommandResult {
    CommandResult {
        outcome: CommandOutcome::Succeeded,
        exit_code: Some(0),
        error: None,
        outputs: Default::default(),
        facts: None,
    }
}

#[tokio::test]
async fn a_long_coloured_log_opens_at_its_tail_follows_live_and_pages_back_on_scroll() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let (base, client) = (node.url(), node.client());
    let agent = sim_agents(&client, &base, &["logs01"], &[]).await.remove(0);
    let task = run_script(&client, "./build.sh", &["logs01"]).await;
    let command = agent.poll(5_000).await.unwrap().commands[0].id;
    agent.ack(command).await.unwrap();
    let texts: Vec<String> = (1..=20_000)
        .map(|n| match n % 10 {
            0 => format!("\u{1b}[31mline {n} failed <b>not bold</b>\u{1b}[0m"),
            5 => format!("\u{1b}[1;32mline {n} passed\u{1b}[0m"),
            _ => format!("line {n}"),
        })
        .collect();
    for (batch, chunk) in texts.chunks(1_000).enumerate() {
        let lines: Vec<(u64, &str)> = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| ((batch * 1_000 + i + 1) as u64, t.as_str()))
            .collect();
        agent.output(command, &lines).await.unwrap();
    }
    eventually(Duration::from_secs(10), "the last line stored", || async {
        let page = tail(&base, task.id).await;
        page.lines
            .first()
            .is_some_and(|l| l.text.contains("line 20000 failed"))
            .then_some(())
    })
    .await;

    let browser = signed_in(&base, "reader").await;
    browser.open(&format!("{base}/tasks/{}/log", task.id)).await;
    browser
        .until(
            Duration::from_secs(15),
            "following live",
            "document.querySelector('.log-status').textContent === 'Live'",
        )
        .await;
    assert_eq!(count(&browser, SHOWN).await, 500);
    let last = browser.text(".log-view .log-line:last-child").await;
    assert!(
        last.ends_with("logs01: line 20000 failed <b>not bold</b>"),
        "{last}"
    );
    // Colours are classes; the text inside is text, not markup.
    assert_eq!(
        browser
            .text(".log-view .log-line:last-child .ansi-fg-1")
            .await,
        "line 20000 failed <b>not bold</b>"
    );
    assert_eq!(
        count(&browser, "document.querySelectorAll('.log-view b').length").await,
        0
    );
    browser.find(".log-view .ansi-fg-2.ansi-bold").await;
    browser.find(".log-view .log-level-info").await;

    // A new line arrives by itself, coloured the same way.
    agent
        .output(command, &[(20_001, "\u{1b}[33mlive line\u{1b}[0m")])
        .await
        .unwrap();
    browser
        .until(
            Duration::from_secs(10),
            "the live line shown",
            "(document.querySelector('.log-view .log-line:last-child .ansi-fg-3') || {}).textContent === 'live line'",
        )
        .await;
    assert_eq!(count(&browser, SHOWN).await, 501);
    browser.screenshot("task-log").await;
    browser.assert_accessible("the task log page").await;

    // "Load earlier lines" puts the 500 before above, keeping the view where it was.
    browser.click(".log-earlier").await;
    browser
        .until(
            Duration::from_secs(10),
            "500 earlier lines",
            &format!("{SHOWN} === 1001"),
        )
        .await;
    let first = browser.text(".log-view .log-line:first-child").await;
    assert!(first.ends_with("logs01: line 19001"), "{first}");
    assert!(
        count(
            &browser,
            "Math.round(document.querySelector('.log-view').scrollTop)"
        )
        .await
            > 0,
        "the view stays on the lines it showed"
    );

    // Scrolling to the top again and again pages further back, but the page keeps at
    // most 3,000 lines: the newest are let go.
    for _ in 0..8 {
        let before = browser.text(".log-view .log-line:first-child").await;
        browser
            .client()
            .execute(
                "document.querySelector('.log-view').scrollTop = 0; return true;",
                vec![],
            )
            .await
            .unwrap();
        browser
            .until(
                Duration::from_secs(10),
                "earlier lines on scrolling up",
                &format!(
                    "document.querySelector('.log-view .log-line').textContent !== {} && !document.querySelector('.log-panel').dataset.loadingEarlier",
                    serde_json::to_string(&before).unwrap()
                ),
            )
            .await;
        assert!(count(&browser, SHOWN).await <= 3_000);
    }
    let first = browser.text(".log-view .log-line:first-child").await;
    assert!(first.ends_with("logs01: line 15001"), "{first}");
    assert_eq!(count(&browser, SHOWN).await, 3_000);
    assert_eq!(
        browser.text(".log-follow").await,
        "Follow",
        "paging back far stops following"
    );

    // Follow goes back to the tail; the task's end is shown.
    browser.click(".log-follow").await;
    browser
        .until(
            Duration::from_secs(10),
            "back at the tail",
            "(document.querySelector('.log-view .log-line:last-child .ansi-fg-3') || {}).textContent === 'live line'",
        )
        .await;
    agent.result(command, &succeeded()).await.unwrap();
    browser
        .until(
            Duration::from_secs(15),
            "the end shown",
            "document.querySelector('.log-status').textContent.startsWith('Finished: succeeded')",
        )
        .await;
    let shown_last = browser.text(".log-view .log-line:last-child").await;
    let api_last = tail(&base, task.id).await.lines.remove(0).text;
    assert!(
        api_last.ends_with(&shown_last[shown_last.len() - 10..]),
        "{api_last} / {shown_last}"
    );
    assert!(count(&browser, SHOWN).await <= 3_000);
    browser.assert_accessible("the finished task's log").await;
}

#[tokio::test]
async fn without_javascript_the_tail_is_shown_and_earlier_lines_are_a_link_away() {
    let cluster = TestCluster::start(1).await;
    let base = cluster.node(0).url();
    let client = cluster.node(0).client();
    let agent = sim_agents(&client, &base, &["plain01"], &[])
        .await
        .remove(0);
    let task = run_script(&client, "./build.sh", &["plain01"]).await;
    let command = agent.poll(5_000).await.unwrap().commands[0].id;
    agent.ack(command).await.unwrap();
    let texts: Vec<String> = (1..=1_200).map(|n| format!("line {n}")).collect();
    let lines: Vec<(u64, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u64 + 1, t.as_str()))
        .collect();
    agent.output(command, &lines[..1_000]).await.unwrap();
    agent.output(command, &lines[1_000..]).await.unwrap();
    agent.result(command, &succeeded()).await.unwrap();
    capstan_testkit::tasks::wait_finished(&client, &[task.id], Duration::from_secs(20)).await;

    // The page as the server renders it, with no script run.
    let browser = signed_in(&base, "plain").await;
    let cookie = browser
        .client()
        .get_named_cookie(capstan_api::login::SESSION_COOKIE)
        .await
        .unwrap();
    let page = |path: String| {
        let cookie = format!("{}={}", capstan_api::login::SESSION_COOKIE, cookie.value());
        async move {
            reqwest::Client::new()
                .get(path)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let html = page(format!("{base}/tasks/{}/log", task.id)).await;
    assert_eq!(html.matches("class=\"log-line\"").count(), 500, "{html}");
    assert!(html.contains("Finished"));
    let link = html
        .split("href=\"")
        .find(|s| s.starts_with(&format!("/tasks/{}/log?before=", task.id)))
        .expect("a link to earlier lines")
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let earlier = page(format!("{base}{link}")).await;
    assert_eq!(earlier.matches("class=\"log-line\"").count(), 500);
    assert!(earlier.contains("Latest lines"));
}
