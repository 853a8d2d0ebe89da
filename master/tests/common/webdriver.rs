//! A chromedriver child process driving headless Chromium, and a blocking
//! face over fantoccini's WebDriver client (the W3C protocol is
//! fantoccini's; this file only starts the driver and keeps the browser test
//! synchronous: one current-thread runtime per session).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element as WdElement;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

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
        // Port 0: chromedriver binds a port the kernel picks and says which.
        let mut child = Command::new(&exe)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let out = child.stdout.take().expect("chromedriver stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keeps reading, so chromedriver never blocks on a full pipe.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let port = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').trim().parse::<u16>().ok());
                if let Some(port) = port {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let Ok(port) = rx.recv_timeout(Duration::from_secs(15)) else {
            let _ = child.kill();
            panic!("chromedriver did not say which port it listens on");
        };
        let d = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let ready = super::wait_for(Duration::from_secs(15), || {
            std::net::TcpStream::connect(d.addr).is_ok() && {
                let r = super::request(d.addr, "GET", "/status", &[], b"");
                serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v["value"]["ready"] == true)
            }
        });
        assert!(ready, "chromedriver did not become ready on {}", d.addr);
        Some(d)
    }

    /// Opens a headless Chromium window of `width` x `height`.
    pub fn session(&self, width: u32, height: u32) -> Session {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--disable-extensions",
                         format!("--window-size={width},{height}")],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("capabilities are an object")
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let url = format!("http://{}", self.addr);
        let client = rt
            .block_on(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url),
            )
            .unwrap_or_else(|e| panic!("new WebDriver session on {url}: {e}"));
        Session {
            rt,
            client: Some(client),
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

/// A browser session; every call blocks until the browser answered.
#[derive(Debug)]
pub struct Session {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
}

/// An element reference.
#[derive(Debug, Clone)]
pub struct Element(WdElement);

impl Session {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    /// Runs one WebDriver command; a failure fails the test, naming `what`.
    fn must<T>(&self, what: &str, command: impl Future<Output = Result<T, CmdError>>) -> T {
        self.rt
            .block_on(command)
            .unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.must(url, self.client().goto(url));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.must("current URL", self.client().current_url())
            .to_string()
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        self.rt
            .block_on(self.client().find(Locator::Css(css)))
            .ok()
            .map(Element)
    }

    /// The first element matching `css`, waiting up to `limit` for it.
    pub fn wait_find(&self, css: &str, limit: Duration) -> Element {
        let wait = self
            .client()
            .wait()
            .at_most(limit)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css));
        match self.rt.block_on(wait) {
            Ok(e) => Element(e),
            Err(e) => panic!("no element {css:?} within {limit:?}: {e}"),
        }
    }

    /// Types `text` into `e`.
    pub fn send_keys(&self, e: &Element, text: &str) {
        self.must("send keys", e.0.send_keys(text));
    }

    /// Clears the input `e`.
    pub fn clear(&self, e: &Element) {
        self.must("clear", e.0.clear());
    }

    /// Clicks the middle of `e`.
    pub fn click(&self, e: &Element) {
        self.must("click", e.0.click());
    }

    /// The rendered text of `e`.
    pub fn text(&self, e: &Element) -> String {
        self.must("text", e.0.text())
    }

    /// Runs `script` (a function body; `arguments` are `args`, an array) and returns its value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.must(script, self.client().execute(script, arguments(args)))
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1](value)` when done.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.must(script, self.client().execute_async(script, arguments(args)))
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
        self.must("screenshot", self.client().screenshot())
    }

    /// Closes the browser.
    pub fn close(mut self) {
        if let Some(c) = self.client.take() {
            self.must("close", c.close());
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
    }
}

fn arguments(args: Value) -> Vec<Value> {
    match args {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}
