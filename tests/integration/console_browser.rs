//! The console in a real browser: headless Chromium driven through chromedriver plays
//! the demo's incident as a person would — sign in, see the alert and its summary, roll
//! back, confirm, watch the outcome and the verification line arrive live, then read the
//! audit log. Saves a screenshot under the target directory. Without `chromium` and
//! `chromedriver` on the PATH it says so and passes, except under `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use breakwater::demo::{Demo, DemoOptions};
use fantoccini::{Client, ClientBuilder, Locator};
use tokio_util::sync::CancellationToken;

use crate::support::eventually;

/// Stops chromedriver when the test ends, however it ends.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Whether this runs under CI (`CI=true`, as GitHub Actions, GitLab CI and `.ci/run` set it).
fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

async fn start_chromedriver(binary: &PathBuf) -> (Driver, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let driver = Driver(
        Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    eventually("chromedriver to listen", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
    })
    .await;
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str, chromium: &PathBuf) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1400"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .expect("a chromium session")
}

/// Waits until an element with this text shows up on the page as it is now.
async fn wait_for_text(client: &Client, text: &str) {
    let found = client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(&format!(
            "//*[contains(normalize-space(.), \"{text}\")]"
        )))
        .await;
    if let Err(error) = found {
        let page = client.source().await.unwrap_or_default();
        panic!("the page never showed {text:?} ({error}); it shows:\n{page}");
    }
}

async fn click_button(client: &Client, label: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(&format!(
            "//button[starts-with(normalize-space(.), \"{label}\")]"
        )))
        .await
        .unwrap_or_else(|e| panic!("no button {label:?}: {e}"))
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_rolls_back_the_demo_incident_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (
        find("chromium").or_else(|| find("chromium-browser")),
        find("chromedriver"),
    ) else {
        // CI installs both (.ci/run): there a missing browser is a failure, not a skip.
        assert!(
            !running_in_ci(),
            "CI=true but chromium and chromedriver are not installed \
             (Debian: apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "skipping the browser test: chromium and chromedriver are not installed \
             (Debian: apt-get install chromium chromium-driver)"
        );
        return;
    };
    let demo = Demo::build(DemoOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: None,
        alert_after: Duration::from_secs(3),
        resolve_after: Duration::from_secs(2),
    })
    .await
    .expect("demo");
    let url = demo.url();
    let password = demo.password().to_owned();
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(demo.run_until(async move { stop.cancelled().await }))
    };
    let (_driver, webdriver) = start_chromedriver(&chromedriver).await;
    let client = browser(&webdriver, &chromium).await;

    client.goto(&format!("{url}/login")).await.expect("open");
    client
        .find(Locator::Id("user"))
        .await
        .expect("user field")
        .send_keys("demo")
        .await
        .expect("type");
    client
        .find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(&password)
        .await
        .expect("type");
    click_button(&client, "Sign in").await;

    // The scripted alert arrives live, with its summary and the suspect marked.
    wait_for_text(&client, "HighErrorRate").await;
    wait_for_text(&client, "Suspect v2.14.0").await;
    wait_for_text(&client, "DB_POOL_MAX").await;
    click_button(&client, "Roll back checkout production to v2.13.1").await;
    wait_for_text(&client, "Only you can see this").await;
    click_button(&client, "Confirm").await;
    wait_for_text(
        &client,
        "Rolled back checkout production from v2.14.0 to v2.13.1",
    )
    .await;
    wait_for_text(&client, "HighErrorRate resolved").await;

    let screenshot = client.screenshot().await.expect("screenshot");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&path, screenshot).expect("save screenshot");
    eprintln!("screenshot saved to {}", path.display());

    client
        .find(Locator::LinkText("Audit log"))
        .await
        .expect("audit link")
        .click()
        .await
        .expect("click");
    wait_for_text(&client, "Chain intact").await;
    for action in ["rollback.succeeded", "rollback.verified", "console.login"] {
        wait_for_text(&client, action).await;
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-audit.png");
    std::fs::write(&path, client.screenshot().await.expect("screenshot")).expect("save");

    client
        .find(Locator::LinkText("Deploys"))
        .await
        .expect("deploys link")
        .click()
        .await
        .expect("click");
    wait_for_text(&client, "checkout in production").await;
    wait_for_text(&client, "DB_POOL_MAX").await;
    client
        .find(Locator::Css("svg[role=img]"))
        .await
        .expect("the timeline");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-deploys.png");
    std::fs::write(&path, client.screenshot().await.expect("screenshot")).expect("save");

    client.close().await.expect("close the browser");
    stop.cancel();
    server.await.expect("join").expect("clean shutdown");
}
