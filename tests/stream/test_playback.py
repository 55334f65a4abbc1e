"""The consumer side play and serve share (stream/playback.py) and LiveControl over it without a transport
(serve's case): built one way, the status from one place, transport commands refused in one place."""

import numpy as np

from soundscape.audio.feeder import MARGIN_S
from soundscape.stream.live import TRANSPORT_COMMANDS, LiveControl
from soundscape.stream.playback import Playback, PulledClock, ring_frames
from soundscape.stream.scene_stream import SceneStream


def test_a_playback_is_built_one_way_and_says_its_status(tiny_model, scene):
    stream = SceneStream(tiny_model, scene, out_rate=16000, channels=1)
    assert ring_frames(16000, stream.hop_s) == int(2 * stream.hop_s * 16000)  # two hops by default
    assert ring_frames(16000, 0.1) == int(3 * MARGIN_S * 16000)  # never under three cover-up margins
    playback = Playback.build(16000, 1, "http:opus", stream.hop_s, labels={"listener": 3, "scene": "forest"})
    assert isinstance(playback.player, PulledClock) and playback.ring.capacity == ring_frames(16000, stream.hop_s)
    slot = playback.attach(stream, name="listener 3")
    assert playback.slot is slot and slot.ahead() == 0.0  # nothing buffered yet
    playback.ring.write(np.ones((1600, 1), np.float32))
    playback.player.frames_played = 8000
    status = playback.status()
    assert list(status)[:2] == ["listener", "scene"] and status["scene"] == "forest"  # the labels lead and win
    assert status["elapsed_s"] == 0.5 and status["buffered_s"] == 0.1 and status["device"] == "http:opus"
    assert slot.ahead() == 0.1 and status["steps_range"] == [stream.resolved.min_steps, stream.resolved.max_steps]


def test_without_a_transport_live_control_refuses_its_commands_in_one_place(tiny_model, scene):
    stream = SceneStream(tiny_model, scene, out_rate=16000, channels=1)
    playback = Playback.build(16000, 1, "http:opus", stream.hop_s)
    playback.attach(stream)
    live = LiveControl(playback, None)
    requests = {"pause": {}, "resume": {}, "toggle": {}, "volume": {"volume": 0.5},
                "timer": {"action": "set", "seconds": 60}, "stop": {"fade_s": 1}, "wake": {"at": "07:00"}}
    assert set(requests) == set(TRANSPORT_COMMANDS)
    for cmd, args in requests.items():
        reply = live.handle({"cmd": cmd, **args})
        assert not reply["ok"] and reply["error"].startswith(f"{cmd}: this stream has no transport here"), reply
    status = live.handle({"cmd": "status"})["status"]
    assert status["paused"] is False and status["sleep"] is None and status["wake"] is None
    assert status["volume"] == scene.output.volume == live.volume
    assert live.handle({"cmd": "set", "weights": {"birds": 0.2}}) == {"ok": True, "applied": {"birds": 0.2}}
