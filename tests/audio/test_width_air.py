"""Width and air (issue 25) on synthetic ambience: textures made at 48 kHz, band-limited to 16 kHz as the
model delivers them, run through the stages and compared with the originals."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.signal import butter, coherence, firwin, resample_poly, sosfilt

from soundscape.audio.air import Air, AirState
from soundscape.audio.chain import ChainState, OutputChain, _cyclic
from soundscape.audio.loudness import measure
from soundscape.audio.resample import ResamplerState, StreamResampler
from soundscape.audio.width import RAMP_S, Width

FS = 48000
SECONDS = 8.0
DEFAULT = 0.5  # scene/schema.py's output.width and output.air


# Textures --------------------------------------------------------------------------------------

def rain(rng, n):
    """A bed of noise plus thousands of short decaying droplets (broadband, above 1 kHz)."""
    bed = 0.05 * sosfilt(butter(1, 400, "highpass", fs=FS, output="sos"), rng.standard_normal(n))
    drops = np.zeros(n)
    for a in rng.integers(0, n - 1000, int(400 * n / FS)):
        length = rng.integers(100, 800)
        drops[a:a + length] += rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 5)) \
            * rng.uniform(0.05, 0.5)
    return bed + sosfilt(butter(1, 1000, "highpass", fs=FS, output="sos"), drops)


def stream(rng, n):
    """Band-limited noise (200 Hz-12 kHz) with slow amplitude movement."""
    t = np.arange(n) / FS
    x = sosfilt(butter(2, [200, 12000], "bandpass", fs=FS, output="sos"), rng.standard_normal(n))
    return 0.2 * x * (1 + 0.4 * np.sin(2 * np.pi * 0.3 * t) + 0.2 * np.sin(2 * np.pi * 1.1 * t + 1))


def wind(rng, n):
    """Low-passed noise (500 Hz, 12 dB/octave) with gusts."""
    t = np.arange(n) / FS
    x = sosfilt(butter(2, 500, "lowpass", fs=FS, output="sos"), rng.standard_normal(n))
    return 0.5 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 0.13 * t) ** 2 + 0.3 * np.maximum(0, np.sin(2 * np.pi * 0.37 * t)))


def fire(rng, n):
    """Crackles (short bursts) on a soft low bed."""
    x = 0.3 * sosfilt(butter(1, 300, "lowpass", fs=FS, output="sos"), rng.standard_normal(n))
    for a in rng.integers(0, n - 500, int(60 * n / FS)):
        length = rng.integers(20, 300)
        x[a:a + length] += rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4)) * rng.uniform(0.05, 0.8)
    return x


def birds(rng, n):
    """Frequency-modulated chirps (2-4 kHz) with two harmonics."""
    y = 0.002 * rng.standard_normal(n)
    for a in rng.integers(0, n - FS // 4, int(6 * n / FS)):
        length = rng.integers(FS // 20, FS // 6)
        t = np.arange(length) / FS
        f0 = rng.uniform(2000, 4000) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(5, 20) * t))
        phase = 2 * np.pi * np.cumsum(f0) / FS
        env = np.sin(np.pi * np.arange(length) / length) ** 2
        for h, g in ((1, 1.0), (2, 0.3), (3, 0.1)):
            y[a:a + length] += 0.2 * g * env * np.sin(h * phase)
    return y


TEXTURES = {"rain": rain, "stream": stream, "wind": wind, "fire": fire, "birds": birds}


@pytest.fixture(scope="module")
def textures():
    """name -> (the 48 kHz original, the model's 16 kHz version back at 48 kHz through the chain's resampler)."""
    out = {}
    for i, (name, make) in enumerate(TEXTURES.items()):
        x = make(np.random.default_rng(i), int(SECONDS * FS))
        up, _ = StreamResampler(16000, FS).push(resample_poly(x, 1, 3).astype(np.float32), ResamplerState())
        out[name] = x[: len(up)], up.astype(np.float64)
    return out


def third_octaves(x, centres):
    """Energy in each third-octave band around `centres`."""
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    return np.array([spectrum[(f >= c * 2 ** (-1 / 6)) & (f < c * 2 ** (1 / 6))].sum() for c in centres])


# Width -----------------------------------------------------------------------------------------

def test_width_coherence_mono_sum_and_clicks(textures):
    for name, (_, x) in textures.items():
        y, _ = Width(FS, DEFAULT).process(x, None)
        f, c = coherence(y[:, 0], y[:, 1], fs=FS, nperseg=4096)
        mid, low = c[(f >= 500) & (f <= 8000)].mean(), c[(f > 0) & (f < 150)].mean()
        assert 0.2 <= mid <= 0.6, (name, mid)
        assert low >= 0.9, (name, low)
        # The mono sum is the input: within 1 dB in every third octave from 50 Hz to 8 kHz (it is exact).
        centres = 1000 * 2 ** (np.arange(-13, 10) / 3)
        ratio = 10 * np.log10(third_octaves((y[:, 0] + y[:, 1]) / 2.0, centres) / third_octaves(x, centres))
        assert np.abs(ratio).max() < 1.0, (name, ratio)
    # Width 0 is the dual mono of old; full width decorrelates further.
    y0, _ = Width(FS, 0.0).process(textures["rain"][1], None)
    np.testing.assert_array_equal(y0[:, 0], y0[:, 1])
    y1, _ = Width(FS, 1.0).process(textures["rain"][1], None)
    f, c = coherence(y1[:, 0], y1[:, 1], fs=FS, nperseg=4096)
    assert c[(f >= 500) & (f <= 8000)].mean() < 0.2
    # An isolated click arrives in both channels within 1 ms (at the same sample: the mid is the input).
    click = np.zeros(FS)
    click[FS // 2] = 0.5
    y, _ = Width(FS, DEFAULT).process(click, None)
    left, right = np.argmax(np.abs(y[:, 0])), np.argmax(np.abs(y[:, 1]))
    assert abs(left - FS // 2) < FS / 1000 and abs(right - FS // 2) < FS / 1000, (left, right)


def test_width_moves_smoothly_when_changed_and_streams_exactly():
    x = np.random.default_rng(9).standard_normal(3 * FS) * 0.1
    whole, _ = Width(FS, 0.7).process(x, None)
    state, parts = None, []
    for a, b in ((0, 1), (1, 4000), (4000, 77777), (77777, len(x))):  # any cut gives the same samples
        y, state = Width(FS, 0.7).process(x[a:b], state)
        parts.append(y)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # A live change from 0.2 to 0.9: the side gain ramps, never steps.
    y1, state = Width(FS, 0.2).process(x[:FS], None)
    y2, state = Width(FS, 0.9).process(x[FS:], state)
    side = np.concatenate([y1[:, 0] - y1[:, 1], y2[:, 0] - y2[:, 1]]).astype(np.float64) / 2
    unit = (whole1 := Width(FS, 1.0).process(x, None)[0])[:, 0].astype(np.float64) - whole1[:, 1]
    seen = np.abs(unit) > 1e-2
    g = side[seen] / (unit[seen] / 2)  # the side is g times the full-width side
    at = np.flatnonzero(seen)
    assert np.allclose(g[at < FS], 0.2, atol=1e-3) and np.allclose(g[at > FS + RAMP_S * FS], 0.9, atol=1e-3)
    assert np.diff(g)[np.diff(at) == 1].max() <= 1 / (RAMP_S * FS) + 1e-3  # a ramp, never a step
    assert state.g == pytest.approx(0.9)


# Air -------------------------------------------------------------------------------------------

def test_air_fills_8_to_16_khz_within_7_db_of_the_synthetic_originals(textures):
    centres = [8000, 10000, 12500, 16000]
    # Not the synthetic wind: its 12 dB/octave fall from 500 Hz never stops, where real wind flattens out
    # (the real recordings' wind came out at -7 and 0 dB at 16 kHz, this one at +10).
    for name in ("rain", "stream", "fire"):
        original, x = textures[name]
        y, _ = Air(FS, DEFAULT, seed=1).process(x.astype(np.float32), None)
        before = 10 * np.log10(third_octaves(x, centres) / third_octaves(original, centres))
        error = 10 * np.log10(third_octaves(y, centres) / third_octaves(original, centres))
        if name != "wind":  # wind's own air is ~70 dB down, where the resamplers' stopbands leak as much
            assert before[1:].max() < -30, (name, before)  # the band-limited version is missing it
        # 7 dB: the stream's synthetic 12 kHz low-pass is steeper than any real recording's roll-off; the
        # tuning now follows real recordings (tests/test_air_real.py, docs/air-real.md), 6.6 dB here.
        assert np.abs(error).max() <= 7.0, (name, error)


def test_air_adds_nothing_above_a_low_passed_sound_and_is_off_at_16_khz(textures):
    original, _ = textures["rain"]
    low = np.convolve(original, firwin(801, 3800, fs=FS, window=("kaiser", 8.0)), "same")  # low-passed at 4 kHz
    x, _ = StreamResampler(16000, FS).push(resample_poly(low, 1, 3).astype(np.float32), ResamplerState())
    y, _ = Air(FS, 1.0, seed=1).process(x, None)  # even at full air
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / FS)
    assert 10 * np.log10(spectrum[f > 8000].sum() / spectrum.sum()) <= -60
    assert not Air(16000, 1.0).active and not Air(FS, 0.0).active
    silent, _ = Air(FS, 1.0).process(np.zeros(FS, np.float32), None)
    assert not silent.any()


def test_air_follows_the_noise_under_a_song_not_the_song():
    """A whistle at 6.5 kHz, 30 dB over a noise bed and on for 0.4 s of every second (a bird's song), and
    the bed alone: above 8 kHz the air is the bed's within 3 dB in every second (issue 30: the air followed
    the band's mean power, which the song rules, and came out 7-23 dB too bright on real birds)."""
    rng = np.random.default_rng(6)
    bed = rng.standard_normal(8 * FS) * 0.01
    bed, _ = StreamResampler(16000, FS).push(resample_poly(bed, 1, 3).astype(np.float32), ResamplerState())
    t = np.arange(len(bed)) / FS
    song = 0.3 * np.sin(2 * np.pi * 6500 * t) * ((t % 1.0) < 0.4)
    levels = []
    for x in (bed.astype(np.float64), bed + song):
        y, _ = Air(FS, DEFAULT, seed=1).process(x.astype(np.float32), None)
        added = y.astype(np.float64) - x.astype(np.float32)  # the air alone (the whistle's own skirt aside)
        levels.append(10 * np.log10(np.mean(added[FS: 7 * FS].reshape(-1, FS) ** 2, axis=1)))
    assert np.abs(levels[1] - levels[0]).max() <= 3.0, levels


def test_air_streams_exactly_and_its_noise_is_the_seeds():
    x = (np.random.default_rng(2).standard_normal(2 * FS) * 0.1).astype(np.float32)
    whole, _ = Air(FS, 0.5, seed=3).process(x, None)
    state, parts = None, []
    for a, b in ((0, 5000), (5000, 60001), (60001, len(x))):
        y, state = Air(FS, 0.5, seed=3).process(x[a:b], state)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-6)
    other, _ = Air(FS, 0.5, seed=4).process(x, None)
    assert not np.allclose(other, whole)


def test_air_state_saved_and_loaded_continues_and_an_older_one_is_taken():
    """A resumed render reads the state from OUT.state.npz: loaded, it continues exactly; one saved before
    the noise-floor analysis (issue 30b: other keys) keeps its counter and filters and starts the analysis
    afresh, without an error."""
    x = (np.random.default_rng(4).standard_normal(5 * FS) * 0.1).astype(np.float32)
    whole, _ = Air(FS, 0.5, seed=3).process(x, None)
    first, state = Air(FS, 0.5, seed=3).process(x[:FS], None)
    loaded = AirState.from_arrays(state.to_arrays(prefix="air_"), prefix="air_")
    rest, _ = Air(FS, 0.5, seed=3).process(x[FS:], loaded)
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, rtol=0, atol=1e-6)
    older = {"air_lo_zi": np.zeros((4, 2)), "air_hi_zi": np.zeros((4, 2)), "air_env_zi": np.zeros(3),
             "air_band_zi": state.band_zi, "air_n": np.array(state.n)}
    resumed, after = Air(FS, 0.5, seed=3).process(x[FS:], AirState.from_arrays(older, prefix="air_"))
    assert after.n == 5 * FS and np.isfinite(resumed).all()
    late = slice(3 * FS, 4 * FS)  # once its 2 s window has passed, the air is the uninterrupted one's
    np.testing.assert_allclose(resumed[late], whole[FS:][late], rtol=0, atol=1e-5)


# Both, in the chain ----------------------------------------------------------------------------

def test_loop_stages_wrap_like_a_stream_on_repeat(textures):
    """A cycle through air and width (as a loop file is finished) is one period of the endless repeat."""
    y = textures["rain"][1][: 4 * FS]
    period = len(y)
    for stage in (Air(FS, DEFAULT, seed=2, period=period), Width(FS, DEFAULT, period=period)):
        cycle = _cyclic(stage, y, 3 * FS)
        repeat, _ = stage.process(np.tile(y, 3), None)
        np.testing.assert_allclose(cycle, repeat[period: 2 * period], rtol=0, atol=1e-5)


def test_chain_holds_loudness_and_true_peak_with_width_and_air(textures):
    """Through the whole chain (16 kHz chunks in), the loudness stays within 0.3 LU of the dual mono of
    old and the true peak at or under -1 dBTP; both stages together cost under 2 % of real time."""
    x = np.concatenate([textures[k][1] for k in ("rain", "stream", "fire")])
    chunks = resample_poly(x, 1, 3).astype(np.float32)
    settings = dict(xfade=2560, edge=0, loudness_lufs=-23.0, volume=1.0, fade_in_s=0.0, model_rate=16000,
                    out_rate=FS, channels=2, seed=5)
    results = {}
    for label, extra in (("old", dict(width=0.0, air=0.0)), ("new", dict(width=DEFAULT, air=DEFAULT))):
        chain, state, out = OutputChain(**settings, **extra), ChainState(), []
        for i in range(0, len(chunks) - 2560, 40960):
            y, state = chain.push(chunks[i: i + 40960 + 2560], state, 1.0)
            out.append(y)
        results[label] = np.concatenate(out), chain.stage_s
    old, new = (measure(results[k][0], FS) for k in ("old", "new"))
    assert abs(new["integrated_lufs"] - old["integrated_lufs"]) <= 0.3, (old, new)
    assert abs(new["integrated_lufs"] - -23.0) <= 1.0 and new["true_peak_dbtp"] <= -1.0 + 1e-3, new
    seconds = len(results["new"][0]) / FS
    # Timed again alone (the chain's own clock includes what else the machine did then).
    air, width = Air(FS, DEFAULT, seed=5), Width(FS, DEFAULT)
    mono = textures["rain"][1].astype(np.float32)
    best = min(_timed(lambda: width.process(air.process(mono, None)[0], None)) for _ in range(3))
    assert best / (len(mono) / FS) < 0.02, best
    assert results["new"][1] > 0 and seconds > 0


def _timed(call) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


# Controls: the scene's keys and `soundscape enhance` ------------------------------------------------

def test_scene_output_width_and_air_are_checked():
    from conftest import SCENE, scene_yaml

    from soundscape.errors import SceneError
    from soundscape.scene import parse_scene

    scene = parse_scene(SCENE)
    assert scene.output.width == DEFAULT and scene.output.air == DEFAULT
    assert parse_scene(scene_yaml({"output": {"width": 0, "air": 1}})).output.air == 1
    with pytest.raises(SceneError, match="output.width"):
        parse_scene(scene_yaml({"output": {"width": 1.5}}))


def test_enhance_gives_a_file_width_and_air_at_its_loudness(textures, tmp_path, capsys):
    import soundfile as sf

    from soundscape.cli import main

    src = tmp_path / "model.wav"
    sf.write(src, 0.5 * resample_poly(textures["rain"][0], 1, 3).astype(np.float32), 16000)  # 16 kHz mono
    out, flat = tmp_path / "wide.flac", tmp_path / "flat.wav"
    assert main(["enhance", str(src), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "air + width:" in err and "% of real time" in err
    y, rate = sf.read(out)
    assert rate == FS and y.shape == (len(sf.read(src)[0]) * 3, 2)  # lines up with the input, at 48 kHz
    m, m_in = measure(y, FS), measure(np.repeat(sf.read(src)[0][:, None], 2, axis=1), 16000)
    assert abs(m["integrated_lufs"] - m_in["integrated_lufs"]) < 0.5 and m["true_peak_dbtp"] <= -1.0 + 1e-3
    spectrum = np.abs(np.fft.rfft(y[:, 0])) ** 2
    f = np.fft.rfftfreq(len(y), 1 / FS)
    assert spectrum[(f > 9000) & (f < 16000)].sum() > 1e-3 * spectrum.sum()  # air
    assert np.corrcoef(y[:, 0], y[:, 1])[0, 1] < 0.9  # width
    assert main(["enhance", str(src), "-o", str(flat), "--width", "0", "--air", "0", "--rate", "44100"]) == 0
    z, rate = sf.read(flat)
    assert rate == 44100 and np.array_equal(z[:, 0], z[:, 1])
    capsys.readouterr()
    for bad in (["--width", "2"], ["--air", "-0.1"], ["--rate", "16000"]):
        with pytest.raises(SystemExit) as exit_:
            main(["enhance", str(src), "-o", str(flat), *bad])
        assert exit_.value.code == 2, bad
    assert main(["enhance", str(tmp_path / "none.wav"), "-o", str(flat)]) == 2
    with pytest.raises(SystemExit):
        main(["enhance", "--help"])
    usage = capsys.readouterr().out
    assert all(option in usage for option in ("--width", "--air", "--rate", "-o"))
