//! A real headless Chromium, driven through chromedriver (WebDriver), for the web UI's
//! tests: signing in, screenshots kept as artifacts, and axe-core's accessibility rules
//! run inside the page.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`, or `CAPSTAN_CHROMIUM` / `CAPSTAN_CHROMEDRIVER`) and
//! axe-core installed by `npm ci` in `crates/capstan-testkit/browser`; the test script
//! installs all three.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{TempDir, free_port};

/// A browser window of its own (a fresh profile), closed with its driver on drop.
pub struct Browser {
    client: Client,
    driver: Child,
    _profile: TempDir,
}

/// An accessibility rule a page breaks, as axe-core reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Violation {
    pub id: String,
    pub impact: Option<String>,
    pub help: String,
    /// The elements that break it, as CSS selectors and their HTML.
    pub nodes: Vec<Value>,
}

fn program(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// Where screenshots are kept: `CAPSTAN_SCREENSHOTS`, or `target/ui-screenshots` of the
/// workspace.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CAPSTAN_SCREENSHOTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots"),
        PathBuf::from,
    )
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` × `height`.
    pub async fn start_sized(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new(program("CAPSTAN_CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium-driver)");
        let profile = TempDir::new("capstan-chromium");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": program("CAPSTAN_CHROMIUM", "/usr/bin/chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            // Plain HTTP: chromedriver listens on the loopback only.
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(client) => break client,
                Err(error) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("Chromium did not start through chromedriver: {error}"),
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// A laptop-sized window.
    pub async fn start() -> Self {
        Self::start_sized(1366, 900).await
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to have loaded.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// The element matching `css`, waiting up to 15 s for it to appear.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element `{css}` on the page: {e}"))
    }

    /// The text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .expect("the element's text")
    }

    /// Types `text` into the field matching `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("the field clears");
        field.send_keys(text).await.expect("the field takes text");
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .expect("the element clicks");
    }

    /// Clicks the submit button `css` and waits for the page that answers the form
    /// (the old page is marked first, so it is not mistaken for the answer).
    pub async fn submit(&self, css: &str) {
        self.client
            .execute("document.documentElement.dataset.left = 'no';", vec![])
            .await
            .expect("the page is marked");
        self.click(css).await;
        self.until(
            Duration::from_secs(30),
            "the form's answer to load",
            "document.documentElement.dataset.left !== 'no' && document.readyState === 'complete'",
        )
        .await;
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the page's address")
            .path()
            .to_owned()
    }

    /// Signs in at `base` (a node or the load balancer) with a name and password.
    pub async fn sign_in(&self, base: &str, name: &str, password: &str) {
        self.open(&format!("{base}/login")).await;
        self.fill("#name", name).await;
        self.fill("#password", password).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
        self.until(
            Duration::from_secs(15),
            "signed in",
            "location.pathname !== '/login'",
        )
        .await;
    }

    /// Waits until the JavaScript expression `condition` holds on the page.
    pub async fn until(&self, within: Duration, what: &str, condition: &str) {
        let started = Instant::now();
        let script = format!("return Boolean({condition});");
        loop {
            let held = self.client.execute(&script, vec![]).await.ok();
            if held == Some(Value::Bool(true)) {
                return;
            }
            if started.elapsed() > within {
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!("after {within:?}, still not: {what} ({condition})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot of the window as `<name>.png` in [`screenshot_dir`].
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// The violations of axe-core's serious and critical rules on the page shown now.
    /// axe-core is passed in through WebDriver, which the page's policy does not
    /// govern; the page itself loads nothing but its own files.
    pub async fn accessibility_violations(&self) -> Vec<Violation> {
        let axe =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&axe).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}): run `npm ci` in crates/capstan-testkit/browser",
                axe.display()
            )
        });
        self.client
            .execute(&format!("{source}\nreturn true;"), vec![])
            .await
            .expect("axe-core loads into the page");
        let found = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   axe.run(document, {resultTypes: ["violations"]})
                      .then(r => done(r.violations.filter(v => v.impact === "serious" || v.impact === "critical")))
                      .catch(e => done({error: String(e)}));"#,
                vec![],
            )
            .await
            .expect("axe-core runs");
        serde_json::from_value(found.clone())
            .unwrap_or_else(|e| panic!("axe-core's answer could not be read ({e}): {found}"))
    }

    /// Asserts the page shown now breaks none of axe-core's serious or critical rules.
    pub async fn assert_accessible(&self, page: &str) {
        let violations = self.accessibility_violations().await;
        assert!(
            violations.is_empty(),
            "{page} breaks accessibility rules: {}",
            serde_json::to_string_pretty(
                &violations
                    .iter()
                    .map(|v| json!({"rule": v.id, "impact": v.impact, "help": v.help, "nodes": v.nodes}))
                    .collect::<Vec<_>>()
            )
            .unwrap_or_default()
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
