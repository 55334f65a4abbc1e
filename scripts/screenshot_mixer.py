"""The README's picture of the web mixer: `play SCENE --web` on a model, opened in headless Chromium.

  python scripts/screenshot_mixer.py MODEL_DIR [SCENE] [-o docs/web-mixer.png]

Plays to ALSA's null device (no sound server needed), waits for two chunks, opens the page and saves a
1280x900 screenshot. Look at the picture before committing it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("scene", nargs="?", default="forest")
    ap.add_argument("-o", "--out", default="docs/web-mixer.png")
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "soundscape", "play", args.scene, "--model", args.model, "--web",
               "--output-device", "null", "--control", str(Path(tmp) / "ctl.sock"), "--runtime", "torch"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        url = None
        try:
            for line in proc.stderr:
                if line.startswith("web: http://"):
                    url = line.split("web: ", 1)[1].strip()
                    break
            if url is None:
                print("play ended without a web address", file=sys.stderr)
                return 1
            time.sleep(20)  # a few chunks: the page shows levels, weights and the buffer
            opts = webdriver.ChromeOptions()
            opts.binary_location = shutil.which("chromium")
            for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,900", "--no-proxy-server", "--mute-audio",
                        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
                opts.add_argument(arg)
            driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
            try:
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                       {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
                driver.get(url)
                time.sleep(4)
                driver.save_screenshot(args.out)
            finally:
                driver.quit()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
