"""serve's page as an installed app (issue 31): PNG icons (192, 512, maskable), an apple-touch-icon and a
favicon, fetched without the token as a launcher does; a manifest whose start_url still opens the page
once the browser has dropped its session cookie; and Chromium's own manifest and installability audit."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import SCENE, headless_chrome, start_logged

TOKEN = "k" * 24


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    (folder / "scenes").mkdir()
    (folder / "scenes" / "test.yaml").write_text(SCENE)
    proc, url = start_logged([sys.executable, "-m", "soundscape", "serve", "--model", str(tiny_model_dir), "--port",
                              "0", "--scenes", str(folder / "scenes"), "--token", TOKEN, "--max-listeners", "1"],
                             folder / "log", r"serve: listening on (http://\S+)")
    try:
        yield url.split("/?")[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    return struct.unpack(">II", data[16:24])


def test_icons_are_served_without_the_token_at_their_sizes(server):
    for path, size in (("/icon-192.png", 192), ("/icon-512.png", 512), ("/icon-maskable-512.png", 512),
                       ("/apple-touch-icon.png", 180)):
        with urllib.request.urlopen(server + path, timeout=10) as r:
            assert r.headers["Content-Type"] == "image/png"
            assert _png_size(r.read()) == (size, size), path
    with urllib.request.urlopen(server + "/favicon.ico", timeout=10) as r:
        assert r.read()[:4] == b"\x00\x00\x01\x00"  # an ICO header
    with pytest.raises(urllib.error.HTTPError) as err:  # the rest still needs the token
        urllib.request.urlopen(server + "/manifest.webmanifest", timeout=10)
    assert err.value.code == 403


def test_the_manifests_start_url_opens_the_page_without_a_cookie(server):
    with urllib.request.urlopen(f"{server}/manifest.webmanifest?token={TOKEN}", timeout=10) as r:
        assert r.headers["Content-Type"] == "application/manifest+json"
        manifest = json.loads(r.read())
    sizes = {(i["sizes"], i.get("purpose", "any")) for i in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    start = urllib.parse.urljoin(server + "/", manifest["start_url"])
    with urllib.request.urlopen(start, timeout=10) as r:  # a fresh client: no cookie, as after a restart
        assert r.status == 200 and 'data-scene="test"' in r.read().decode()


def test_chromium_finds_the_manifest_installable(server):
    driver = headless_chrome("--window-size=900,700")
    try:
        driver.get(f"{server}/?token={TOKEN}")
        manifest = driver.execute_cdp_cmd("Page.getAppManifest", {})
        assert manifest.get("errors") == [], manifest.get("errors")
        assert manifest.get("url", "").endswith("/manifest.webmanifest")
        problems = driver.execute_cdp_cmd("Page.getInstallabilityErrors", {})["installabilityErrors"]
        assert problems == [], problems
        icon = driver.execute_script("return document.querySelector('link[rel=apple-touch-icon]').href")
        assert icon.endswith("/apple-touch-icon.png")
    finally:
        driver.quit()
