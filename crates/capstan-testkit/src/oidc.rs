//! A real OpenID Connect provider (the certified `oidc-provider` npm package, run by
//! Node.js from `crates/capstan-testkit/oidc`) and a browser stand-in that signs in on
//! its development login form.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::free_port;

/// The client Capstan is registered as, and its secret.
pub const CLIENT_ID: &str = "capstan";
pub const CLIENT_SECRET: &str = "capstan-secret";

/// A running provider; stopped when dropped.
pub struct OidcProvider {
    pub port: u16,
    child: Child,
}

/// `npm ci` runs once per test process.
static INSTALLED: Mutex<bool> = Mutex::new(false);

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

fn ensure_installed() {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *installed || folder().join("node_modules").join("oidc-provider").exists() {
        *installed = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(folder())
        .status()
        .expect("npm is installed (apt-get install nodejs npm)");
    assert!(status.success(), "npm ci failed in {}", folder().display());
    *installed = true;
}

impl OidcProvider {
    /// Starts a provider that sends browsers back only to `redirect_uris`.
    pub async fn start(redirect_uris: &[String]) -> Self {
        ensure_installed();
        let port = free_port();
        let child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(folder())
            .env("PORT", port.to_string())
            .env("REDIRECT", redirect_uris.join(","))
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is installed (apt-get install nodejs)");
        let provider = Self { port, child };
        let url = format!("{}/.well-known/openid-configuration", provider.issuer());
        let start = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && response.status().is_success()
            {
                return provider;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the OpenID provider did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Plays a browser at the provider: from Capstan's `authorize_url`, signs in as
    /// `login` on the development form and consents; returns the URL the provider
    /// sends the browser back to (starting with `redirect_prefix`).
    pub async fn sign_in(&self, authorize_url: &str, login: &str, redirect_prefix: &str) -> String {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut next = authorize_url.to_owned();
        for _ in 0..20 {
            if next.starts_with(redirect_prefix) {
                return next;
            }
            let response = browser.get(&next).send().await.unwrap();
            if let Some(location) = response.headers().get("location") {
                next = self.absolute(location.to_str().unwrap());
                continue;
            }
            let page = response.text().await.unwrap();
            let (action, mut fields) =
                form(&page).unwrap_or_else(|| panic!("the provider's page has no form: {page}"));
            if fields.iter().any(|(k, v)| k == "prompt" && v == "login") {
                fields.push(("login".to_owned(), login.to_owned()));
                fields.push(("password".to_owned(), "any".to_owned()));
            }
            let response = browser.post(&action).form(&fields).send().await.unwrap();
            let location = response.headers().get("location").unwrap_or_else(|| {
                panic!("the provider answered the form with {}", response.status())
            });
            next = self.absolute(location.to_str().unwrap());
        }
        panic!("the provider never sent the browser back to {redirect_prefix}");
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.issuer())
        } else {
            location.to_owned()
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first form of `page`: its action and hidden fields.
fn form(page: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = page.find("<form")?;
    let form = &page[start
        ..page[start..]
            .find("</form>")
            .map_or(page.len(), |end| start + end)];
    let action = attribute(form, "action")?;
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(at) = rest.find("<input") {
        let end = rest[at..].find('>').map_or(rest.len(), |e| at + e);
        let input = &rest[at..end];
        if input.contains("type=\"hidden\"")
            && let (Some(name), Some(value)) = (attribute(input, "name"), attribute(input, "value"))
        {
            fields.push((name, value));
        }
        rest = &rest[end..];
    }
    Some((action, fields))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let end = tag[at..].find('"')? + at;
    Some(tag[at..end].replace("&amp;", "&"))
}
