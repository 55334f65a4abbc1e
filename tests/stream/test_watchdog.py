"""The quality watchdog: a silent, a clipped and a NaN chunk are made again, never played or written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from soundscape.errors import ChunkRejected
from soundscape.stream.scene_stream import SceneStream
from soundscape.stream.watchdog import check

from conftest import longest_silence


class BadStream(SceneStream):
    """The real stream, but the first try at some chunks comes out broken."""

    bad = {1: "silent", 2: "clipped", 3: "nan"}
    always_bad = False

    def _received(self, result, attempt):
        kind = self.bad.get(self.state.gen.chunk_index)
        if kind and (attempt == 0 or self.always_bad):
            a = result.audio.clone()
            if kind == "silent":
                a.zero_()
            elif kind == "clipped":
                a = (a * 1000).clamp(-1, 1)
            else:
                a[1000:1100] = float("nan")
            result.audio = a
        return result


class SkipStream(SceneStream):
    """What the output must be: the bad chunks' second seeds from the start."""

    def _first_attempt(self, index):
        return max(super()._first_attempt(index), 1 if index in BadStream.bad else 0)


def _render(stream_cls, model, scene, path, timeline=None):
    from soundscape.render.plain import render

    stream = stream_cls(model, scene, out_rate=16000, channels=1)
    render(stream, path, 12.0, timeline=timeline, quiet=True)
    return sf.read(str(path), dtype="float32")[0]


def test_bad_chunks_never_reach_the_output(tiny_model, scene, tmp_path):
    got = _render(BadStream, tiny_model, scene, tmp_path / "bad.wav", tmp_path / "t.jsonl")
    want = _render(SkipStream, tiny_model, scene, tmp_path / "good.wav")
    # The output is exactly what the chunks' next seeds make: none of the broken audio got through.
    assert np.array_equal(got, want)
    assert np.isfinite(got).all() and np.abs(got).max() < 0.95
    assert longest_silence(got[int(0.6 * 16000):, None], 16000) < 0.05
    rows = {r["chunk"]: r for r in map(json.loads, open(tmp_path / "t.jsonl")) if "chunk" in r}
    assert [r["failed"] for r in rows[1]["rejected"]] == [["silence"]]
    assert len(rows[2]["rejected"]) == 1 and "clipping" in rows[2]["rejected"][0]["failed"]
    assert [r["failed"] for r in rows[3]["rejected"]] == [["finite"]]
    assert "rejected" not in rows[0] and rows[0]["quality"]["rms_db"] > -40  # scores recorded for every chunk


def test_play_covers_while_a_chunk_is_made_again(tiny_model, scene):
    from soundscape.audio.output import NULL_DEVICE, OutputConfig
    from soundscape.play.engine import Engine

    stream = BadStream(tiny_model, scene, out_rate=16000, channels=1)
    engine = Engine(stream, OutputConfig(NULL_DEVICE, "null", 16000, 1), quiet=True, capture=[], sink_speed=2.0)
    result = engine.run(duration=10.0, fade_out=0.3)
    played = np.concatenate(engine.capture)[: 10 * 16000]
    assert result.underruns == 0 and np.isfinite(played).all()
    assert longest_silence(played[int(0.6 * 16000): int(9.5 * 16000)], 16000) < 0.05
    assert np.abs(played).max() < 0.95


def test_a_chunk_that_always_fails_stops_render_with_a_message(tiny_model, scene, tmp_path):
    stream = BadStream(tiny_model, scene, out_rate=16000, channels=1)
    stream.always_bad = True
    from soundscape.render.plain import render

    with pytest.raises(ChunkRejected, match="chunk 1 failed the quality check 3 times \\(silence\\)"):
        render(stream, tmp_path / "x.wav", 12.0, quiet=True)
    # What was rendered before it is kept, and the render can resume.
    assert sf.info(str(tmp_path / "x.wav")).frames > 0


def test_checks_on_synthetic_audio():
    from soundscape.scene.schema import QualityCheck

    qc = QualityCheck()
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(16000) * 0.05
    assert check(noise, 1.0, qc).ok
    assert check(noise * 1e-5, 1.0, qc).failed == ["silence"]
    assert check(noise * 1e-5, 0.0, qc).ok  # silence asked for (all weights at 0) is fine
    assert check(np.clip(noise * 100, -1, 1), 1.0, qc).failed == ["clipping"]
    assert check(noise + 0.2, 1.0, qc).failed == ["dc"]
    assert check(np.full(100, np.inf), 1.0, qc).failed == ["finite"]
    low = QualityCheck(clap=True, min_clap=0.5)
    assert check(noise, 1.0, low, clap_score=lambda a: 0.1).failed == ["clap"]
    assert check(noise, 1.0, low, clap_score=lambda a: 0.9).scores["clap"] == 0.9


def test_clap_score_uses_the_pipelines_own_clap(tiny_model):
    from soundscape.stream.watchdog import ClapScorer

    scorer = ClapScorer(tiny_model)
    audio = np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32) * 0.1
    a = scorer.score(audio, {"birds singing": 1.0})
    b = scorer.score(audio, {"heavy rain": 1.0})
    assert -1.0 <= a <= 1.0 and -1.0 <= b <= 1.0 and a != b
    assert scorer.score(audio, {"birds singing": 1.0}) == pytest.approx(a)
