"""`soundscape bench` on the tiny pipeline: the JSON report is complete and its figures are sane."""

from __future__ import annotations

import json

import pytest

from soundscape.cli import main


def test_bench_tiny_json(capsys):
    steps, chunks = 2, 2
    assert main(["bench", "--tiny", "--steps", str(steps), "--chunks", str(chunks), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    assert len(report["step_s"]) == steps * chunks
    assert all(t > 0 for t in report["step_s"])
    assert len(report["chunks"]) == chunks
    for chunk in report["chunks"]:
        assert len(chunk["step_s"]) == steps
        for stage in ("denoise_s", "vae_s", "vocoder_s", "resample_s", "total_s"):
            assert chunk[stage] > 0, stage
        assert chunk["stereo_s"] >= 0  # air + width, CPU time (the clock's tick may round a short one to 0)
    # Air and width: under 2 % of real time for one stream on one core (issue 25).
    assert 0 <= report["stereo_share"] < 0.02
    assert report["steady"]["chunks"] == [1]  # chunk 0 is warm-up
    assert report["encode_first_s"] > 0
    assert report["rtf"] > 0
    assert report["first_audio_s"] > 0 and report["warm_start_s"] > 0
    assert report["memory"]["peak_rss_mb"] > 0 and report["memory"]["ru_maxrss_mb"] > 0
    assert report["config"]["unet_batch"] == 2  # guidance: [negative, positive]
    for name in ("torch", "diffusers", "transformers"):
        assert report["versions"][name]


def test_bench_batch_widens_the_unet_call(capsys):
    assert main(["bench", "--tiny", "--steps", "1", "--chunks", "1", "--batch", "3", "--no-guidance",
                 "--chunk-seconds", "2.56", "--overlap-seconds", "0.64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["unet_batch"] == 3
    assert report["rtf"] == pytest.approx(3 * report["rtf_per_stream"])


@pytest.mark.parametrize("argv, message", [
    (["--tiny", "--model", "x"], "--model x: cannot be combined with --tiny"),
    (["--tiny", "--chunk-seconds", "10"], "--chunk-seconds: expected a multiple of 0.32"),
    (["--tiny", "--overlap-seconds", "6"], "--overlap-seconds: expected at most half of --chunk-seconds"),
])
def test_bench_usage_errors_are_one_line(capsys, argv, message):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_bench_probe_measures_this_cpu_and_reports_it(capsys, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SOUNDSCAPE_PROBE", "0")  # the tests' default: --probe measures all the same
    assert main(["bench", "--tiny", "--probe", "--steps", "4", "--chunks", "1", "--chunk-seconds", "2.56",
                 "--overlap-seconds", "0.64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    probe = report["probe"]
    # --tiny keeps its weights resident, so both decoders are timed on both runtimes, and one of each is chosen
    assert {(r["stage"], r["runtime"]) for r in probe["decoders"]} == {
        (s, r) for s in ("vae", "vocoder") for r in ("torch", "openvino")}
    assert sorted(r["stage"] for r in probe["decoders"] if r["chosen"]) == ["vae", "vocoder"]
    assert all(r["seconds"] > 0 for r in probe["decoders"])
    verdict = probe["int8"]
    if isinstance(verdict, dict):  # a CPU with native bf16: the int8 UNet was quantized and gated
        assert verdict["int8_s"] > 0 and verdict["plain_s"] > 0 and verdict["quantize_s"] > 0
        assert verdict["chosen"] == (report["int8"] == ["unet"])  # the chunks ran what was chosen
        assert not verdict["chosen"] or verdict["passed"]
    else:  # fp32 CPUs, or no NNCF: said why
        assert verdict.startswith("not measured")
    assert list((tmp_path / "soundscape" / "probe").glob("*.json"))  # cached for --runtime auto


def test_bench_tweaks_times_live_changes_on_the_real_time_path(capsys):
    from soundscape.bench import report as bench_report

    argv = ["bench", "--tiny", "--steps", "4", "--chunks", "1", "--chunk-seconds", "2.56", "--overlap-seconds", "0.64",
            "--tweaks", "4", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    t = result["tweak_latency"]
    assert t["tweaks"] == t["heard"] == len(t["latencies_s"]) == 4, t
    assert t["underruns"] == 0 and t["hop_s"] == 1.92
    # Each is heard after the kept margin (1 s) plus a chunk's work at most: well under two hops here.
    assert 0 < t["median_s"] <= t["p95_s"] == max(t["latencies_s"]) < 2 * t["hop_s"], t
    assert "tweak heard           median" in bench_report.table(result)
