//! A real headless Chromium for the console's tests, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`). Without them a test skips, saying so loudly; with
//! `REQUIRE_BROWSER_TESTS=1` (as `.ci/run` sets) it fails instead. Each test's screenshots are
//! saved in a folder of its own under the temporary directory, whose path the test prints.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

/// Two browsers at most at once: each is a few processes, and the machine has 2 cores.
static BROWSERS: Semaphore = Semaphore::const_new(2);

pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .chain([
                PathBuf::from("/usr/bin"),
                PathBuf::from("/usr/lib/chromium"),
            ])
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A new browser, or `None` (the test then returns) when none can be had.
pub async fn browser(test: &str) -> Option<Browser> {
    let (Some(driver_path), Some(chromium)) = (
        find_program(&["chromedriver", "chromium-driver"]),
        find_program(&["chromium", "chromium-browser"]),
    ) else {
        let message = "no chromium/chromedriver: apt-get install chromium chromium-driver";
        if std::env::var_os("REQUIRE_BROWSER_TESTS").is_some() {
            panic!("{test}: {message} (REQUIRE_BROWSER_TESTS is set)");
        }
        eprintln!("\n!!!!!!!! SKIPPED {test}: {message} !!!!!!!!\n");
        return None;
    };
    let permit = BROWSERS.acquire().await.unwrap();
    let port = free_port();
    let driver = Command::new(driver_path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let url = format!("http://127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..100 {
        match ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let client = client.expect("chromedriver answers within 10 s");
    let shots = std::env::temp_dir().join(format!(
        "gavel-console-{test}-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("{test}: screenshots in {}", shots.display());
    Some(Browser {
        client,
        driver,
        shots,
        _profile: profile,
        _permit: permit,
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page loads");
    }

    /// The visible text of the page's body.
    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn text_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Types into the field named `name` (replacing what it held).
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("[name=\"{name}\"]")))
            .await
            .unwrap_or_else(|e| panic!("field {name}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks the first button or link whose text is `label`, and waits for the next page
    /// (the document the click leads to, not the one it left: a mark set on the old one is
    /// gone once the new one has loaded).
    pub async fn click(&self, label: &str) {
        let xpath = format!(
            "//button[normalize-space(.)='{label}'] | //a[normalize-space(.)='{label}'] | //input[@type='submit' and @value='{label}']"
        );
        let element = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button or link {label:?}: {e}"));
        self.client
            .execute("window.__gavelLeaving = true", vec![])
            .await
            .unwrap();
        element.click().await.unwrap();
        self.settle().await;
    }

    /// Waits until a new document has loaded (after a click that navigates).
    pub async fn settle(&self) {
        for _ in 0..200 {
            let state = self
                .client
                .execute(
                    "return window.__gavelLeaving ? 'old' : document.readyState",
                    vec![],
                )
                .await
                .ok();
            if state.as_ref().and_then(|s| s.as_str()) == Some("complete") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("the click led to no new page within 10 s");
    }

    /// Signs in with `key` at the app's console.
    pub async fn sign_in(&self, base: &str, key: &str) {
        self.goto(&format!("{base}/console/sign-in")).await;
        self.fill("key", key).await;
        self.click("Sign in").await;
    }

    /// Saves a screenshot of the page as `<name>.png` in the test's folder.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Saves a screenshot of the whole page (the window made as tall as the page, up to
    /// 2400 px, then put back).
    pub async fn screenshot_full(&self, name: &str) -> PathBuf {
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 2400);
        self.client
            .set_window_size(1280, height as u32 + 140)
            .await
            .unwrap();
        let path = self.screenshot(name).await;
        self.client.set_window_size(1280, 900).await.unwrap();
        path
    }

    pub fn shots(&self) -> &Path {
        &self.shots
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}
