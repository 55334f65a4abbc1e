"""The player on the desktop's media controls: an MPRIS player on the D-Bus session bus.

`playerctl`, the desktop's media keys and the lock screen find it as org.mpris.MediaPlayer2.soundscape
(a second player at once takes org.mpris.MediaPlayer2.soundscape.instance<PID>, as the MPRIS spec
says; `playerctl -p soundscape` matches both). What it offers:
  org.mpris.MediaPlayer2         Identity "soundscape", Quit (fade out and stop), CanQuit, DesktopEntry
                                 "soundscape" when a soundscape.desktop is installed (XDG data folders)
  org.mpris.MediaPlayer2.Player  Play, Pause, PlayPause, Stop (fade out and stop), Volume (read and
                                 write: the master volume the web mixer's slider shows, 0 to 1),
                                 PlaybackStatus, Metadata (xesam:title = the scene's name,
                                 mpris:trackid, xesam:comment "fresh 30 %" and soundscape:freshPercent:
                                 the fresh share), Position; PropertiesChanged when any of them changes
  org.freedesktop.DBus.Properties / Introspectable / Peer, which every client expects
Every call is checked whole (interface, member and signature) and always answered: InvalidArgs,
UnknownInterface, UnknownMethod or UnknownProperty name what was wrong; Volume takes finite numbers only.
Library: jeepney, pure Python (no compiled parts, no GLib main loop to run), maintained, and
imported only when a player starts.

Threads: one daemon thread ("soundscape-mpris") owns the D-Bus connection: it reads method calls
(with a short timeout, so it notices `close`), hands each change to the main thread through the
Bridge (play/web/bridge.py, the same door as the web mixer, answered by LiveControl like the
control socket) and waits for the reply, and sends PropertiesChanged when the Bridge's status
snapshot differs from what it last announced. The engine never waits for it.
No session bus (DBUS_SESSION_BUS_ADDRESS unset, or nothing listening there), or no jeepney: it stays
off, and says why in one line only with SOUNDSCAPE_DEBUG=1. Never an error: the music plays on.
"""

from __future__ import annotations

import math
import os
import sys
import threading

BUS_NAME = "org.mpris.MediaPlayer2.soundscape"
PATH = "/org/mpris/MediaPlayer2"
ROOT = "org.mpris.MediaPlayer2"
PLAYER = "org.mpris.MediaPlayer2.Player"
PROPS = "org.freedesktop.DBus.Properties"
TRACK = "/org/soundscape/scene"
STOP_FADE_S = 2.0
REPLY_WAIT_S = 3.0
RECEIVE_S = 0.2  # how long a read waits: also how soon `close` and a status change are noticed

INTROSPECTION = f"""<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
 <interface name="org.freedesktop.DBus.Introspectable">
  <method name="Introspect"><arg name="xml" type="s" direction="out"/></method>
 </interface>
 <interface name="{PROPS}">
  <method name="Get"><arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="out"/></method>
  <method name="GetAll"><arg type="s" direction="in"/><arg type="a{{sv}}" direction="out"/></method>
  <method name="Set"><arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="v" direction="in"/></method>
  <signal name="PropertiesChanged"><arg type="s"/><arg type="a{{sv}}"/><arg type="as"/></signal>
 </interface>
 <interface name="{ROOT}">
  <method name="Raise"/><method name="Quit"/>
  <property name="CanQuit" type="b" access="read"/><property name="CanRaise" type="b" access="read"/>
  <property name="HasTrackList" type="b" access="read"/><property name="Identity" type="s" access="read"/>
  <property name="SupportedUriSchemes" type="as" access="read"/>
  <property name="SupportedMimeTypes" type="as" access="read"/>
  <property name="DesktopEntry" type="s" access="read"/>
 </interface>
 <interface name="{PLAYER}">
  <method name="Next"/><method name="Previous"/><method name="Pause"/><method name="PlayPause"/>
  <method name="Stop"/><method name="Play"/>
  <method name="Seek"><arg type="x" direction="in"/></method>
  <method name="SetPosition"><arg type="o" direction="in"/><arg type="x" direction="in"/></method>
  <method name="OpenUri"><arg type="s" direction="in"/></method>
  <signal name="Seeked"><arg type="x"/></signal>
  <property name="PlaybackStatus" type="s" access="read"/><property name="Rate" type="d" access="readwrite"/>
  <property name="Metadata" type="a{{sv}}" access="read"/><property name="Volume" type="d" access="readwrite"/>
  <property name="Position" type="x" access="read"/><property name="MinimumRate" type="d" access="read"/>
  <property name="MaximumRate" type="d" access="read"/><property name="CanGoNext" type="b" access="read"/>
  <property name="CanGoPrevious" type="b" access="read"/><property name="CanPlay" type="b" access="read"/>
  <property name="CanPause" type="b" access="read"/><property name="CanSeek" type="b" access="read"/>
  <property name="CanControl" type="b" access="read"/>
 </interface>
</node>
"""


# interface -> {method: its D-Bus signature}: a call is answered only when all three match
METHODS = {
    "org.freedesktop.DBus.Introspectable": {"Introspect": ""},
    "org.freedesktop.DBus.Peer": {"Ping": "", "GetMachineId": ""},
    PROPS: {"Get": "ss", "GetAll": "s", "Set": "ssv"},
    ROOT: {"Raise": "", "Quit": ""},
    PLAYER: {"Next": "", "Previous": "", "Pause": "", "PlayPause": "", "Stop": "", "Play": "", "Seek": "x",
             "SetPosition": "ox", "OpenUri": "s"},
}


DESKTOP_NAME = "soundscape"


def desktop_entry() -> str | None:
    """"soundscape" when a soundscape.desktop is installed where desktops look (the spec: the file's name
    without .desktop, so the media controls show its name and icon); else None."""
    home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    dirs = [home] + (os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":")
    found = any(os.path.isfile(os.path.join(d, "applications", f"{DESKTOP_NAME}.desktop")) for d in dirs if d)
    return DESKTOP_NAME if found else None


def _error(msg, name: str, text: str):
    from jeepney import new_error

    return new_error(msg, f"org.freedesktop.DBus.Error.{name}", "s", (text,))


def _debug(text: str) -> None:
    if os.environ.get("SOUNDSCAPE_DEBUG"):
        print(f"soundscape: mpris: {text}", file=sys.stderr, flush=True)


def playback_status(status: dict) -> str:
    if not status or status.get("stopping"):
        return "Stopped"
    return "Paused" if status.get("paused") else "Playing"


def metadata(status: dict) -> dict:
    title = status.get("scene") or "soundscape"
    meta = {"mpris:trackid": ("o", TRACK), "xesam:title": ("s", title), "xesam:artist": ("as", ["soundscape"])}
    if "fresh_percent" in status:
        # The fresh share (issue 32): a desktop's media widget shows the comment; the number for scripts.
        fresh = int(status["fresh_percent"])
        meta["xesam:comment"] = ("as", [f"fresh {fresh} %"])
        meta["soundscape:freshPercent"] = ("i", fresh)
    return meta


class MprisPlayer:
    """Owns the bus connection and its thread. `start` returns False (and stays off) without a session bus."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.name: str | None = None
        self._conn = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._announced: dict = {}

    # Main thread -------------------------------------------------------------------------------------
    def start(self) -> bool:
        if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            _debug("no session bus (DBUS_SESSION_BUS_ADDRESS is not set); media controls off")
            return False
        try:
            from jeepney.io.blocking import open_dbus_connection

            self._conn = open_dbus_connection(bus="SESSION")
            self.name = self._claim_name()
        except Exception as exc:  # no bus there, refused, no jeepney: the player plays on without it
            _debug(f"cannot reach the session bus ({type(exc).__name__}: {exc}); media controls off")
            self._close_connection()
            return False
        if self.name is None:
            _debug("the bus gave no name to this player; media controls off")
            self._close_connection()
            return False
        self._thread = threading.Thread(target=self._run, name="soundscape-mpris", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * RECEIVE_S + 1.0)
        self._close_connection()

    def _close_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _claim_name(self) -> str | None:
        from jeepney import DBusNameFlags, message_bus

        for name in (BUS_NAME, f"{BUS_NAME}.instance{os.getpid()}"):
            reply = self._conn.send_and_get_reply(message_bus.RequestName(name, DBusNameFlags.do_not_queue),
                                                  timeout=5.0)
            if reply.body and reply.body[0] == 1:  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
                return name
        return None

    # The bus thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        from jeepney import MessageType

        while not self._stop.is_set():
            try:
                msg = self._conn.receive(timeout=RECEIVE_S)
            except TimeoutError:
                msg = None
            except Exception as exc:  # the bus went away: media controls end, the music does not
                _debug(f"the session bus connection ended ({type(exc).__name__}: {exc})")
                return
            try:
                if msg is not None and msg.header.message_type == MessageType.method_call:
                    self._answer(msg)
                self._announce()
            except Exception as exc:  # a bug here must not end the thread quietly for good
                print(f"\nsoundscape: mpris: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _status(self) -> dict:
        return self.bridge.snapshot[1]

    def _ask(self, request: dict) -> dict:
        try:
            return self.bridge.submit(request).result(timeout=REPLY_WAIT_S)
        except Exception as exc:  # the main thread did not answer in time (or is gone)
            return {"ok": False, "error": f"the player did not answer ({type(exc).__name__})"}

    def _properties(self, interface: str) -> dict:
        s = self._status()
        if interface == ROOT:
            entry = desktop_entry()
            return {"CanQuit": ("b", True), "CanRaise": ("b", False), "HasTrackList": ("b", False),
                    "Identity": ("s", "soundscape"), "SupportedUriSchemes": ("as", []),
                    "SupportedMimeTypes": ("as", []), **({"DesktopEntry": ("s", entry)} if entry else {})}
        if interface == PLAYER:
            return {"PlaybackStatus": ("s", playback_status(s)), "Rate": ("d", 1.0),
                    "Metadata": ("a{sv}", metadata(s)), "Volume": ("d", float(s.get("volume", 1.0))),
                    "Position": ("x", int(s.get("elapsed_s", 0.0) * 1e6)), "MinimumRate": ("d", 1.0),
                    "MaximumRate": ("d", 1.0), "CanGoNext": ("b", False), "CanGoPrevious": ("b", False),
                    "CanPlay": ("b", True), "CanPause": ("b", True), "CanSeek": ("b", False),
                    "CanControl": ("b", True)}
        return {}

    def _answer(self, msg) -> None:
        """Reply to one method call: always (a client waits for it), and within the call's own thread."""
        from jeepney import MessageFlag

        try:
            reply = self._reply_to(msg)
        except Exception as exc:  # a bug: the caller still gets an answer, not a 25 s timeout
            _debug(f"{type(exc).__name__}: {exc}")
            reply = _error(msg, "Failed", f"{type(exc).__name__}: {exc}")
        if not msg.header.flags & MessageFlag.no_reply_expected:
            self._conn.send(reply)

    def _reply_to(self, msg):
        from jeepney import HeaderFields

        fields = msg.header.fields
        member, interface = fields.get(HeaderFields.member), fields.get(HeaderFields.interface)
        signature = fields.get(HeaderFields.signature, "")
        if fields.get(HeaderFields.path) != PATH:
            return _error(msg, "UnknownObject", f"no object at {fields.get(HeaderFields.path)}")
        if interface is None:  # the spec lets a caller leave it out: the one interface with that member
            interface = next((i for i, members in METHODS.items() if member in members), None)
        if interface not in METHODS:
            return _error(msg, "UnknownInterface", f"no interface {interface}")
        if member not in METHODS[interface]:
            return _error(msg, "UnknownMethod", f"no method {member} in {interface}")
        if signature != METHODS[interface][member]:
            return _error(msg, "InvalidArgs", f"{interface}.{member} takes ({METHODS[interface][member]}), "
                                              f"got ({signature})")
        return getattr(self, f"_call_{member}", self._call_player)(msg, interface, member)

    def _call_Introspect(self, msg, interface, member):
        from jeepney import new_method_return

        return new_method_return(msg, "s", (INTROSPECTION,))

    def _call_Ping(self, msg, interface, member):
        from jeepney import new_method_return

        return new_method_return(msg)

    def _call_GetMachineId(self, msg, interface, member):
        from jeepney import new_method_return

        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            try:
                return new_method_return(msg, "s", (open(path).read().strip(),))
            except OSError:
                continue
        return _error(msg, "Failed", "no machine id on this system")

    def _call_GetAll(self, msg, interface, member):
        from jeepney import new_method_return

        iface = msg.body[0]
        if iface not in (ROOT, PLAYER):
            return _error(msg, "UnknownInterface", f"no properties for interface {iface}")
        return new_method_return(msg, "a{sv}", (self._properties(iface),))

    def _call_Get(self, msg, interface, member):
        from jeepney import new_method_return

        iface, name = msg.body
        if iface not in (ROOT, PLAYER):
            return _error(msg, "UnknownInterface", f"no properties for interface {iface}")
        props = self._properties(iface)
        if name not in props:
            return _error(msg, "UnknownProperty", f"no property {name} in {iface}")
        return new_method_return(msg, "v", (props[name],))

    def _call_Set(self, msg, interface, member):
        from jeepney import new_method_return

        iface, name, (kind, value) = msg.body
        if iface not in (ROOT, PLAYER):
            return _error(msg, "UnknownInterface", f"no properties for interface {iface}")
        if name not in self._properties(iface):
            return _error(msg, "UnknownProperty", f"no property {name} in {iface}")
        if (iface, name) not in ((PLAYER, "Volume"), (PLAYER, "Rate")):
            return _error(msg, "PropertyReadOnly", f"{name} is read-only")
        if kind != "d" or not math.isfinite(value):
            return _error(msg, "InvalidArgs", f"{name} takes a finite number (variant of type d), "
                                              f"got {kind} {str(value)[:40]}")
        if name == "Rate":
            return new_method_return(msg)  # the spec: a rate outside Minimum..MaximumRate is ignored
        # The spec: a negative volume is taken as 0; above 1 is the master volume's top
        reply = self._ask({"cmd": "volume", "volume": min(1.0, max(0.0, float(value)))})
        if reply.get("ok"):
            return new_method_return(msg)
        return _error(msg, "Failed", reply.get("error", "refused"))

    def _call_player(self, msg, interface, member):
        from jeepney import new_method_return

        requests = {"PlayPause": {"cmd": "toggle"}, "Play": {"cmd": "resume"}, "Pause": {"cmd": "pause"},
                    "Stop": {"cmd": "stop", "fade_s": STOP_FADE_S}, "Quit": {"cmd": "stop", "fade_s": STOP_FADE_S}}
        if member in requests:
            reply = self._ask(requests[member])
            if not reply.get("ok"):
                return _error(msg, "Failed", reply.get("error", "refused"))
        # Next, Previous, Raise, Seek, SetPosition, OpenUri: the spec says that without CanGoNext, CanSeek...
        # these do nothing
        return new_method_return(msg)

    def _announce(self) -> None:
        """PropertiesChanged for what differs from the last announcement (status, volume, title)."""
        from jeepney import DBusAddress, new_signal

        s = self._status()
        if not s:
            return
        now = {"PlaybackStatus": ("s", playback_status(s)), "Volume": ("d", float(s.get("volume", 1.0))),
               "Metadata": ("a{sv}", metadata(s))}
        changed = {k: v for k, v in now.items() if self._announced.get(k) != v}
        if not changed:
            return
        self._announced.update(changed)
        signal = new_signal(DBusAddress(PATH, interface=PROPS), "PropertiesChanged", "sa{sv}as",
                            (PLAYER, changed, []))
        self._conn.send(signal)
