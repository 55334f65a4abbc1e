"""MPRIS per the spec (issue 31): every malformed call is answered at once with the error the spec names
(a client no longer waits out its 25 s timeout), Volume takes finite numbers only, a method is matched on
its interface and member together, and nothing a refused call carries reaches the player. A real private
session bus (dbus-daemon) and the real dbus-send client; the player behind the Bridge records requests."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from soundscape.play.mpris import MprisPlayer
from soundscape.play.web.bridge import Bridge

MISSING = [p for p in ("dbus-daemon", "dbus-send") if not shutil.which(p)]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING} (apt: dbus)")
ERR = "org.freedesktop.DBus.Error."


class Live:
    """What LiveControl answers, recorded: a refused call must leave `requests` as it was."""

    def __init__(self):
        self.requests: list[dict] = []
        self.volume = 1.0

    def handle(self, request: dict) -> dict:
        if request["cmd"] == "status":
            return {"ok": True, "status": {"scene": "Test", "volume": self.volume, "paused": False,
                                         "fresh_percent": 30}}
        self.requests.append(request)
        if request["cmd"] == "volume":
            self.volume = request["volume"]
        return {"ok": True}


@pytest.fixture(scope="module")
def player(tmp_path_factory):
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                            stdout=subprocess.PIPE, text=True)
    address = proc.stdout.readline().strip()
    data = tmp_path_factory.mktemp("data")
    old = {k: os.environ.get(k) for k in ("DBUS_SESSION_BUS_ADDRESS", "XDG_DATA_HOME", "XDG_DATA_DIRS")}
    os.environ.update(DBUS_SESSION_BUS_ADDRESS=address, XDG_DATA_HOME=str(data), XDG_DATA_DIRS=str(data))
    live = Live()
    bridge = Bridge(live)
    done = threading.Event()

    def main_thread():  # the engine's per-tick work, as play runs it
        while not done.is_set():
            bridge.tick()
            time.sleep(0.01)

    threading.Thread(target=main_thread, daemon=True).start()
    mpris = MprisPlayer(bridge)
    assert mpris.start()
    try:
        yield live, address, data
    finally:
        mpris.close()
        done.set()
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def send(address: str, method: str, *args: str):
    started = time.monotonic()
    out = subprocess.run(["dbus-send", "--session", "--print-reply", "--reply-timeout=1000",
                          "--dest=org.mpris.MediaPlayer2.soundscape", "/org/mpris/MediaPlayer2", method, *args],
                         capture_output=True, text=True, timeout=10, env=dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address))
    assert time.monotonic() - started < 1.5
    return out


P = "org.freedesktop.DBus.Properties"
PLAYER = "org.mpris.MediaPlayer2.Player"


@pytest.mark.parametrize("method, args, error", [
    (f"{P}.Get", [f"string:{PLAYER}"], "InvalidArgs"),  # one argument of two
    (f"{P}.GetAll", [], "InvalidArgs"),
    (f"{P}.Set", [f"string:{PLAYER}", "string:Volume", "string:loud"], "InvalidArgs"),  # not a variant
    (f"{P}.Set", [f"string:{PLAYER}", "string:Volume", "double:0.5"], "InvalidArgs"),  # a bare double
    (f"{P}.Set", [f"string:{PLAYER}", "string:Volume", "variant:string:0.5"], "InvalidArgs"),
    (f"{P}.Set", [f"string:{PLAYER}", "string:Volume", "variant:boolean:true"], "InvalidArgs"),
    (f"{P}.Set", [f"string:{PLAYER}", "string:Volume", "variant:double:nan"], "InvalidArgs"),
    (f"{P}.Set", [f"string:{PLAYER}", "string:Volume", "variant:double:inf"], "InvalidArgs"),
    (f"{P}.Set", [f"string:{PLAYER}", "string:Nope", "variant:double:1"], "UnknownProperty"),
    (f"{P}.Set", [f"string:{PLAYER}", "string:PlaybackStatus", "variant:string:Paused"], "PropertyReadOnly"),
    (f"{P}.Get", [f"string:{PLAYER}", "string:Nope"], "UnknownProperty"),
    (f"{P}.Get", ["string:com.example.X", "string:Volume"], "UnknownInterface"),
    (f"{P}.GetAll", ["string:com.example.X"], "UnknownInterface"),
    ("com.example.X.Pause", [], "UnknownInterface"),  # the member alone once paused the player
    (f"{PLAYER}.Fly", [], "UnknownMethod"),
    (f"{PLAYER}.Seek", ["string:far"], "InvalidArgs"),
    (f"{PLAYER}.Pause", ["int32:1"], "InvalidArgs"),
])
def test_a_malformed_call_gets_the_specs_error_at_once_and_changes_nothing(player, method, args, error):
    live, address, _ = player
    before = (list(live.requests), live.volume)
    out = send(address, method, *args)
    assert out.returncode != 0 and f"{ERR}{error}" in out.stderr, (out.stdout, out.stderr)
    assert (live.requests, live.volume) == before


def test_well_formed_calls_still_work(player):
    live, address, _ = player
    assert send(address, f"{P}.Set", f"string:{PLAYER}", "string:Volume", "variant:double:0.25").returncode == 0
    assert live.volume == 0.25
    out = send(address, f"{P}.Get", f"string:{PLAYER}", "string:Volume")
    assert out.returncode == 0 and "double 0.25" in out.stdout, out.stderr
    assert send(address, f"{PLAYER}.Pause").returncode == 0 and live.requests[-1] == {"cmd": "pause"}
    assert send(address, "org.freedesktop.DBus.Peer.Ping").returncode == 0


def test_desktop_entry_only_when_a_desktop_file_is_installed(player):
    _, address, data = player
    get = (f"{P}.Get", "string:org.mpris.MediaPlayer2", "string:DesktopEntry")
    assert f"{ERR}UnknownProperty" in send(address, *get).stderr
    (data / "applications").mkdir(exist_ok=True)
    (data / "applications" / "soundscape.desktop").write_text("[Desktop Entry]\nName=soundscape\n")
    out = send(address, *get)
    assert out.returncode == 0 and 'string "soundscape"' in out.stdout, out.stderr


def test_metadata_shows_the_fresh_share(player):
    """Issue 32: the share of fresh audio, as the status line says it, in the desktop's media widget."""
    _, address, _ = player
    out = send(address, f"{P}.Get", f"string:{PLAYER}", "string:Metadata")
    assert out.returncode == 0, out.stderr
    assert 'string "fresh 30 %"' in out.stdout and "soundscape:freshPercent" in out.stdout, out.stdout
    assert "int32 30" in out.stdout, out.stdout
