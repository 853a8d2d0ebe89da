//! A minimal W3C WebDriver client over HTTP/1.1 (std TcpStream + serde_json),
//! and a chromedriver child process driving headless Chromium.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process, killed on drop.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it is ready;
    /// `None` if chromedriver or chromium is not installed.
    pub fn start() -> Option<Driver> {
        let exe = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        if !Path::new(&exe).exists() || !Path::new(&chromium()).exists() {
            return None;
        }
        let port = super::free_port();
        let child = Command::new(&exe)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let d = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let ready = super::wait_for(Duration::from_secs(15), || {
            std::net::TcpStream::connect(d.addr).is_ok()
                && call(d.addr, "GET", "/status", None)
                    .ok()
                    .is_some_and(|v| v["value"]["ready"] == true)
        });
        assert!(ready, "chromedriver did not become ready on {}", d.addr);
        Some(d)
    }

    /// Opens a headless Chromium window of `width` x `height`.
    pub fn session(&self, width: u32, height: u32) -> Session {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--disable-extensions",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let v = call(self.addr, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        Session {
            addr: self.addr,
            id,
            open: true,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// One WebDriver command; `Err` carries WebDriver's error.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Accept", "application/json")];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json; charset=utf-8"));
    }
    let r = super::request(addr, method, path, &headers, body.as_bytes());
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("{method} {path}: {} not JSON ({e}): {}", r.status, r.text()))?;
    if r.status != 200 {
        return Err(format!(
            "{method} {path}: {} {}: {}",
            r.status, v["value"]["error"], v["value"]["message"]
        ));
    }
    Ok(v)
}

/// A browser session.
#[derive(Debug)]
pub struct Session {
    addr: SocketAddr,
    id: String,
    open: bool,
}

/// An element reference.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session {
    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{what}", self.id);
        call(self.addr, method, &path, body.as_ref()).map(|v| v["value"].clone())
    }

    fn must(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        self.cmd(method, what, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.must("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .ok()?;
        v[ELEMENT].as_str().map(|s| Element(s.to_string()))
    }

    /// The first element matching `css`, waiting up to `limit` for it.
    pub fn wait_find(&self, css: &str, limit: Duration) -> Element {
        let end = Instant::now() + limit;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(Instant::now() < end, "no element {css:?} within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` into `e`.
    pub fn send_keys(&self, e: &Element, text: &str) {
        self.must(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    /// Clears the input `e`.
    pub fn clear(&self, e: &Element) {
        self.must("POST", &format!("/element/{}/clear", e.0), Some(json!({})));
    }

    /// Clicks the middle of `e`.
    pub fn click(&self, e: &Element) {
        self.must("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// The rendered text of `e`.
    pub fn text(&self, e: &Element) -> String {
        self.must("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1](value)` when done.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits up to `limit` for `script` to return a truthy value; returns it.
    pub fn wait_script(&self, script: &str, limit: Duration) -> Value {
        let end = Instant::now() + limit;
        loop {
            let v = self.execute(script, json!([]));
            let truthy = !(v.is_null()
                || v == json!(false)
                || v == json!(0)
                || v == json!("")
                || v == json!([]));
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < end,
                "{script:?} stayed falsy for {limit:?} (last {v}) on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.must("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64")
    }

    /// Closes the browser.
    pub fn close(mut self) {
        self.open = false;
        let _ = self.cmd("DELETE", "", None);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.open {
            let _ = self.cmd("DELETE", "", None);
        }
    }
}
