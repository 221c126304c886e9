"""Make docs/images/serve-page.png, the README's picture of lstmgen serve's page.

    .venv/bin/python docs/screenshot.py [--width 1200] [--out docs/images/serve-page.png]

Starts the server on the bundled model on a free loopback port, opens the
page in Debian's headless chromium (Playwright), writes a seeded text and
hovers one character so that its probability box shows.
"""

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

import lstmgen

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=760)
    parser.add_argument("--out", default=str(Path(__file__).parent / "images" / "serve-page.png"))
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(lstmgen.create_server({"alice": lstmgen.load()}), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height}, device_scale_factor=1)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        page.fill("#max_tokens", "600")
        page.fill("#seed", "7")
        page.click("#generate")
        page.wait_for_function("document.getElementById('status').textContent === 'done'")
        page.hover("#output .tok >> nth=140")
        page.screenshot(path=args.out)
        browser.close()
    server.should_exit = True
    print(args.out)


if __name__ == "__main__":
    main()
