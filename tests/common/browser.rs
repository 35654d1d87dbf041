//! A headless Chromium that a test drives through WebDriver
//! (`chromedriver`, Debian's `chromium-driver`, with the `fantoccini`
//! client): open a page, fill and submit forms, click, read text, run a
//! probe script, and save a PNG of every step under
//! `<target dir>/console-screenshots/<test>/` (CI keeps that folder as
//! an artefact).
//!
//! [`Browser::start`] returns `None` after one line saying the test is
//! skipped when `chromium` or `chromedriver` is not installed, unless
//! `CMC_REQUIRE_BROWSER` is set (CI, `.ci/run`): then it fails.
//!
//! Include it with `#[path = "common/browser.rs"] mod browser;`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// How long a page or an element may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// A chromedriver process (killed and reaped when dropped) and a browser
/// session on it.
pub struct Browser {
    client: Client,
    driver: Driver,
    shots: PathBuf,
    step: usize,
    /// The address of the site under test, for [`Browser::open`].
    pub base: String,
}

/// chromedriver, in a process group of its own with the browser it
/// starts: dropping it kills the whole group, so that a failing test
/// leaves no Chromium behind.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first of `names` found in `PATH` or as an absolute path.
fn program(names: &[&str]) -> Option<PathBuf> {
    for name in names {
        let path = Path::new(name);
        if path.is_absolute() {
            if path.is_file() {
                return Some(path.to_owned());
            }
            continue;
        }
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Whether this process runs as root (the owner of `/proc/self` is the
/// effective user).
fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    false
}

/// The folder of a test's screenshots: `console-screenshots/<test>` in
/// the target directory the test binary was built in (so
/// `CARGO_TARGET_DIR` is followed), emptied first.
pub fn screenshot_dir(test: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<binary>
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is in <target>/<profile>/deps")
        .to_owned();
    let dir = target.join("console-screenshots").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for the test `test`,
    /// at 1280×900, on the site at `base` (`http://127.0.0.1:port`).
    /// `None` (after saying so) when the browser is not installed and
    /// `CMC_REQUIRE_BROWSER` is not set.
    pub async fn start(test: &str, base: SocketAddr) -> Option<Browser> {
        let chromium = program(&["chromium", "chromium-browser", "google-chrome"]);
        let driver = program(&["chromedriver", "/usr/lib/chromium/chromedriver"]);
        let (chromium, driver) = match (chromium, driver) {
            (Some(c), Some(d)) => (c, d),
            (c, d) => {
                let missing = match (c, d) {
                    (None, None) => "chromium and chromedriver are",
                    (None, _) => "chromium is",
                    _ => "chromedriver is",
                };
                assert!(
                    std::env::var_os("CMC_REQUIRE_BROWSER").is_none(),
                    "CMC_REQUIRE_BROWSER is set but {missing} not installed \
                     (apt-get install chromium chromium-driver)"
                );
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: SKIPPED, {missing} not installed \
                     (apt-get install chromium chromium-driver; CI sets CMC_REQUIRE_BROWSER=1)"
                );
                return None;
            }
        };
        let port = free_port();
        let mut command = Command::new(&driver);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", driver.display()));
        let driver_process = Driver(child);
        let mut args = vec![
            "--headless=new",
            "--disable-gpu",
            // Containers' /dev/shm is small; Chromium then crashes tabs.
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--no-first-run",
            "--no-default-browser-check",
        ];
        // Chromium refuses to start as root with its sandbox (containers,
        // CI): only then is it turned off.
        if running_as_root() {
            args.push("--no-sandbox");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "no browser session from {}: {e}",
                        driver.display()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Some(Browser {
            client,
            driver: driver_process,
            shots: screenshot_dir(test),
            step: 0,
            base: format!("http://{base}"),
        })
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `path` on the site under test and waits for it to load.
    pub async fn open(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// The path and query of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits for the element `css` and returns it.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} on the page: {e}"))
    }

    /// Types `text` into the field `css` (emptied first).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
    }

    /// Clicks the element `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click on {css}: {e}"));
    }

    /// Clicks the element `css` and waits until the page shown is
    /// another one (a link followed, a form submitted).
    pub async fn click_and_wait(&self, css: &str) {
        let before = self
            .client
            .execute("return window.performance.timeOrigin", vec![])
            .await
            .expect("the page's time origin");
        self.click(css).await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self
                .client
                .execute(
                    "return document.readyState === 'complete' ? window.performance.timeOrigin : null",
                    vec![],
                )
                .await;
            if let Ok(origin) = now {
                if !origin.is_null() && origin != before {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "clicking {css} never showed another page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text the element `css` shows.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// Runs `script` (a function body: `return ...`) in the page and
    /// returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("the window resized");
    }

    /// Saves a PNG of the page shown as `NN-label.png`; returns its path.
    pub async fn shot(&mut self, label: &str) -> PathBuf {
        self.step += 1;
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        let path = self.shots.join(format!("{:02}-{label}.png", self.step));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// The folder the screenshots are saved in.
    pub fn shots(&self) -> &Path {
        &self.shots
    }

    /// Ends the browser session and chromedriver.
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        let _ = client.close().await;
        drop(driver);
    }
}
