#!/usr/bin/env python3
"""Screenshots of the UI of a running `make demo` (README pictures).

Usage: VIDAR_DEMO_SECONDS=240 make demo &   # wait ~60 s for people to appear
       python3 docs/screenshots/take.py [http://127.0.0.1:8080] [out_dir]

Drives the system Chromium through chromedriver's W3C WebDriver API with the
standard library only; logs in as the demo's admin.
"""
import base64, json, os, subprocess, sys, time, urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
PORT = 9515 + os.getpid() % 400


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["value"]


def main():
    driver = subprocess.Popen(["chromedriver", f"--port={PORT}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                call("GET", "/status")
                break
            except Exception:
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,900"]}}}}
        sid = call("POST", "/session", caps)["sessionId"]
        s = f"/session/{sid}"

        def find(css):
            for _ in range(200):
                try:
                    return list(call("POST", f"{s}/element", {"using": "css selector", "value": css}).values())[0]
                except Exception:
                    time.sleep(0.1)
            raise SystemExit(f"not found: {css}")

        def shot(name):
            png = base64.b64decode(call("GET", f"{s}/screenshot"))
            with open(os.path.join(OUT, f"{name}.png"), "wb") as f:
                f.write(png)
            print("wrote", os.path.join(OUT, f"{name}.png"))

        def js(script):
            return call("POST", f"{s}/execute/sync", {"script": script, "args": []})

        call("POST", f"{s}/url", {"url": f"{BASE}/login"})
        find("#user")
        shot("login")
        call("POST", f"{s}/element/{find('#user')}/value", {"text": "admin"})
        call("POST", f"{s}/element/{find('#password')}/value", {"text": "vidar-demo"})
        call("POST", f"{s}/element/{find('#submit')}/click", {})
        find(".tile img")
        for _ in range(100):
            if js("return [...document.querySelectorAll('.tile img')].filter(i => i.naturalWidth > 0).length") >= 2:
                break
            time.sleep(0.2)
        time.sleep(2)
        fcp = js("return (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
        print(f"first contentful paint of the main page: {fcp:.0f} ms" if fcp else "first paint: n/a")
        shot("live-tiles")
        # Follow the identity seen on the most cameras.
        ident = js("""return fetch('/api/identities?limit=200').then(r => r.json()).then(j =>
            (j.identities || []).sort((a, b) => b.cameras - a.cameras || b.sightings - a.sightings)[0].identity)""")
        call("POST", f"{s}/element/{find('#identity')}/value", {"text": str(ident)})
        call("POST", f"{s}/element/{find('#by-identity button')}/click", {})
        for _ in range(100):
            if js("return document.querySelectorAll('#timeline li.sighting').length") >= 2:
                break
            time.sleep(0.2)
        time.sleep(1)
        shot("trajectory")
        call("POST", f"{s}/element/{find('#tab-cluster')}/click", {})
        time.sleep(2)
        shot("cluster")
        call("DELETE", s)
    finally:
        driver.terminate()


main()
