"""`--runtime auto` measures, then chooses: each decoder's runtime timed and gated on this CPU, cached."""

import json

import pytest

pytest.importorskip("openvino")

from soundscape.model import probe  # noqa: E402
from soundscape.model.loading import load_model  # noqa: E402


def _load(folder):
    return load_model(str(folder), device="cpu", dtype="fp32", quiet=True, runtime="auto")


def test_the_probe_times_every_candidate_chooses_a_passing_one_is_cached_and_redone_when_damaged(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SOUNDSCAPE_PROBE", "1")
    model = _load(tiny_model_dir)
    choice = model.probe
    assert choice is not None and not choice.cached
    for stage in probe.PROBED:
        rows = [r for r in choice.rows if r.stage == stage]
        assert {r.runtime for r in rows} == {"torch", "openvino"}
        assert all(r.seconds > 0 and r.snr_db > 20 for r in rows)  # fp32 against fp32: only rounding apart
        chosen = [r for r in rows if r.chosen]
        assert len(chosen) == 1 and chosen[0].passed and choice.runtimes[stage] == chosen[0].runtime
        assert model.runtimes[stage] == chosen[0].runtime  # what runs is what was chosen
    assert model.runtimes["unet"] == "openvino"
    saved = json.loads((tmp_path / "soundscape" / "probe" / f"{choice.key}.json").read_text())
    assert saved["runtimes"] == choice.runtimes

    again = _load(tiny_model_dir)
    assert again.probe.cached and again.probe.runtimes == choice.runtimes and again.probe.rows == choice.rows
    assert again.runtimes == model.runtimes

    # A damaged answer is measured again (in this test: a fresh probe costs the suite a quarter minute).
    path = tmp_path / "soundscape" / "probe" / f"{choice.key}.json"
    path.write_text('{"runtimes": {"vae": "tpu"}, "rows": []}')
    third = _load(tiny_model_dir).probe  # a later start: the vocoder has no torch weights left to time
    assert not third.cached and set(third.runtimes) == {"vae"}
    assert json.loads(path.read_text())["runtimes"] == third.runtimes


def test_a_candidate_that_fails_the_gate_is_never_chosen(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SOUNDSCAPE_PROBE", "1")
    monkeypatch.setattr(probe, "GATE_DB", -1000.0)  # nothing but the yardstick itself can pass
    model = _load(tiny_model_dir)
    assert model.probe.runtimes == {"vae": "torch", "vocoder": "torch"}
    assert [r.passed for r in model.probe.rows if r.runtime == "openvino"] == [False, False]
    assert model.runtimes == {"unet": "openvino", "vae": "torch", "vocoder": "torch"}


ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_the_probe_key_handles_a_cpu_without_the_x86_flags(tiny_model, tmp_path):
    arm = tmp_path / "cpuinfo"
    arm.write_text(ARM_CPUINFO)
    name, flags = probe.cpu_identity(str(arm))
    assert name == "BCM2835" and "asimd" in flags and "avx2" not in flags
    nothing = probe.cpu_identity(str(tmp_path / "missing"))
    assert nothing[0] and nothing[1] == []  # the platform's name, no flags
    keys = {probe.probe_key(tiny_model.pipe, tiny_model.precision, cpuinfo=c)
            for c in (str(arm), str(tmp_path / "missing"), "/proc/cpuinfo")}
    assert len(keys) == 3  # another CPU is measured again
