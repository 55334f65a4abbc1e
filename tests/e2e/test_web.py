"""The web mixer in a real browser: headless Chromium (Selenium, the system chromedriver) driving
`soundscape play --web` with the tiny model, playing in real time into a private PulseAudio null sink.

Two players start together and are shared by the tests: A (with --web-save-dir) takes the controls
one by one and ends with "fade out and stop"; B has its 20 s sleep timer set early, from its own tab,
and the last tests wait for it to end. A third process asks for A's port and must play on without
the mixer. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import headless_chrome, start_pulse, stop_pulse, wait_for
from soundscape.cli import main
from soundscape.play.control_socket import request as control
from soundscape.scene import load_scene

SCENE = """\
name: Web test
description: Two layers for the mixer tests.
seed: 5
layers:
  birds: {prompt: birds singing, weight: 0.8}
  stream: {prompt: a stream of water, weight: 0.4}
generation: {chunk_seconds: 2.56, overlap_seconds: 0.64, steps: 3, guidance_scale: 3.0}
evolution: {drift: {depth: 0, period_seconds: 60}, transition_seconds: 2}
output: {fade_in_seconds: 0.5, sample_rate: 48000, channels: 2}
"""

TIMER_S = 20.0
MISSING = [p for p in ("chromium", "chromedriver") if not shutil.which(p)]
MISSING_PULSE = [p for p in ("pulseaudio", "parec") if not shutil.which(p)]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def chunks(path: Path) -> list[dict]:
    return [r for r in rows(path) if "chunk" in r]


# --- A private PulseAudio with a null sink: PortAudio's ALSA `default` plays into it in real time ---

@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    if MISSING_PULSE:
        pytest.skip(f"needs {' and '.join(MISSING_PULSE)} (apt: pulseaudio pulseaudio-utils libasound2-plugins)")
    env = start_pulse(tmp_path_factory.mktemp("pulse"), sinks="ab")  # one sink per player: each level alone
    try:
        yield env
    finally:
        stop_pulse(env)


def level_db(env, sink: str, seconds: float = 1.0) -> float:
    """RMS of what reaches a null sink now (its monitor, 16 kHz mono), in dBFS."""
    proc = subprocess.Popen(["parec", "-d", f"{sink}.monitor", "--raw", "--format=float32le", "--channels=1",
                             "--rate=16000"], env=env, stdout=subprocess.PIPE)
    try:
        # It records in real time: reading this much takes `seconds` (and a little, skipped, to settle).
        data = proc.stdout.read(int((seconds + 0.2) * 16000) * 4)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    x = np.frombuffer(data, np.float32)[int(0.2 * 16000):]
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


# --- Players ---------------------------------------------------------------------------------------

class Player:
    def __init__(self, folder: Path, model: Path, env: dict, *extra: str):
        folder.mkdir()
        self.folder = folder
        self.scene = folder / "scene.yaml"
        self.scene.write_text(SCENE)
        self.timeline, self.sock = folder / "t.jsonl", folder / "ctl" / "player.sock"
        cmd = [sys.executable, "-m", "soundscape", "play", str(self.scene), "--model", str(model),
               "--control", str(self.sock), "--timeline", str(self.timeline), *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ended_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
        self.proc.wait()
        self.ended_at = time.monotonic()

    def ready(self, web: bool = True, timeout: float = 90.0) -> None:
        def up():
            assert self.proc.poll() is None, "\n".join(self.lines)
            return (not web or self.url) and self.sock.exists() and len(chunks(self.timeline)) >= 2
        wait_for(up, timeout)

    @property
    def url(self) -> str | None:
        found = [line for line in self.lines if line.startswith("web: http://")]
        return found[0].removeprefix("web: ") if found else None

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])

    @property
    def token(self) -> str:
        return self.url.split("token=")[1]

    def status(self) -> dict:
        return control(self.sock, {"cmd": "status"})["status"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def players(tmp_path_factory, tiny_model_dir, pulse):
    root = tmp_path_factory.mktemp("web")
    saves = root / "saves"
    saves.mkdir()
    a = Player(root / "a", tiny_model_dir, dict(pulse, PULSE_SINK="a"), "--web", "--web-save-dir", str(saves))
    b = Player(root / "b", tiny_model_dir, dict(pulse, PULSE_SINK="b"), "--web")
    started = [a, b]
    try:
        a.ready()
        # A third player asks for A's port: it must say so in one line and play on without the mixer.
        c = Player(root / "c", tiny_model_dir, pulse, "--output-device", "null", "--web-port", str(a.port),
                   "--duration", "2")
        started.append(c)
        b.ready()
        yield a, b, c, saves
    finally:
        for p in started:
            p.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if MISSING:
        pytest.skip(f"needs {' and '.join(MISSING)} (apt: chromium chromium-driver)")
    driver = headless_chrome("--window-size=1280,900", "--mute-audio")
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, url: str) -> str:
    driver.switch_to.new_window("tab")
    driver.get(url)
    wait_for(lambda: driver.find_elements("css selector", "li.layer"), 20)
    return driver.current_window_handle


@pytest.fixture(scope="module")
def tabs(browser, players):
    a, b, _, _ = players
    return {"a": _open(browser, a.url), "b": _open(browser, b.url)}


@pytest.fixture()
def page_a(browser, tabs):
    browser.switch_to.window(tabs["a"])
    return browser


@pytest.fixture()
def page_b(browser, tabs):
    browser.switch_to.window(tabs["b"])
    return browser


@pytest.fixture(scope="module")
def b_sleep(browser, tabs, players):
    """B's 20 s sleep timer, typed into its page; returns when it was set."""
    b = players[1]
    browser.switch_to.window(tabs["b"])
    field = browser.find_element("id", "timer-custom")
    field.send_keys(f"{TIMER_S:g}s\n")
    set_at = time.monotonic()
    sleep = wait_for(lambda: b.status()["sleep"], 5)
    assert TIMER_S - 2 <= sleep["remaining_s"] <= TIMER_S
    return set_at


def row(driver, name: str):
    return driver.find_element("css selector", f'li[data-name="{name}"]')


def api_requests(driver) -> list[str]:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/api/'))")


def ask(player, method: str, path: str, body=None, headers=None, token: str | None = "ok"):
    """One request to a player's mixer, by hand: (status, headers, text)."""
    conn = http.client.HTTPConnection("127.0.0.1", player.port, timeout=10)
    hdrs = {"Host": f"127.0.0.1:{player.port}"}
    if token is not None:
        hdrs["X-Soundscape-Token"] = player.token if token == "ok" else token
    if body is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
    res = conn.getresponse()
    text = res.read().decode()
    conn.close()
    return res.status, dict(res.getheaders()), text


def hop_and_gen(player) -> tuple[float, float]:
    cs = chunks(player.timeline)
    return cs[0]["end_s"] - cs[0]["start_s"], max(r["gen_s"] for r in cs)


# --- The page --------------------------------------------------------------------------------------

def test_page_shows_the_scene_and_live_status_pushed_not_polled(page_a):
    d = page_a
    assert d.find_element("id", "scene-name").text == "Web test"
    assert d.find_element("id", "scene-description").text == "Two layers for the mixer tests."
    assert [e.get_attribute("data-name") for e in d.find_elements("css selector", "li.layer")] == ["birds", "stream"]
    assert row(d, "stream").find_element("css selector", ".prompt").get_attribute("value") == "a stream of water"
    assert d.find_element("id", "st-steps").text == "3"
    wait_for(lambda: d.find_element("id", "phase").text == "playing", 10)
    # The fresh share (issue 32), from the status JSON the page is pushed.
    assert d.find_element("id", "st-fresh").text.endswith(" %"), d.find_element("id", "st-fresh").text
    before, requests = d.find_element("id", "elapsed").text, api_requests(d)
    time.sleep(2.2)
    # The clock moved and the meter and spectrogram show sound, with no request from the page.
    assert d.find_element("id", "elapsed").text != before
    assert api_requests(d) == requests and all(r.endswith("/api/events") for r in requests)
    assert d.find_element("id", "meter-db").text.endswith("dB") and "∞" not in d.find_element("id", "meter-db").text
    lit = d.execute_script("""
        const c = document.getElementById('spectrogram');
        const px = c.getContext('2d').getImageData(c.width - 40, 0, 40, c.height).data;
        let n = 0; for (let i = 0; i < px.length; i += 4) if (px[i + 1] > 40) n++; return n;""")
    assert lit > 100


def test_save_as_scene_downloads_without_a_save_dir(page_b, browser):
    d = page_b
    d.find_element("id", "save-name").clear()
    d.find_element("id", "save-name").send_keys("Sleepy\n")
    path = wait_for(lambda: (browser.downloads / "sleepy.yaml").exists() and browser.downloads / "sleepy.yaml", 10)
    assert main(["validate", str(path)]) == 0
    assert load_scene(path).name == "Sleepy"


def test_sleep_timer_counts_down_in_the_page(page_b, b_sleep):
    # 20 s is shorter than the 30 s fade, so it fades all the way: the page says so.
    wait_for(lambda: page_b.find_element("id", "timer-display").text.startswith("fading · 00:"), 5)
    assert page_b.find_element("id", "timer-cancel").get_attribute("disabled") == "true"


def test_slider_to_zero_reaches_the_timeline_with_few_requests(page_a, players):
    from selenium.webdriver.common.action_chains import ActionChains

    a = players[0]
    d = page_a
    slider = row(d, "birds").find_element("css selector", "input.weight")
    d.execute_script("window.inputs = 0; arguments[0].addEventListener('input', () => window.inputs++)", slider)
    sent_before = len([r for r in api_requests(d) if r.endswith("/api/weights")])
    tweaks_before = len([r for r in rows(a.timeline) if r.get("event") == "tweak"])
    # From the middle to just past the left end, in small steps, like a hand.
    steps, left = 36, slider.rect["width"] / 2 + 6
    drag = ActionChains(d, duration=10).click_and_hold(slider)
    for i in range(steps):
        drag = drag.move_by_offset(-(round(left * (i + 1) / steps) - round(left * i / steps)), 0).pause(0.02)
    drag.release().perform()
    assert slider.get_attribute("value") == "0"
    hop, gen = hop_and_gen(a)
    # The project's tweak bound (test_live): heard within one hop plus one generation, and exactly 0
    # once the transition (2 s) is over: two more chunks at most.
    wait_for(lambda: [r for r in chunks(a.timeline) if r["weights"]["birds"] == 0.0], 3 * hop + gen + 2.0)
    tweaks = [r for r in rows(a.timeline) if r.get("event") == "tweak"][tweaks_before:]
    # The last change's own chunk may come a chunk after the first at 0 (the transition from an earlier one
    # reaches 0 too): one more hop and generation, whatever this machine's speed.
    heard = wait_for(lambda: [r for r in rows(a.timeline) if r.get("event") == "tweak_heard"
                              and r["epoch"] == tweaks[-1]["epoch"]], hop + gen + 5.0)[0]
    assert 0 <= heard["latency_s"] <= hop + gen + 0.5, heard
    # Coalesced on both sides: dozens of input events, a few requests, fewer changes.
    inputs = d.execute_script("return window.inputs")
    sent = len([r for r in api_requests(d) if r.endswith("/api/weights")]) - sent_before
    assert inputs >= 15 and sent <= 8 and len(tweaks) <= sent, (inputs, sent, len(tweaks))
    assert a.status()["set_weights"]["birds"] == 0.0


def test_add_layer_appears_in_the_timeline(page_a, players):
    a = players[0]
    d = page_a
    d.find_element("id", "new-name").send_keys("owls")
    d.find_element("id", "new-prompt").send_keys("owls hooting in the distance at night\n")
    wait_for(lambda: d.find_elements("css selector", 'li[data-name="owls"]'), 10)
    hop, gen = hop_and_gen(a)
    added = wait_for(lambda: [r for r in chunks(a.timeline) if "owls" in r["weights"]], hop + gen + 5.0)[0]
    assert 0 < added["weights"]["owls"] <= 0.5
    assert a.status()["layers"]["owls"] == "owls hooting in the distance at night"
    assert d.find_element("id", "new-name").get_attribute("value") == ""  # the form is ready for the next one


def test_edit_prompt_in_place(page_a, players):
    from selenium.webdriver.common.keys import Keys

    a = players[0]
    d = page_a
    prompt = row(d, "stream").find_element("css selector", ".prompt")
    prompt.click()
    prompt.send_keys(Keys.CONTROL, "a")
    prompt.send_keys("rain on a tin roof\n")
    wait_for(lambda: a.status()["layers"]["stream"] == "rain on a tin roof", 10)
    assert [r for r in rows(a.timeline) if r.get("event") == "tweak" and r["kind"] == "prompt"]
    # An empty prompt: the one-line error shows, the prompt goes back, nothing changes.
    prompt.click()
    prompt.send_keys(Keys.CONTROL, "a")
    prompt.send_keys(Keys.BACKSPACE, "\n")
    # The previous change's toast may still show: wait for this one's.
    expected = "prompt: expected a non-empty description of the sound, got \"\""
    wait_for(lambda: d.find_element("id", "toast").text == expected, 10)
    wait_for(lambda: prompt.get_attribute("value") == "rain on a tin roof", 5)
    assert a.status()["layers"]["stream"] == "rain on a tin roof"


def test_remove_layer(page_a, players):
    a = players[0]
    d = page_a
    row(d, "owls").find_element("css selector", "button.remove").click()
    wait_for(lambda: not d.find_elements("css selector", 'li[data-name="owls"]'), 10)
    assert "owls" not in a.status()["layers"]
    n = len(chunks(a.timeline))
    wait_for(lambda: [r for r in chunks(a.timeline)[n:] if "owls" not in r["weights"]], 15)


def test_master_volume_changes_what_the_device_plays(page_a, players, pulse):
    from selenium.webdriver.common.keys import Keys

    a = players[0]
    d = page_a
    loud = level_db(pulse, "a")
    volume = d.find_element("id", "volume")
    volume.send_keys(Keys.HOME)
    wait_for(lambda: a.status()["volume"] == 0.0, 5)
    assert d.find_element("id", "volume-value").text == "0%"
    # Silence at once, not after the next chunk: only the device's and PulseAudio's buffers (~0.4 s) lag.
    time.sleep(0.6)
    assert level_db(pulse, "a") < loud - 40
    volume.send_keys(Keys.END)
    wait_for(lambda: a.status()["volume"] == 1.0, 5)
    time.sleep(0.6)
    assert abs(level_db(pulse, "a") - (loud + 20 * np.log10(1.0 / 0.8))) < 4.0


def test_width_slider_changes_the_stereo_image_from_the_next_chunk(page_a, players):
    from selenium.webdriver.common.keys import Keys

    a = players[0]
    d = page_a
    assert a.status()["width"] == 0.5 and a.status()["channels"] == 2  # the scene's default, on a stereo sink
    d.find_element("id", "width").send_keys(Keys.HOME)
    wait_for(lambda: a.status()["width"] == 0.0, 5)
    assert d.find_element("id", "width-value").text == "0%"
    # A live change like the others: logged when it arrives and when its audio is heard.
    wait_for(lambda: [r for r in rows(a.timeline) if r.get("event") == "tweak_heard" and r["kind"] == "width"], 30)
    assert [r for r in rows(a.timeline) if r.get("event") == "tweak" and r.get("width") == 0.0]
    d.find_element("id", "width").send_keys(Keys.END)
    wait_for(lambda: a.status()["width"] == 1.0, 5)


def test_sleep_timer_set_extend_cancel(page_a, players):
    a = players[0]
    d = page_a
    d.find_element("css selector", '.presets button[data-seconds="1800"]').click()
    assert 1795 <= wait_for(lambda: a.status()["sleep"], 5)["remaining_s"] <= 1800
    wait_for(lambda: d.find_element("id", "timer-display").text.startswith("29:5"), 5)
    d.find_element("id", "timer-extend").click()
    wait_for(lambda: 2695 <= a.status()["sleep"]["remaining_s"] <= 2700, 5)
    d.find_element("id", "timer-cancel").click()
    wait_for(lambda: a.status()["sleep"] is None, 5)
    wait_for(lambda: d.find_element("id", "timer-display").text == "off", 5)
    assert d.find_element("id", "timer-extend").get_attribute("disabled") == "true"


# --- Security and bodies, by hand --------------------------------------------------------------------

def test_token_and_host_are_checked(players):
    a = players[0]
    assert ask(a, "GET", "/", token=None)[0] == 403
    assert ask(a, "GET", "/?token=wrong", token=None)[0] == 403
    assert ask(a, "GET", "/api/events", token="wrong")[0] == 403
    assert ask(a, "POST", "/api/weights", {"weights": {"birds": 1}}, token=None,
                headers={"Cookie": f"soundscape_{a.port}=wrong"})[0] == 403
    assert ask(a, "GET", "/static/app.js", token=None)[0] == 403
    status, headers, _ = ask(a, "GET", f"/?token={a.token}", token=None)
    assert status == 303 and f"soundscape_{a.port}={a.token}" in headers["set-cookie"]
    assert "samesite=strict" in headers["set-cookie"].lower() and "httponly" in headers["set-cookie"].lower()
    # DNS rebinding: the right token under a foreign name is still refused.
    assert ask(a, "GET", "/", headers={"Host": f"evil.example:{a.port}"})[0] == 421
    assert ask(a, "GET", "/", headers={"Host": f"localhost:{a.port}"})[0] == 200
    # No CORS: a foreign page's request is refused, and nothing ever allows one.
    status, headers, _ = ask(a, "POST", "/api/weights", {"weights": {"birds": 0}},
                              headers={"Origin": "http://evil.example"})
    assert status == 403
    status, headers, _ = ask(a, "OPTIONS", "/api/weights", headers={"Origin": f"http://127.0.0.1:{a.port}",
                                                                      "Access-Control-Request-Method": "POST"})
    assert status == 405 and not any(k.lower().startswith("access-control") for k in headers)
    assert ask(a, "POST", "/api/weights", {"weights": {"birds": 0}}, headers={"Content-Type": "text/plain"})[0] == 400


@pytest.mark.parametrize("method, path, body, message", [
    ("POST", "/api/weights", {"weights": {"birds": 2}}, "weights.birds: expected a number from 0 to 1, got 2"),
    ("POST", "/api/weights", {"weights": {"owls": 0.5}}, "no layer 'owls'; layers are: birds, stream"),
    ("POST", "/api/weights", {"weights": {"birds": 0.5}, "fade": 1}, "fade: unknown key"),
    ("PUT", "/api/volume", {"volume": "loud"}, "volume: expected a number from 0 to 1, got \"loud\""),
    ("PUT", "/api/width", {"width": 2}, "width: expected a number from 0 to 1, got 2"),
    ("POST", "/api/timer", {"action": "set", "seconds": "soon"},
     "seconds: expected seconds as a number or a duration like 90s or 5m, got \"soon\""),
    ("POST", "/api/layers", {"name": "owls at night", "prompt": "owls", "weight": 0.5},
     "layers.owls at night: expected a layer name of letters, digits, '-' or '_', got 'owls at night'"),
    ("POST", "/api/layers", {"name": "birds", "prompt": "more birds", "weight": 0.5},
     "there is already a layer 'birds'; change its prompt instead"),
    ("PUT", "/api/layers/stream", {"prompt": "x" * 1001}, "prompt: expected at most 1000 characters (1001 given), "
                                                          "got \"" + "x" * 60 + "...\""),
    ("DELETE", "/api/layers/owls", None, "no layer 'owls'; layers are: birds, stream"),
    ("POST", "/api/stop", {"fade_seconds": 600}, "fade_seconds: expected at most 60 seconds, got 600"),
])
def test_bad_body_is_400_with_one_line_and_changes_nothing(players, method, path, body, message):
    a = players[0]
    before = a.status()
    n = len(rows(a.timeline))
    status, _, text = ask(a, method, path, body)
    assert status == 400 and json.loads(text) == {"ok": False, "error": message}
    after = a.status()
    for key in ("layers", "set_weights", "volume", "sleep", "stopping"):
        assert after[key] == before[key], key
    assert not [r for r in rows(a.timeline)[n:] if r.get("event") in ("tweak", "volume", "timer", "stop")]


def test_server_coalesces_a_burst_of_weight_changes(players):
    a = players[0]
    n = len([r for r in rows(a.timeline) if r.get("event") == "tweak"])
    values = [round(0.01 * i, 2) for i in range(1, 25)]
    # A drag: 24 requests 50 ms apart (1.2 s), each sent without waiting for the one before. 50 ms is
    # several of the player's ticks, so only the server's 0.3 s window can merge them (the per-tick
    # merge alone would make ~24 changes).
    with ThreadPoolExecutor(len(values)) as pool:
        futures = []
        for v in values:
            futures.append(pool.submit(ask, a, "POST", "/api/weights", {"weights": {"stream": v}}))
            time.sleep(0.05)
        replies = [f.result() for f in futures]
    assert all(status == 200 for status, _, _ in replies)
    wait_for(lambda: [r for r in rows(a.timeline) if r.get("event") == "tweak"][n:])
    time.sleep(1.0)
    tweaks = [r for r in rows(a.timeline) if r.get("event") == "tweak"][n:]
    assert len(tweaks) <= 8, tweaks  # about 1.2 s / 0.3 s + 1; at least one: wait_for above
    assert a.status()["set_weights"]["stream"] in values
    # Control: the same requests spaced beyond the coalescing window are one change each, so the
    # count above measures the coalescing and not a timeline that logs bursts once anyway.
    n = len([r for r in rows(a.timeline) if r.get("event") == "tweak"])
    for v in (0.3, 0.35, 0.4):
        assert ask(a, "POST", "/api/weights", {"weights": {"stream": v}})[0] == 200
        time.sleep(0.8)
    wait_for(lambda: len([r for r in rows(a.timeline) if r.get("event") == "tweak"]) >= n + 3, 10)
    time.sleep(1.0)
    assert len([r for r in rows(a.timeline) if r.get("event") == "tweak"]) == n + 3


# --- Save, download, stop ----------------------------------------------------------------------------

def test_save_as_scene_writes_a_valid_scene(page_a, players, capsys):
    a, _, _, saves = players
    d = page_a
    name = d.find_element("id", "save-name")
    assert name.get_attribute("value") == "Web test (my mix)"
    name.clear()
    name.send_keys("My evening\n")
    shown = wait_for(lambda: d.find_element("id", "save-result").text, 10)
    path = saves / "my-evening.yaml"
    assert shown == f"saved to {path}"
    assert main(["validate", str(path)]) == 0
    saved = load_scene(path)
    status = a.status()
    assert saved.name == "My evening" and saved.description == "Two layers for the mixer tests."
    assert {k: v.prompt for k, v in saved.layers.items()} == status["layers"]
    assert {k: v.weight for k, v in saved.layers.items()} == status["set_weights"]
    assert saved.output.volume == status["volume"] == 1.0
    assert saved.generation.chunk_seconds == 2.56 and saved.seed == 5  # the rest as it was
    # The same mix by download (no --web-save-dir needed).
    status, headers, text = ask(a, "GET", "/api/scene.yaml?name=By%20hand")
    assert status == 200 and headers["content-disposition"] == 'attachment; filename="by-hand.yaml"'
    copy = saves / "by-hand.yaml"
    copy.write_text(text)
    assert main(["validate", str(copy)]) == 0


def test_fade_out_and_stop(page_a, players):
    a = players[0]
    d = page_a
    button = d.find_element("id", "stop")
    button.click()
    assert a.proc.poll() is None and "again" in button.text  # the first click only arms it
    button.click()
    clicked = time.monotonic()
    assert a.proc.wait(timeout=20) == 0
    assert a.ended_at - clicked < 5.0 + 4.0, a.ended_at - clicked  # the 5 s fade, then a clean exit
    assert [r for r in rows(a.timeline) if r.get("event") == "stop"]
    wait_for(lambda: d.find_element("id", "ended").is_displayed(), 5)


def test_sleep_timer_ends_the_player_within_it(page_b, players, b_sleep):
    b = players[1]
    assert b.proc.wait(timeout=TIMER_S + 20) == 0
    print(f"\nsleep timer: exited {b.ended_at - b_sleep:.2f} s after it was set")
    assert b.ended_at - b_sleep <= TIMER_S + 3.0, (b.ended_at - b_sleep, b.lines[-6:])
    assert "Traceback" not in "\n".join(b.lines)
    wait_for(lambda: page_b.find_element("id", "ended").is_displayed(), 5)


def test_port_taken_plays_on_without_the_mixer(players):
    a, _, c, _ = players
    assert c.proc.wait(timeout=60) == 0
    web = [line for line in c.lines if line.startswith("web:")]
    assert web == [f"web: cannot listen on 127.0.0.1:{a.port} (Address already in use); playing without the "
                   f"web mixer (try another --web-port)"]
    assert any(line.startswith("played 00:02") for line in c.lines)
