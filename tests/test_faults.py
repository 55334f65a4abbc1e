"""Faults: a generator that throws, out-of-memory, bad command lines and files, other users."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from soundscape.audio.output import NULL_DEVICE, OutputConfig
from soundscape.engine import Engine
from soundscape.stream import SceneStream

from test_play import longest_silence


class FlakyStream(SceneStream):
    """The real stream, but every `every`-th chunk attempt raises."""

    every = 5
    error: type = RuntimeError
    calls = 0

    def _prepare(self):
        self.calls += 1
        if self.calls % self.every == 0:
            raise self.error("injected failure")
        return super()._prepare()


def run_engine(stream, seconds, speed=2.0):
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", 16000, 1), quiet=True)
    engine.capture, engine.sink_speed = [], speed
    engine.gen.max_backoff = 1.0
    result = engine.run(duration=seconds, fade_out=0.3)
    return engine, result, np.concatenate(engine.capture)[: int(seconds * 16000)]


def test_generator_that_throws_every_fifth_chunk_keeps_sounding(tiny_model, scene):
    stream = FlakyStream(tiny_model, scene, out_rate=16000, channels=1)
    engine, result, played = run_engine(stream, 16.0)
    assert engine.gen.stats.errors >= 1 and "injected failure" in engine.gen.stats.last_error
    assert result.chunks >= 6 and result.underruns == 0
    assert longest_silence(played[int(0.1 * 16000): int(15.5 * 16000)], 16000) < 0.05


def test_out_of_memory_steps_down_instead_of_crashing(tiny_model_dir, scene):
    from soundscape.model.loading import load_model

    # Its own model: stepping down may switch on VAE tiling, which must not leak into other tests.
    model = load_model(str(tiny_model_dir), device="cpu", quiet=True, runtime="torch")
    stream = FlakyStream(model, scene, out_rate=16000, channels=1)
    stream.every, stream.error = 2, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    engine, result, played = run_engine(stream, 6.0)
    assert stream.spec.denoise.split_guidance  # the first smaller setting
    assert result.underruns == 0 and np.abs(played).max() > 0.01


def test_split_guidance_gives_the_same_audio(tiny_model, scene):
    a = SceneStream(tiny_model, scene).next_segment().audio
    split = SceneStream(tiny_model, scene)
    split.reduce_memory()
    assert split.spec.denoise.split_guidance
    assert np.abs(split.next_segment().audio - a).max() < 1e-4


def cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "soundscape", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("args,code,message", [
    (["render", "{scene}", "-o", "{tmp}/x.wav", "--duration", "-5"], 2, "--duration: expected a duration"),
    (["render", "{scene}", "-o", "{tmp}/x.wav", "--duration", "abc"], 2, "--duration: expected a duration"),
    (["render", "{scene}", "-o", "{tmp}/nodir/x.wav", "--duration", "5"], 2, "does not exist; create it first"),
    (["render", "{tmp}/missing.yaml", "-o", "{tmp}/x.wav", "--duration", "5"], 2, "missing.yaml: no such file"),
    (["play", "{tmp}", "--duration", "5"], 2, "is a directory"),
    (["play", "{scene}", "--model", "{model}", "--output-device", "no-such-card", "--duration", "1"], 4,
     "no output device has that name"),
    (["render", "{scene}", "-o", "{tmp}/x.wav", "--duration", "5", "--model", "{tmp}/corrupt"], 3,
     "incomplete or corrupt"),
    (["play", "{scene}", "--model", "/no/such/dir"], 3, "--model /no/such/dir: no such folder"),
    (["set", "birds"], 2, "expected LAYER=VALUE"),
    (["status", "--control", "{tmp}/nobody.sock"], 5, "no player is running"),
    (["render", "{scene}", "-o", "{tmp}/x.wav", "--duration", "5", "--device", "cuda:7"], 2, "--device"),
])
def test_bad_command_lines(args, code, message, scene_file, tmp_path, tiny_model_dir):
    corrupt = tmp_path / "corrupt"
    (corrupt / "language_model").mkdir(parents=True)
    (corrupt / "model_index.json").write_text("{not json")
    (corrupt / "language_model" / "config.json").write_text("{}")
    args = [a.format(scene=scene_file, tmp=tmp_path, model=tiny_model_dir) for a in args]
    proc = cli(*args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1]) < 400


def test_other_users_cannot_reach_the_control_socket():
    """Folder 0700 keeps other users out; if it were opened up, the peer-uid check still refuses them."""
    import shutil
    import tempfile
    import threading

    from soundscape.control import ControlServer, request

    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    base = tempfile.mkdtemp(dir="/tmp")
    os.chmod(base, 0o755)  # reachable by anyone: only our own folder's mode may keep them out
    server = ControlServer(os.path.join(base, "ctl", "s.sock"), lambda req: {"ok": True, "status": {"x": 1}})
    probe = textwrap.dedent(f"""
        import json, socket
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect({str(server.path)!r})
        except PermissionError:
            print("denied"); raise SystemExit
        s.sendall(b'{{"cmd": "status"}}\\n')
        print(json.loads(s.makefile().readline()).get("error", "served"))
    """)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe]
    stop = threading.Event()
    poller = threading.Thread(target=lambda: [server.poll() or stop.wait(0.02) for _ in iter(stop.is_set, True)])
    poller.start()
    try:
        assert subprocess.run(as_nobody, capture_output=True, text=True, timeout=30).stdout.strip() == "denied"
        os.chmod(server.path.parent, 0o755)
        os.chmod(server.path, 0o666)
        out = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30).stdout.strip()
        assert out == "refused: the player belongs to another user"
        assert request(server.path, {"cmd": "status"})["status"] == {"x": 1}  # the owner gets through
    finally:
        stop.set()
        poller.join()
        server.close()
        shutil.rmtree(base)
