"""The streaming loudness controller on synthetic 16 kHz signals fed in chunk-sized blocks."""

from __future__ import annotations

import io

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from soundscape.audio.loudness import LoudnessController, LoudnessState, measure

RATE = 16000
CHUNK = 122880  # 7.68 s, the stream's hop
CEILING = 10 ** (-1 / 20)


def pink(seconds: float, seed: int = 0) -> np.ndarray:
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    # 1/f power from 20 Hz up: no sub-audio wander (K-weighting ignores it, RMS and peaks would not).
    return np.fft.irfft(spectrum / np.sqrt(np.maximum(f, 20.0)) * (f >= 20.0), n)


def at_lufs(x: np.ndarray, lufs: float) -> np.ndarray:
    return x * 10 ** ((lufs - pyloudnorm.Meter(RATE).integrated_loudness(x)) / 20)


def run(ctl: LoudnessController, x: np.ndarray, sizes=(CHUNK,), presence: float = 1.0, state=None) -> np.ndarray:
    """Feed x in blocks cycling through `sizes`; returns the output re-aligned to the input (latency removed)."""
    out, i, j = [], 0, 0
    while i < len(x):
        n = sizes[j % len(sizes)]
        y, state = ctl.process(x[i: i + n], state, presence)
        out.append(y)
        i, j = i + n, j + 1
    return np.concatenate(out)[ctl.latency:]


def lufs(y: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(y)


def db_rms(y: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(y, dtype=np.float64)) + 1e-30)


def true_peak(y: np.ndarray) -> float:
    return float(np.max(np.abs(resample_poly(y.astype(np.float64), 4, 1))))


@pytest.mark.parametrize("noise", ["pink", "white"])
def test_steady_noise_settles_at_target(noise):
    x = pink(300) if noise == "pink" else np.random.default_rng(1).standard_normal(300 * RATE)
    y = run(LoudnessController(RATE), at_lufs(x, -35.0).astype(np.float32))
    assert y.dtype == np.float32 and len(y) == 300 * RATE - LoudnessController(RATE).latency
    assert abs(lufs(y[-60 * RATE:]) - -23.0) < 1.0
    # Primed from the first block: the first minute is already at the target too.
    assert abs(lufs(y[: 60 * RATE]) - -23.0) < 1.0


def test_short_term_loudness_matches_pyloudnorm():
    x = at_lufs(pink(20, seed=3), -30.0)
    _, state = LoudnessController(RATE).process(x, None)
    assert abs(state.loudness - lufs(x[-3 * RATE:])) < 0.2


def test_boost_is_capped():
    y = run(LoudnessController(RATE, max_boost_db=12.0), at_lufs(pink(120), -45.0))
    assert abs(lufs(y[-60 * RATE:]) - -33.0) < 0.5


def gain_db(ctl: LoudnessController, x: np.ndarray, sizes) -> np.ndarray:
    """The controller's gain per input sample: x rides on a DC offset so it is never near zero.

    K-weighting removes the DC from the measurement; the gain still applies to it.
    """
    return 20 * np.log10(run(ctl, x, sizes) / x[: len(x) - ctl.latency])


@pytest.mark.parametrize("step_db", [6.0, -6.0])
def test_level_step_is_eased_without_pumping(step_db):
    ctl = LoudnessController(RATE, target_lufs=-30.0, attack_s=15.0, release_s=20.0)
    rng = np.random.default_rng(2)
    noise = at_lufs(rng.standard_normal(200 * RATE), -36.0)
    t_step = 40 * RATE
    noise[t_step:] *= 10 ** (step_db / 20)
    x = 0.02 + noise
    sizes = (CHUNK, 50_000, 1601, 99_999)
    g = gain_db(ctl, x, sizes)
    before = np.median(g[t_step - RATE: t_step])
    assert abs(before - 6.0) < 0.3  # -36 LUFS held at -30: +6 dB
    # Right after the step the gain has hardly moved: the event keeps its size.
    assert abs(np.median(g[t_step + RATE: t_step + 2 * RATE]) - before) < 0.5
    # Several time constants later the level is back on target.
    y = run(ctl, x, sizes)
    assert abs(lufs(y[-40 * RATE:]) - -30.0) < 0.5
    # Smooth at block edges: no sample-to-sample gain jump there larger than anywhere inside blocks,
    # and no kink either (second difference).
    edges = np.cumsum(np.resize(sizes, 200))
    edges = edges[edges < len(g) - 2]
    d1, d2 = np.abs(np.diff(g)), np.abs(np.diff(g, 2))
    inside = np.ones(len(d1), bool)
    inside[edges - 1] = False
    assert d1[edges - 1].max() <= d1[inside].max() * 1.01 + 1e-9
    assert d2[edges - 2].max() <= d2[inside[:-1]].max() * 1.01 + 1e-9
    assert d1.max() < 1e-3  # dB per sample: never a step


def test_burst_keeps_its_size_and_never_clips():
    bed = at_lufs(pink(120, seed=4), -23.0)
    start, n = 60 * RATE, RATE // 2
    x = bed.copy()
    x[start: start + n] *= 10 ** (15 / 20)
    y = run(LoudnessController(RATE), x.astype(np.float32))
    above = db_rms(y[start: start + n]) - db_rms(y[start - 5 * RATE: start])
    assert above >= 10.0
    assert np.max(np.abs(y)) <= CEILING
    assert true_peak(y) <= CEILING * 10 ** (0.1 / 20)
    # The limiter really worked: without it the burst's peaks pass 0 dBFS.
    assert np.max(np.abs(x)) > 1.0


def test_limiter_holds_ceiling_on_a_full_scale_square_wave():
    t = np.arange(10 * RATE)
    x = np.sign(np.sin(2 * np.pi * 441 * t / RATE)) * 0.9
    y = run(LoudnessController(RATE, target_lufs=-6.0), x.astype(np.float32), sizes=(4000, 777))
    assert np.max(np.abs(y)) <= CEILING
    assert true_peak(y) <= CEILING * 10 ** (0.2 / 20)


@pytest.mark.parametrize("tail", ["zeros", "noise_floor", "fade"])
def test_fade_to_silence_stays_silent(tail):
    scene = at_lufs(pink(60, seed=5), -30.0)
    quiet = np.random.default_rng(6).standard_normal(120 * RATE) * 10 ** (-90 / 20)
    if tail == "zeros":
        quiet[:] = 0.0
    elif tail == "fade":  # a 20 s fade that the level follower partly tracks before the gate closes
        fade = np.linspace(1.0, 0.0, 20 * RATE) ** 3
        quiet[: len(fade)] += pink(20, seed=7) * fade * np.sqrt(np.mean(scene ** 2))
    ctl = LoudnessController(RATE)
    y = run(ctl, np.concatenate([scene, quiet]).astype(np.float32))
    last = y[-60 * RATE:]
    assert db_rms(last) < -70.0
    if tail == "noise_floor":  # the gain held near the scene's +7 dB instead of rising to the +12 cap
        assert db_rms(last) - db_rms(quiet[-60 * RATE:]) < 8.5


def test_presence_scales_smoothly():
    x = at_lufs(pink(40, seed=8), -23.0).astype(np.float32)
    ctl = LoudnessController(RATE)
    y1, st = ctl.process(x[: 20 * RATE], None, presence=1.0)
    y2, st = ctl.process(x[20 * RATE:], st, presence=0.0)
    y = np.concatenate([y1, y2])
    assert db_rms(y[-5 * RATE:]) < -120
    g = np.abs(np.diff(y[20 * RATE - 100: 20 * RATE + 2000].astype(np.float64)))
    assert g.max() < 4 * np.abs(np.diff(y1[-5000:].astype(np.float64))).max()


def test_streaming_equals_one_piece():
    x = at_lufs(pink(90, seed=9), -30.0)
    x[40 * RATE: 40 * RATE + RATE // 2] *= 10  # makes the limiter work across block edges too
    x = x.astype(np.float32)
    ctl = LoudnessController(RATE)
    whole = run(ctl, x, sizes=(len(x),))
    rng = np.random.default_rng(10)
    sizes = (4 * RATE,) + tuple(int(s) for s in rng.integers(1, 40_000, 200)) + (1, 1, 2, 3)
    split = run(ctl, x, sizes=sizes)
    np.testing.assert_allclose(split, whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(run(ctl, x, sizes=(CHUNK, 1600, 640, 77_777)), whole, rtol=0, atol=1e-6)
    # Tiny first blocks too, when both start from the same primed state.
    primed = ctl.initial_state(x)
    np.testing.assert_allclose(run(ctl, x, sizes=(1, 333, 5000), state=primed),
                               run(ctl, x, sizes=(len(x),), state=primed), rtol=0, atol=1e-6)


def test_state_round_trips_through_npz():
    x = at_lufs(pink(60, seed=11), -28.0).astype(np.float32)
    x[30 * RATE: 31 * RATE] *= 8
    ctl = LoudnessController(RATE)
    a, st = ctl.process(x[: 29 * RATE + 123], None)
    buf = io.BytesIO()
    np.savez(buf, **st.to_arrays(prefix="loud_"), other=np.zeros(3))
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        restored = LoudnessState.from_arrays(f, prefix="loud_")
    b1, _ = ctl.process(x[29 * RATE + 123:], st)
    b2, _ = ctl.process(x[29 * RATE + 123:], restored)
    np.testing.assert_array_equal(b1, b2)
    assert isinstance(restored.sub_pos, int) and isinstance(restored.level, float)


def test_state_is_not_mutated():
    x = at_lufs(pink(10, seed=12), -25.0).astype(np.float32)
    ctl = LoudnessController(RATE)
    _, st = ctl.process(x[: 5 * RATE], None)
    before = st.to_arrays()
    ctl.process(x[5 * RATE:], st)
    for k, v in st.to_arrays().items():
        np.testing.assert_array_equal(v, before[k])


def test_silent_start_primes_on_the_first_sound():
    x = np.concatenate([np.zeros(5 * RATE), at_lufs(pink(120, seed=13), -35.0)]).astype(np.float32)
    y = run(LoudnessController(RATE), x)
    assert np.all(y[: 5 * RATE - 100] == 0)
    assert abs(lufs(y[10 * RATE: 40 * RATE]) - -23.0) < 1.0


def test_measure_integrated_and_range():
    steady = at_lufs(pink(60, seed=14), -20.0)
    m = measure(steady, RATE)
    assert abs(m["integrated_lufs"] - -20.0) < 0.1 and m["lra_lu"] < 1.0
    assert m["true_peak_dbtp"] == pytest.approx(20 * np.log10(true_peak(steady)), abs=1e-6)
    # Alternating 10 s at -20 and -30 LUFS: a range of about 10 LU.
    alt = np.concatenate([steady[i * 10 * RATE: (i + 1) * 10 * RATE] * (1 if i % 2 else 10 ** (-10 / 20))
                          for i in range(6)])
    assert 8.0 < measure(alt, RATE)["lra_lu"] < 11.0
    short = measure(steady[: RATE], RATE)
    assert np.isfinite(short["integrated_lufs"]) and np.isnan(short["lra_lu"])
    assert measure(np.zeros(5 * RATE), RATE)["integrated_lufs"] == -np.inf
