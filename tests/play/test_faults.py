"""Faults: a generator that throws, out-of-memory, bad command lines and files, other users."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from soundscape.audio.output import NULL_DEVICE, OutputConfig
from soundscape.play.engine import Engine
from soundscape.stream.scene_stream import SceneStream

from conftest import longest_silence


class FlakyStream(SceneStream):
    """The real stream, but every `every`-th chunk attempt raises."""

    every = 5
    error: type = RuntimeError
    calls = 0

    def _prepare(self, steps=None, frames=None):
        self.calls += 1
        if self.calls % self.every == 0:
            raise self.error("injected failure")
        return super()._prepare(steps, frames)


def run_engine(stream, seconds, speed=2.0):
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", 16000, 1), quiet=True, capture=[], sink_speed=speed)
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

    from soundscape.play.control_socket import ControlServer, request

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


# Careless values and faults (issue 22) --------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["play", "{scene}", "--model", "{model}", "--output-device", "null", "--buffer", "1000h"],
     "--buffer: expected at most 600 s"),
    (["play", "{scene}", "--model", "{model}", "--output-device", "null", "--prefill", "2h"],
     "--prefill: expected at most 600 s"),
    (["play", "{scene}", "--model", "{model}", "--output-device", "null", "--timeline", "{tmp}/nodir/t.jsonl"],
     "the folder {tmp}/nodir does not exist"),
    (["play", "{scene}", "--model", "{model}", "--output-device", "null", "--control", "{scene}/ctl.sock"],
     "is not a folder"),
    (["render", "{scene}", "-o", "{tmp}/x.wav", "--duration", "5", "--timeline", "{tmp}/nodir/t.jsonl"],
     "the folder {tmp}/nodir does not exist"),
])
def test_bad_values_exit_2_before_the_model_loads(args, message, scene_file, tmp_path, tiny_model_dir):
    args = [a.format(scene=scene_file, tmp=tmp_path, model=tiny_model_dir) for a in args]
    proc = cli(*args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message.format(tmp=tmp_path) in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # nothing else ran: no model loading line


def test_ms_is_a_unit():
    from soundscape.units import parse_duration

    assert parse_duration("1ms") == 0.001 and parse_duration("1m30s") == 90 and parse_duration("250 ms") == 0.25


def test_set_refuses_text_that_is_not_utf8(tmp_path):
    # A Latin-1 terminal's é: Python hands it to us as a lone surrogate (surrogateescape).
    proc = subprocess.run([sys.executable.encode(), b"-m", b"soundscape", b"set", b"--control",
                           str(tmp_path / "none.sock").encode(), b"--prompt", b"birds", b"caf\xe9"],
                          capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "lone surrogate" in err and "UTF-8" in err and len(err.splitlines()) == 1


def test_unreachable_ray_address_fails_fast_in_one_line(scene_file, tmp_path, tiny_model_dir):
    import importlib.util
    import time

    if importlib.util.find_spec("ray") is None:
        pytest.skip('needs pip install -e ".[ray]"')
    started = time.monotonic()
    proc = cli("render", str(scene_file), "-o", str(tmp_path / "x.wav"), "--duration", "5", "--model",
               str(tiny_model_dir), "--ray", "127.0.0.1:1", timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stderr
    assert "--ray 127.0.0.1:1: nothing answers there" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_full_disk_ends_render_with_the_resume_command(scene_file, tmp_path, tiny_model_dir):
    """A file-size limit stands in for a full disk: the write fails the same way (libsndfile 'System error')."""
    import resource
    import signal

    import soundfile as sf

    out = tmp_path / "x.wav"
    limit = 1_200_000  # about 4 s of 48 kHz stereo 24-bit: the render stops in its third chunk

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not death by signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [sys.executable, "-m", "soundscape", "render", str(scene_file), "-o", str(out), "--duration", "8",
            "--model", str(tiny_model_dir), "--quiet"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    assert proc.returncode == 6, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot write the output" in last and "is the disk full?" in last and "--resume" in last
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert 0 < sf.info(str(out)).frames < 8 * 48000  # a valid file, holding what was written
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(out)).frames == 8 * 48000


def test_sigterm_at_any_moment_of_start_up_exits_130_promptly(scene_file, tiny_model_dir, tmp_path):
    import random
    import signal
    import time

    rng = random.Random(22)
    for k in range(5):
        timeline = tmp_path / f"t{k}.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "soundscape", "play", str(scene_file), "--model",
                                 str(tiny_model_dir), "--output-device", "null", "--timeline", str(timeline),
                                 "--control", str(tmp_path / f"c{k}.sock"), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # From the moment our handler is in place (SigCgt has SIGTERM) to a little after the first chunk.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            caught = [line for line in open(f"/proc/{proc.pid}/status") if line.startswith("SigCgt:")]
            if caught and int(caught[0].split()[1], 16) & (1 << (signal.SIGTERM - 1)):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 4.0))
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"run {k}: SIGTERM did not stop it within 15 s")
        assert proc.returncode == 130, f"run {k}: exit {proc.returncode}: {err}"
        assert time.monotonic() - sent < 10 and "Traceback" not in err


def test_set_and_status_refuse_a_socket_another_user_owns(tmp_path):
    """Another user's folder, or another user's process behind the socket: `set` and `status` will not talk."""
    import shutil
    import tempfile
    import threading
    import time

    from soundscape.cli import main
    from soundscape.play.control_socket import ControlServer

    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    base = tempfile.mkdtemp(dir="/tmp")
    try:
        server = ControlServer(os.path.join(base, "ctl", "s.sock"), lambda req: {"ok": True, "status": {}})
        stop = threading.Event()
        poller = threading.Thread(target=lambda: [server.poll() or stop.wait(0.02) for _ in iter(stop.is_set, True)])
        poller.start()
        try:
            os.chown(server.path.parent, 65534, 65534)  # a folder someone else made in the shared temp folder
            proc = cli("status", "--control", str(server.path), timeout=60)
            assert proc.returncode == 5 and "belongs to user 65534" in proc.stderr, proc.stderr
            os.chown(server.path.parent, 0, 0)
            assert main(["status", "--json", "--control", str(server.path)]) == 0
        finally:
            stop.set()
            poller.join()
            server.close()
        # Our own folder, but the process listening there is another user's.
        os.chmod(base, 0o755)
        folder = os.path.join(base, "open")
        os.mkdir(folder)
        os.chmod(folder, 0o777)
        path = os.path.join(folder, "s.sock")
        fake = textwrap.dedent(f"""
            import socket
            s = socket.socket(socket.AF_UNIX)
            s.bind({path!r}); s.listen(1)
            c, _ = s.accept(); c.recv(100); c.sendall(b'{{"ok": true, "status": {{}}}}\\n')
        """)
        other = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                  fake])
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        proc = cli("status", "--control", path, timeout=60)
        other.kill()
        other.wait()
        assert proc.returncode == 5 and "the process listening there is user 65534's" in proc.stderr, proc.stderr
    finally:
        shutil.rmtree(base)


def test_a_prompt_the_encoder_cannot_take_falls_back_and_never_stalls_the_batch(tiny_model, scene, capsys):
    """A lone surrogate got past no door now, but a prompt the tokenizer refuses must still not stop the music:
    model_copy skips validation, so the real tokenizer meets it here."""
    from soundscape.stream.scene_stream import next_segments

    def with_prompt(text):
        return scene.model_copy(update={"layers": {**scene.layers,
                                                   "birds": scene.layers["birds"].model_copy(update={"prompt": text})}})

    bad, other = SceneStream(tiny_model, scene, seed=1), SceneStream(tiny_model, scene, seed=2)
    assert all(not isinstance(x, BaseException) for x in next_segments([bad, other]))
    bad.replace_scene(with_prompt("caf\udce9"))
    outs = [next_segments([bad, other]) for _ in range(3)]
    # The other stream in the batch never notices; the bad one fails once, then plays on from what worked.
    assert all(not isinstance(o[1], BaseException) for o in outs)
    assert isinstance(outs[0][0], BaseException) and not isinstance(outs[1][0], BaseException)
    assert bad.falling_back and capsys.readouterr().err.count("cannot be encoded") == 1
    # A valid change applies at once, easing from the last scene that worked (not the broken one).
    bad.replace_scene(with_prompt("owls hooting"))
    assert bad.change.before.layers["birds"].prompt == "birds singing in a forest"
    seg = next_segments([bad, other])[0]
    assert not isinstance(seg, BaseException) and not bad.falling_back
    assert "owls hooting" in bad._prepare().by_prompt
