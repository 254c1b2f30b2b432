"""The web chat at / in a real headless browser (Debian's chromium and chromedriver, driven by
selenium): type two turns, see two streamed replies, and check they are the server's replies
to the whole conversation, arriving in as many pieces as the API streams them. Lengths are forced
(min_tokens = max_tokens), so nothing depends on what the tiny model says. Without chromium the
test is skipped with its reason, except where $DIALOGPT_REQUIRE_BROWSER=1 (.ci/run sets it and
installs chromium): there a skip would hide the check, so it fails."""
from __future__ import annotations

import json
import os
import shutil

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from lsp_serve.launch import Server


@pytest.fixture(scope="module", autouse=True)
def needs_chromium():
    """Before the model and server fixtures: skip (or, where required, fail) at once."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        why = "chromium and chromedriver are needed: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("DIALOGPT_REQUIRE_BROWSER") == "1":
            pytest.fail(why + "; $DIALOGPT_REQUIRE_BROWSER=1 says this machine must run it")
        pytest.skip(why)


def chromium(width: int = 1100, height: int = 720) -> webdriver.Chrome:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture(scope="module")
def server(tiny_dialogue_models):
    # every reply 4-12 tokens: the test must not depend on how long a tiny model's reply happens to be
    args = ["--model", str(tiny_dialogue_models["forward"]), "--log_level", "warning", "--min_new_tokens", "4",
            "--max_new_tokens", "12"]
    with Server(args, env={"OMP_NUM_THREADS": "1"}) as s:
        yield s


def replies(browser):
    return browser.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-done='1']")


def test_two_turns_stream_into_the_page(server, tiny_dialogue_models):
    pairs = tiny_dialogue_models["pairs"]
    turns = [pairs[0][0][0], pairs[2][0][0]]
    browser = chromium()
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.find_element(By.ID, "model").text == "forward")
        for field, value in (("seed", "7"), ("max_tokens", "12"), ("min_tokens", "12")):
            browser.find_element(By.ID, field).send_keys(value)
        box = browser.find_element(By.ID, "input")
        for i, text in enumerate(turns, 1):
            box.send_keys(text, Keys.ENTER)
            wait.until(lambda b: len(replies(b)) == i)
        shown = [r.text for r in replies(browser)]
        chunks = [int(r.get_attribute("data-chunks")) for r in replies(browser)]
        messages = browser.execute_script("return window.chat.messages")
        errors = browser.find_elements(By.CSS_SELECTOR, ".msg.error")
        assert not errors, [e.text for e in errors]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert [m["content"] for m in messages[::2]] == turns
        # the page sent the whole conversation: the second reply is the API's reply to all of it,
        # in the same pieces the API streams (one per token that completes text)
        body = {"model": "forward", "messages": messages[:3], "seed": 7, "max_tokens": 12, "min_tokens": 12}
        again = httpx.post(server.url + "/v1/chat/completions", timeout=60, json=body).json()
        assert again["usage"]["completion_tokens"] == 12
        assert again["choices"][0]["message"]["content"] == shown[1] == messages[3]["content"]
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body | {"stream": True}, timeout=60) as r:
            events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
        assert chunks[1] == sum(1 for e in events if e["choices"] and e["choices"][0]["delta"].get("content")) >= 1
        browser.find_element(By.ID, "reset").click()
        assert browser.execute_script("return window.chat.messages.length") == 0
        assert not browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")
    finally:
        browser.quit()
