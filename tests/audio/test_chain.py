"""The one after-model chain (audio/chain.py): state that resumes exactly, under the keys resume files have."""

from __future__ import annotations

import numpy as np
import pytest

from soundscape.audio.chain import ChainState, OutputChain

RATE = 16000


def _chain(**kw) -> OutputChain:
    settings = dict(xfade=2560, edge=5120, loudness_lufs=-23.0, volume=0.8, fade_in_s=0.5, model_rate=RATE,
                    out_rate=48000, channels=2, width=0.5, air=0.5, seed=7)
    return OutputChain(**{**settings, **kw})


def _chunks(n: int, length: int = 3 * RATE, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(length)).astype(np.float32) for _ in range(n)]


def test_state_saved_and_loaded_continues_to_the_same_samples(tmp_path):
    chain, chunks = _chain(), _chunks(6)
    state, whole = ChainState(), []
    for c in chunks:
        out, state = chain.push(c, state, 1.0)
        whole.append(out)
    # Stop after three chunks, save, load into a new chain, go on.
    state, first = ChainState(), []
    for c in chunks[:3]:
        out, state = chain.push(c, state, 1.0)
        first.append(out)
    np.savez(tmp_path / "state.npz", **state.to_arrays())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as f:
        state = ChainState.from_arrays(f)
    rest = []
    for c in chunks[3:]:
        out, state = _chain().push(c, state, 1.0)
        rest.append(out)
    np.testing.assert_array_equal(np.concatenate(first + rest), np.concatenate(whole))


def test_state_keys_are_the_resume_files_keys_and_older_states_are_refused(tmp_path):
    # The keys of version 1 stay; the new stages add air_ and width_ keys and `chain` says the version.
    _, state = _chain().push(_chunks(1)[0], ChainState(), 1.0)
    _, state = _chain().push(_chunks(1, seed=1)[0], state, 1.0)
    keys = set(state.to_arrays())
    assert {"samples_out", "pending", "join_tail", "history", "chain"} <= keys
    assert {k for k in keys if not k.startswith(("loud_", "air_", "width_"))} == \
        {"samples_out", "pending", "join_tail", "history", "chain"}
    assert {"loud_level", "air_n", "width_n"} <= keys
    # A state saved before the chain had air and width levelled 16 kHz mono: refused, with what to do.
    old = {k: v for k, v in state.to_arrays().items() if k != "chain" and not k.startswith(("air_", "width_"))}
    np.savez(tmp_path / "old.npz", **old)
    from soundscape.errors import UsageError

    with np.load(tmp_path / "old.npz", allow_pickle=False) as f, pytest.raises(UsageError, match="without --resume"):
        ChainState.from_arrays(f)


def test_output_is_stereo_float32_with_the_fade_in_and_volume():
    chain = _chain()
    out, state = chain.push(np.full(3 * RATE, 0.05, np.float32), ChainState(), 1.0)
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 2
    assert state.samples_out == len(out)
    assert abs(out[0, 0]) < 1e-6 and abs(out[0, 1]) < 1e-6  # the fade-in starts from silence
    # width 0 and no air: the same signal twice, as before issue 25
    flat, _ = _chain(width=0.0, air=0.0).push(_chunks(1)[0], ChainState(), 1.0)
    np.testing.assert_array_equal(flat[:, 0], flat[:, 1])
    wide, _ = _chain().push(_chunks(1)[0], ChainState(), 1.0)
    assert not np.array_equal(wide[:, 0], wide[:, 1])
    mono, _ = _chain(channels=1, volume=0.4).push(np.full(3 * RATE, 0.05, np.float32), ChainState(), 1.0)
    assert mono.shape[1] == 1


def test_a_cycle_resampled_is_one_period_of_the_endless_repeat():
    from soundscape.audio.chain import resample_cycle
    from soundscape.audio.resample import ResamplerState, StreamResampler

    rs = StreamResampler(RATE, 48000)
    cycle_len = 150 * 640  # a whole number of latent frames, and of the resampler's `down`
    cycle = (0.1 * np.random.default_rng(3).standard_normal(cycle_len)).astype(np.float32)
    period = resample_cycle(cycle, rs)
    assert len(period) == cycle_len * 3
    # The same cycle played on repeat and resampled as a stream (the output lines up with the
    # input): its middle period is this one, so the wrap is a seam like any other.
    endless, _ = rs.push(np.tile(cycle, 3), ResamplerState())
    np.testing.assert_allclose(period, endless[len(period): 2 * len(period)], atol=1e-6)


def test_finish_cycle_levels_and_scales_one_period():
    chain = _chain(fade_in_s=0.0, volume=0.5)
    cycle_len = 150 * 640
    block = (0.1 * np.random.default_rng(4).standard_normal(cycle_len)).astype(np.float32)
    out = chain.finish_cycle([(block[: cycle_len // 2], 1.0), (block[cycle_len // 2:], 1.0)])
    assert out.shape == (cycle_len * 3, 2) and out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max() <= 0.5 * 10 ** (-1 / 20) + 1e-3  # the limiter, then volume
    # Played on repeat, the wrap is no bigger a step than the cycle's own steps (air and width wrap too).
    steps = np.abs(np.diff(np.concatenate([out, out]), axis=0))
    wrap = steps[len(out) - 5: len(out) + 5].max()
    assert wrap <= np.percentile(steps, 99.9), (wrap, np.percentile(steps, 99.9))
