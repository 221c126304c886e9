"""The page at / of lstmgen serve, in a real headless browser: Debian's
chromium driven by Playwright (its own browser download cannot work
offline, so the executable is given). The test types a prompt, sees text
stream in, presses Stop, moves a slider and sees it take effect, hovers a
character for its probability, and checks a phone-width window."""

import os
import shutil
import time

import pytest

import lstmgen
from conftest import start_server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("LSTMGEN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# The flags keep chromium from reaching for the network at start (this machine has none).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        message = "needs Debian's chromium (apt-get install chromium) or LSTMGEN_CHROMIUM"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served():
    model = lstmgen.load()
    app = lstmgen.create_server({"alice": model})
    srv, thread, port = start_server(app)
    yield model, app, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def written(page) -> str:
    """The generated text on the page (the prompt shown before it left out)."""
    return page.evaluate("[...document.querySelectorAll('#output > span:not(.prompt)')]"
                         ".map(s => s.textContent).join('')")


def generate_and_wait(page, timeout_ms=60_000):
    page.click("#generate")
    page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=timeout_ms)
    return written(page)


def test_type_stream_stop_slide_and_hover(browser, served):
    import httpx

    model, app, base = served
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base)
    page.wait_for_function("document.getElementById('status').textContent === 'ready'")
    assert page.locator("#model option").first.get_attribute("value") == "alice"
    assert not page.is_visible("#key-field")  # this server needs no key

    # Type a prompt, ask for much more than will be written, and see the text grow while it streams.
    page.fill("#prompt", "The Queen said")
    page.fill("#max_tokens", "4000")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#output .tok').length > 20")
    assert page.is_enabled("#stop") and not page.is_enabled("#generate")
    grown = page.evaluate("document.querySelectorAll('#output .tok').length")
    page.wait_for_function(f"document.querySelectorAll('#output .tok').length > {grown}")
    page.click("#stop")
    page.wait_for_function("document.getElementById('status').textContent === 'stopped'")
    stopped_at = len(written(page))
    assert 20 < stopped_at < 4000 and page.is_enabled("#generate")
    slot = app.state.slots["alice"]
    for _ in range(100):  # the stream left the batch on the server too
        if not slot.batcher.streams and not slot.batcher.active:
            break
        time.sleep(0.05)
    assert slot.batcher.streams == 0 and not slot.batcher.active
    time.sleep(0.3)
    assert len(written(page)) == stopped_at  # nothing more arrives after Stop

    # Hover a character: its probability and the model's other candidates.
    page.hover("#output .tok >> nth=5")
    tip = page.wait_for_selector("#tip", state="visible", timeout=5000)
    assert "%" in tip.inner_text()
    assert page.locator("#tip .alt").count() >= 2 and page.locator("#tip .alt.chosen").count() <= 1

    # Temperature slider to 0 (Home key, as a user would): the text becomes the model's argmax,
    # the same as the API gives at temperature 0 with every other setting as the page sends it.
    page.fill("#max_tokens", "200")
    page.focus("#temperature")
    page.keyboard.press("Home")
    assert page.inner_text("#temperature-value") == "0.00"
    first = generate_and_wait(page)
    second = generate_and_wait(page)
    expected = httpx.post(f"{base}/v1/completions", json={"prompt": "The Queen said", "max_tokens": 200,
                                                           "temperature": 0}).json()["choices"][0]["text"]
    assert first == second == expected
    page.focus("#temperature")
    page.keyboard.press("End")  # temperature 2: the text changes
    assert page.inner_text("#temperature-value") == "2.00"
    assert generate_and_wait(page) != expected
    page.close()


def test_phone_width(browser, served):
    _, _, base = served
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(base)
    page.wait_for_function("document.getElementById('status').textContent === 'ready'")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
    for selector in ("#prompt", "#generate", "#output", "#temperature"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
    # One column: the controls come under the text.
    assert page.locator("aside.controls").bounding_box()["y"] > page.locator("#output").bounding_box()["y"]
    page.fill("#max_tokens", "60")
    text = generate_and_wait(page)
    assert len(text) == 60
    page.tap("#output .tok >> nth=3")
    page.wait_for_selector("#tip", state="visible", timeout=5000)
    page.close()


def test_a_server_with_a_key_asks_for_it(browser):
    model = lstmgen.load()
    srv, thread, port = start_server(lstmgen.create_server({"alice": model}, api_key="k3y"))
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.getElementById('status').textContent === 'needs an API key'")
        assert page.is_visible("#key-field")
        page.fill("#api_key", "k3y")
        page.press("#api_key", "Tab")  # 'change' fires as the field loses focus
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        page.fill("#max_tokens", "30")
        assert len(generate_and_wait(page)) == 30
        page.close()
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
