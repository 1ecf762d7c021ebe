//! Slow and stalled clients cannot hold a node's connections: headers must arrive
//! within the header-read timeout, an idle connection closes after the idle timeout,
//! agents' bodies within the body timeout; yet honest slow uploads and long polls
//! still run their course.

use std::time::{Duration, Instant};

use capstan_testkit::{
    TestCluster,
    agents::{SimAgent, ensure_environment, registration_token},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn cluster() -> TestCluster {
    TestCluster::start_with(&[None], |settings| {
        settings.header_read_timeout = Duration::from_secs(1);
        settings.idle_timeout = Duration::from_secs(3);
        settings.body_timeout = Duration::from_secs(1);
        settings.upload_stall_timeout = Duration::from_secs(1);
    })
    .await
}

/// Reads until the node closes the connection; what it sent, and when it closed.
/// `None` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => {
                return Some((
                    String::from_utf8_lossy(&seen).into_owned(),
                    started.elapsed(),
                ));
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn half_sent_and_trickled_headers_are_closed_after_the_header_timeout() {
    let cluster = cluster().await;
    let addr = cluster.node(0).addr;

    let mut half_sent = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /api/nodes HTTP/1.1\r\nHost: capstan\r\nX-Half: ")
            .await
            .unwrap();
        half_sent.push(stream);
    }
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut trickled = TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        trickled
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        // One header byte every 200ms: never a complete request.
        while started.elapsed() < Duration::from_secs(5) {
            if trickled.write_all(b"X").await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        started.elapsed()
    });

    for stream in &mut half_sent {
        let (_, after) = closed_within(stream, Duration::from_millis(2500))
            .await
            .expect("a half-sent request is closed after the header timeout");
        assert!(after < Duration::from_millis(2500), "{after:?}");
    }
    let trickled_for = trickle.await.unwrap();
    assert!(
        trickled_for < Duration::from_millis(2500),
        "trickled headers kept the connection for {trickled_for:?}"
    );
    // A connection that has sent nothing is idle, not slow: it gets the idle timeout.
    let (_, after) = closed_within(&mut idle, Duration::from_secs(6))
        .await
        .expect("an idle connection is closed after the idle timeout");
    assert!(
        after >= Duration::from_millis(500),
        "closed after {after:?}"
    );

    // Keep-alive: after an answer, the connection may idle, then it is closed.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: capstan\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    closed_within(&mut kept, Duration::from_secs(6))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "a keep-alive connection got the header timeout, not the idle one: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_registration_body_is_refused_or_timed_out() {
    let cluster = cluster().await;
    let node = cluster.node(0);
    let client = node.client();
    ensure_environment(&client, "prod").await;
    let token = registration_token(&client, 5).await;

    // Without a token the node answers before reading the body.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/agents/register HTTP/1.1\r\nHost: capstan\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\"",
        )
        .await
        .unwrap();
    let (answer, after) = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("the node answers and closes");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        after < Duration::from_millis(900),
        "answered after {after:?}"
    );

    // With a valid token, the body must still arrive within the body timeout.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    let head = format!(
        "POST /api/agents/register HTTP/1.1\r\nHost: capstan\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, after) = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("a stalled body is answered and the connection closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    assert!(
        after < Duration::from_millis(2500),
        "answered after {after:?}"
    );
}

#[tokio::test]
async fn honest_slow_uploads_and_long_polls_still_run_their_course() {
    let cluster = cluster().await;
    let node = cluster.node(0);

    // Eight chunks 400ms apart: 3s in all, past every limit but the stall one.
    let chunks = futures::stream::unfold(0u8, |i| async move {
        if i == 8 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        Some((Ok::<_, std::io::Error>(vec![i; 1024]), i + 1))
    });
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/packages/raw?id=Slow&version=1.0.0",
            node.url()
        ))
        .bearer_auth(capstan_testkit::ADMIN_KEY)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 201, "{}", response.text().await.unwrap_or_default());

    // An upload that stops sending is ended after the stall timeout.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    let head = format!(
        "POST /api/packages/raw?id=Stalled&version=1.0.0 HTTP/1.1\r\nHost: capstan\r\n\
         Authorization: Bearer {}\r\nContent-Length: 100000\r\n\r\nsome bytes",
        capstan_testkit::ADMIN_KEY
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = closed_within(&mut stream, Duration::from_secs(4))
        .await
        .expect("a stalled upload is ended");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A long poll waits its full time, past the idle and body timeouts.
    let client = node.client();
    ensure_environment(&client, "prod").await;
    let token = registration_token(&client, 1).await;
    let agent = SimAgent::register(&node.url(), &token, "web-1", "prod", &[])
        .await
        .unwrap();
    let started = Instant::now();
    let answer = agent.poll(4000).await.unwrap();
    assert!(answer.commands.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(3900),
        "the poll returned after {:?}",
        started.elapsed()
    );
}
