//! Pages of a task's log (`?tail=N`, `?before=<offset>&lines=N`) while it is written in
//! segments and once finished, read without reading the log whole; following from an
//! offset (`from`), and every bad parameter refused with a problem saying why.

use std::time::Duration;

use capstan_api::{CommandOutcome, CommandResult, TaskLogPage};
use capstan_core::TaskState;
use capstan_testkit::{
    ADMIN_KEY, TestCluster, eventually,
    tasks::{wait_finished, whole_log},
};
use reqwest::StatusCode;

use crate::agents::{run_script, sim_agents};

/// Lines of the log, each with its start and end offset.
fn lines_of(log: &str) -> Vec<(u64, u64, String)> {
    let mut at = 0u64;
    log.split_inclusive('\n')
        .map(|line| {
            let start = at;
            at += line.len() as u64;
            (start, at, line.trim_end_matches('\n').to_owned())
        })
        .collect()
}

async fn get(base: &str, id: i64, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/api/tasks/{id}/log?{query}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
}

/// A page, and how many bytes of the log the node read for it.
async fn page(base: &str, id: i64, query: &str) -> (TaskLogPage, u64) {
    let response = get(base, id, query).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let read: u64 = response.headers()["x-log-bytes-read"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (response.json().await.unwrap(), read)
}

/// The page holds exactly `expected` lines of the log, in order, with their offsets.
fn assert_lines(page: &TaskLogPage, expected: &[(u64, u64, String)]) {
    let got: Vec<(u64, u64, String)> = page
        .lines
        .iter()
        .map(|l| (l.offset_start, l.offset_end, l.text.clone()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(page.start, expected.first().map_or(page.end, |l| l.0));
    if let Some(last) = expected.last() {
        assert_eq!(page.end, last.1);
    }
    assert_eq!(page.more_before, page.start > 0);
}

#[tokio::test]
async fn a_log_is_paged_back_from_its_tail_reading_only_what_each_page_needs() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(0);
    let (base, client) = (node.url(), node.client());
    let agent = sim_agents(&client, &base, &["pager01"], &[])
        .await
        .remove(0);
    let task = run_script(&client, "seq 20000", &["pager01"]).await;
    let handed = agent.poll(5_000).await.unwrap();
    let command = handed.commands[0].id;
    agent.ack(command).await.unwrap();

    // 20,000 lines of about 80 bytes, some coloured.
    let texts: Vec<String> = (1..=20_000)
        .map(|n| format!("\u{1b}[32mline {n:05}\u{1b}[0m with some padding to make it longer"))
        .collect();
    for (batch, chunk) in texts.chunks(1_000).enumerate() {
        let lines: Vec<(u64, &str)> = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| ((batch * 1_000 + i + 1) as u64, t.as_str()))
            .collect();
        agent.output(command, &lines).await.unwrap();
    }

    // While it runs, the log is in segments: the tail has the last line sent.
    let running = eventually(Duration::from_secs(10), "the last line stored", || async {
        let (tail, _) = page(&base, task.id, "tail=3").await;
        tail.lines
            .last()
            .is_some_and(|l| {
                l.text
                    .ends_with("line 20000\u{1b}[0m with some padding to make it longer")
            })
            .then_some(tail)
    })
    .await;
    assert!(!running.complete);
    assert_eq!(running.state, TaskState::Running);
    let so_far = whole_log(&client, task.id).await;
    assert_eq!(running.log_bytes, so_far.len() as u64);
    let lines = lines_of(&so_far);
    assert_lines(&running, &lines[lines.len() - 3..]);

    // Following from the page's end gives what comes next, and only that.
    let mut follower = reqwest::Client::new()
        .get(format!(
            "{base}/api/tasks/{}/log?follow=true&from={}",
            task.id, running.end
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(follower.status(), StatusCode::OK);
    agent
        .output(command, &[(20_001, "after the tail")])
        .await
        .unwrap();
    agent
        .result(
            command,
            &CommandResult {
                outcome: CommandOutcome::Succeeded,
                exit_code: Some(0),
                error: None,
                outputs: Default::default(),
                facts: None,
            },
        )
        .await
        .unwrap();
    let mut parser = capstan_api::task_logs::SseParser::default();
    let mut events = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), follower.chunk())
        .await
        .expect("the followed log within 20 s")
        .unwrap()
    {
        events.extend(parser.feed(&chunk));
    }
    let first = events[0].clone().into_log_event().unwrap();
    match first {
        capstan_api::LogEvent::Line { text, .. } => {
            assert!(text.ends_with("pager01: after the tail"), "{text}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events.last().unwrap().event.as_deref(), Some("end"));

    wait_finished(&client, &[task.id], Duration::from_secs(10)).await;
    let log = whole_log(&client, task.id).await;
    let lines = lines_of(&log);
    assert!(lines.len() > 20_000, "{}", lines.len());

    // Paging back from the tail, 5,000 lines at a time, gives the whole log, each page
    // reading about a page's worth of bytes.
    let (tail, read) = page(&base, task.id, "tail=5000").await;
    assert!(tail.complete);
    assert_eq!(tail.state, TaskState::Succeeded);
    assert_eq!(tail.log_bytes, log.len() as u64);
    assert_lines(&tail, &lines[lines.len() - 5_000..]);
    let page_bytes = tail.end - tail.start;
    assert!(
        read < page_bytes + 1024 * 1024,
        "read {read} for {page_bytes}"
    );
    let mut pages = vec![tail];
    while pages.last().unwrap().more_before {
        let before = pages.last().unwrap().start;
        let (earlier, read) = page(&base, task.id, &format!("before={before}&lines=5000")).await;
        assert!(read < 2 * 1024 * 1024, "read {read}");
        pages.push(earlier);
    }
    assert_eq!(pages.len(), lines.len().div_ceil(5_000));
    let joined: String = pages
        .iter()
        .rev()
        .flat_map(|p| p.lines.iter().map(|l| format!("{}\n", l.text)))
        .collect();
    assert_eq!(joined, log);

    // A small tail of a 2 MB log reads one small block.
    let (small, read) = page(&base, task.id, "tail=10").await;
    assert_lines(&small, &lines[lines.len() - 10..]);
    assert!(read <= 64 * 1024, "read {read} of {}", log.len());
    assert!(log.len() > 1_500_000, "{}", log.len());

    // `lines` defaults to 500; at the start of the log a page is short.
    let (middle, _) = page(&base, task.id, &format!("before={}", lines[1000].0)).await;
    assert_lines(&middle, &lines[500..1000]);
    let (first, _) = page(&base, task.id, &format!("before={}&lines=50", lines[3].0)).await;
    assert_lines(&first, &lines[..3]);
    assert!(!first.more_before);
    let (none, _) = page(&base, task.id, "before=0").await;
    assert!(none.lines.is_empty() && none.start == 0 && none.end == 0);
    let (at_end, _) = page(&base, task.id, &format!("before={}&lines=2", log.len())).await;
    assert_lines(&at_end, &lines[lines.len() - 2..]);

    // Every bad parameter: 400 with a problem saying what is wrong.
    let inside_a_line = lines[10].0 + 5;
    let past_the_end = log.len() + 1;
    for (query, says) in [
        ("tail=0", "`tail` must be 1-5000 lines, got 0"),
        ("tail=5001", "`tail` must be 1-5000 lines, got 5001"),
        ("tail=-1", "tail"),
        ("tail=many", "tail"),
        ("before=10&lines=0", "`lines` must be 1-5000 lines, got 0"),
        ("before=10&lines=9999", "`lines` must be 1-5000 lines"),
        ("tail=5&before=10", "either `tail` or `before`"),
        ("tail=5&lines=10", "`lines` goes with `before`"),
        ("lines=10", "`lines` goes with `before`"),
        ("from=10", "`from` goes with `follow=true`"),
        ("follow=true&tail=5", "does not go with `tail` or `before`"),
        (&format!("before={inside_a_line}"), "inside a line"),
        (&format!("before={past_the_end}"), "past the end of the log"),
        (
            &format!("follow=true&from={past_the_end}"),
            "past the end of the log",
        ),
        ("colour=true", "colour"),
    ] {
        let response = get(&base, task.id, query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            capstan_api::PROBLEM_JSON,
            "{query}"
        );
        let problem: capstan_api::Problem = response.json().await.unwrap();
        assert!(
            problem.detail.contains(says),
            "{query}: `{}` should say `{says}`",
            problem.detail
        );
    }
    let missing = get(&base, task.id + 1_000_000, "tail=5").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The plain text answer is as before.
    let plain = get(&base, task.id, "").await;
    assert_eq!(plain.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(plain.text().await.unwrap(), log);
}
