"""`.ogg` renders read back with the decoders users have (libsndfile and FFmpeg through PyAV),
lined up against a `.wav` render of the same seed: one continuous stream, nothing skipped at a seam."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import av
import numpy as np
import soundfile as sf

from soundscape.cli import main

RATE = 48000
CODEC_FRAME = 2048  # Vorbis's long block: "within one codec frame"


def _render(scene_file, model_dir, out, *extra) -> int:
    # torch: what is tested is the file, not the runtime (OpenVINO's renders have their own tests).
    return main(["render", str(scene_file), "-o", str(out), "--model", str(model_dir), "--quiet", "--runtime", "torch",
                 *extra])


def _pyav(path) -> np.ndarray:
    """Mono float32 as FFmpeg decodes it."""
    chunks = []
    with av.open(str(path)) as f:
        for frame in f.decode(audio=0):
            a = frame.to_ndarray()
            chunks.append(a.mean(axis=0) if a.ndim == 2 and a.shape[0] <= 8 else a.reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def _lags(ref: np.ndarray, test: np.ndarray, window: int = RATE // 2, search: int = RATE // 2) -> list[int]:
    """Per window of `ref`, the shift of `test` that matches it best (cross-correlation)."""
    lags = []
    for start in range(search, len(ref) - window - search, window):
        seg = ref[start:start + window]
        if np.sqrt(np.mean(seg ** 2)) < 1e-3:
            continue
        region = test[start - search:start + window + search]
        if len(region) < window + 2 * search:
            break
        corr = np.correlate(region, seg, mode="valid")
        lags.append(int(np.argmax(corr)) - search)
    return lags


def _check_against_wav(ogg, wav, seconds: float) -> None:
    ref = sf.read(wav, dtype="float32")[0].mean(axis=1)
    assert len(ref) == int(seconds * RATE)
    via_sndfile = sf.read(ogg, dtype="float32")[0]
    via_sndfile = via_sndfile.mean(axis=1) if via_sndfile.ndim == 2 else via_sndfile
    via_ffmpeg = _pyav(ogg)
    for decoded in (via_sndfile, via_ffmpeg):
        assert abs(len(decoded) - len(ref)) <= CODEC_FRAME, (len(decoded), len(ref))
        lags = _lags(ref, decoded)
        assert len(lags) >= seconds - 3  # every half second but the edges was compared
        assert max(abs(lag) for lag in lags) <= RATE // 1000, lags  # no skip anywhere: within 1 ms


def test_ogg_render_is_one_stream_holding_every_sample(scene_file, tiny_model_dir, tmp_path, capfd):
    ogg, wav = tmp_path / "a.ogg", tmp_path / "a.wav"
    assert _render(scene_file, tiny_model_dir, wav, "--duration", "30") == 0
    capfd.readouterr()
    assert main(["render", str(scene_file), "-o", str(ogg), "--model", str(tiny_model_dir), "--duration", "30",
                 "--runtime", "torch"]) == 0
    err = capfd.readouterr().err
    assert "LUFS integrated" in err  # the loudness summary, for Ogg too
    assert "Warning" not in err and "warn" not in err.lower(), err  # no stray library warning (tqdm's clamping)
    _check_against_wav(ogg, wav, 30)
    info = sf.info(str(ogg))
    assert abs(info.frames - 30 * RATE) <= CODEC_FRAME  # libsndfile knows its length


def test_ogg_loop_has_the_length_asked_and_no_skip(scene_file, tiny_model_dir, tmp_path):
    ogg, wav = tmp_path / "loop.ogg", tmp_path / "loop.wav"
    assert _render(scene_file, tiny_model_dir, wav, "--duration", "20", "--loop") == 0
    assert _render(scene_file, tiny_model_dir, ogg, "--duration", "20", "--loop") == 0
    _check_against_wav(ogg, wav, 20)


def test_stopped_ogg_render_is_valid_up_to_what_was_written(scene_file, tiny_model_dir, tmp_path):
    out, timeline = tmp_path / "stopped.ogg", tmp_path / "t.jsonl"
    cmd = [sys.executable, "-m", "soundscape", "render", str(scene_file), "-o", str(out), "--duration", "60",
           "--model", str(tiny_model_dir), "--quiet", "--timeline", str(timeline), "--runtime", "torch"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if timeline.exists() and timeline.read_text().count('"chunk"') >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "cannot be resumed" in err
    rows = [json.loads(line) for line in timeline.read_text().splitlines() if '"chunk"' in line]
    written_s = rows[-1]["end_s"]  # every chunk in the timeline was written before its row
    decoded = _pyav(out)
    assert abs(len(decoded) / RATE - written_s) < 0.05, (len(decoded) / RATE, written_s)
    assert np.sqrt(np.mean(decoded[RATE:] ** 2)) > 1e-3  # sound, not an empty stream
    # A stopped .ogg cannot be continued: refused before the model loads, naming what can.
    code = subprocess.run(cmd[:-2] + ["--resume"], capture_output=True, text=True, timeout=60)
    assert code.returncode == 2 and ".wav or .flac" in code.stderr and "Traceback" not in code.stderr
