"""OpenVINO as the default CPU runtime: static shapes, the compile cache, T5 padding, the fallback to torch.

Tests that need a cold cache set XDG_CACHE_HOME to their own folder; the others share the session's (conftest.py),
where the tiny model is converted once.
"""

import json
import os
import sys

import numpy as np
import pytest
import torch

from soundscape.stream.scene_stream import SceneStream

pytest.importorskip("openvino")

from soundscape.model import openvino_runtime as ovr  # noqa: E402
from soundscape.model.loading import LoadedModel, load_model  # noqa: E402
from soundscape.model.tiny import build_tiny_pipeline  # noqa: E402
from soundscape.model.precision import snr_db  # noqa: E402


def _unet_inputs(pipe, tokens: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    unet = pipe.unet
    gpt_dim, t5_dim = ovr._cross_dim(unet, 1), ovr._cross_dim(unet, 2)
    return (torch.randn(2, unet.config.in_channels, 64, 16, generator=g), torch.tensor(500),
            torch.randn(2, 8, gpt_dim, generator=g), torch.randn(2, tokens, t5_dim, generator=g),
            torch.ones(2, tokens, dtype=torch.long))


def _run(unet, x, t, gpt, t5, mask, dtype=torch.float32):
    with torch.inference_mode():
        return unet(x.to(dtype), t, encoder_hidden_states=gpt.to(dtype), encoder_hidden_states_1=t5.to(dtype),
                    encoder_attention_mask_1=mask, return_dict=False)[0].float()


def _pad(t5, mask, length):
    extra = length - t5.shape[1]
    return torch.nn.functional.pad(t5, (0, 0, 0, extra)), torch.nn.functional.pad(mask, (0, extra))


def test_t5_padding_changes_the_unet_output_by_no_more_than_bf16_noise(tiny_model):
    """The mask carries the padding: padded tokens get -10000 before the softmax, so weight 0."""
    import copy

    x, t, gpt, t5, mask = _unet_inputs(tiny_model.pipe, tokens=7)
    assert ovr.t5_length(7) == 32 and ovr.t5_length(33) == 64 and ovr.t5_length(200) == 256
    t5p, maskp = _pad(t5, mask, ovr.t5_length(7))
    unet = tiny_model.pipe.unet
    ref = _run(unet, x, t, gpt, t5, mask)
    assert snr_db(_run(unet, x, t, gpt, t5p, maskp), ref) > 100  # fp32: the same up to summation order
    half = copy.deepcopy(unet).to(torch.bfloat16)
    plain, padded = _run(half, x, t, gpt, t5, mask, torch.bfloat16), _run(half, x, t, gpt, t5p, maskp, torch.bfloat16)
    # bf16: padding moves the output by bf16 noise (different accumulation), no more: padded and unpadded
    # are as far from fp32 as each other, and apart by about bf16's own distance from fp32 (38-39 dB here)
    noise = snr_db(plain, ref)
    assert snr_db(padded, ref) > noise - 1 and snr_db(padded, plain) > noise - 3, (snr_db(padded, plain), noise)


def test_openvino_unet_pads_t5_and_runs_guidance_as_batch_one_pairs(tiny_model_dir, tiny_model):
    model = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch")
    model.use_runtime("openvino", keep_torch=True)
    x, t, gpt, t5, mask = _unet_inputs(tiny_model.pipe, tokens=7, seed=1)
    want = _run(tiny_model.pipe.unet, x, t, gpt, t5, mask)
    got = _run(model.unet, x, t, gpt, t5, mask)  # guided: batch 2
    assert snr_db(got, want) > 60  # fp32 hint: the same network up to rounding
    one = _run(model.unet, x[1:], t, gpt[1:], t5[1:, :5], mask[1:, :5])  # unguided, a shorter prompt
    assert snr_db(one, _run(tiny_model.pipe.unet, x[1:], t, gpt[1:], t5[1:, :5], mask[1:, :5])) > 60
    # One compiled shape served all three calls: batch 1, T5 padded to 32
    assert [s[0][0] for s in model.unet_runtime.model.compiled] == [1]
    assert [s[3][1] for s in model.unet_runtime.model.compiled] == [32]
    assert model.unet_runtime.model.compiles == 1


def _stream_audio(model, scene, segments=3):
    stream = SceneStream(model, scene, out_rate=16000, channels=1)
    return np.concatenate([stream.next_segment().audio[:, 0] for _ in range(segments)])


def test_second_start_compiles_nothing_and_renders_the_same(tiny_model_dir, scene, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", runtime="auto")
    assert first.runtimes == {"unet": "openvino", "vae": "torch", "vocoder": "openvino"}
    a = _stream_audio(first, scene)
    said = capsys.readouterr().err
    # The first start says what it prepares: the conversion, then each static shape as it is first met
    assert "converting the unet for OpenVINO" in said and "converting the vocoder" in said
    assert "compiling the OpenVINO unet for inputs 1x8x64x16" in said and "compiling the OpenVINO vocoder" in said
    # One compiled shape each: a stream's longer first chunk went through the vocoder's later-chunk shape in windows
    assert len(first.unet_runtime.model.compiled) == 1 and len(first.vocoder_runtime.model.compiled) == 1

    second = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", runtime="auto")
    b = _stream_audio(second, scene)
    said = capsys.readouterr().err
    assert "converting" not in said and "compiling" not in said  # all from the cache
    assert second.unet_runtime.cached and second.vocoder_runtime.cached
    entry = second.unet_runtime.model.entry
    shapes = [p for p in (entry / "shapes").iterdir() if p.is_dir()]
    assert len(shapes) == 1 and list((shapes[0] / "blobs").iterdir()), "each shape's compiled blob is cached"
    # The static shape's IR shares the entry's weights file (a hard link), not a second copy of it
    assert (shapes[0] / "model.bin").stat().st_ino == (entry / "model.bin").stat().st_ino
    np.testing.assert_array_equal(a, b)  # deterministic: same cache, same samples

    # A third start prewarms: the shapes the last start used load on threads as the stream is made (beside its
    # prompts' encoding), and its first chunk uses them (no second import; the same samples).
    import time

    third = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", runtime="auto")
    unet, vocoder = third.unet_runtime.model, third.vocoder_runtime.model
    assert not unet.compiled and not vocoder.compiled
    stream = SceneStream(third, scene, out_rate=16000, channels=1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (unet.compiled and vocoder.compiled):
        time.sleep(0.05)
    assert len(unet.compiled) == 1 and len(vocoder.compiled) == 1, "nothing was prewarmed"
    c = np.concatenate([stream.next_segment().audio[:, 0] for _ in range(3)])
    assert unet.compiles == 1 and vocoder.compiles == 1
    np.testing.assert_array_equal(a, c)
    # Prepared weights: the second start built the UNet and vocoder from their configs alone (nothing read
    # from the weights files) and took them from the cache entries the first start noted
    from soundscape.model.openvino_runtime import torch_weights_freed
    from soundscape.model.prepared import find

    assert set(second.prepared) == {"unet", "vocoder"} and not first.prepared
    assert second.prepared["unet"] == first.unet_runtime.model.entry
    assert torch_weights_freed(second.pipe.unet) and torch_weights_freed(second.pipe.vocoder)
    # A changed weights file (a new download) is noticed: the next start reads the weights again
    weights = next((tiny_model_dir / "unet").glob("*.safetensors"))
    stat = weights.stat()
    try:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert find(tiny_model_dir, second.precision) == {}
    finally:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert set(find(tiny_model_dir, second.precision)) == {"unet", "vocoder"}


def test_auto_falls_back_to_torch_with_one_line_when_openvino_cannot_run(tiny_model_dir, scene, tiny_model, tmp_path,
                                                                           monkeypatch, capsys):
    from soundscape.errors import ModelError

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the cache folder cannot be made under a file
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    model = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", runtime="auto")
    lines = [line for line in capsys.readouterr().err.splitlines() if "OpenVINO" in line]
    assert len(lines) == 1 and "running on torch" in lines[0] and "XDG_CACHE_HOME" in lines[0]
    assert model.runtimes == {"unet": "torch", "vae": "torch", "vocoder": "torch"}
    assert not ovr.torch_weights_freed(model.pipe.unet)  # nothing was freed before the failure
    want = _stream_audio(tiny_model, scene, segments=1)
    np.testing.assert_allclose(_stream_audio(model, scene, segments=1), want, atol=1e-6)
    with pytest.raises(ModelError, match="set XDG_CACHE_HOME to a writable folder, or use --runtime torch"):
        load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="openvino")


def test_auto_picks_torch_where_openvino_is_missing_or_on_a_gpu(monkeypatch):
    from soundscape.errors import UsageError

    assert ovr.choose_runtime("auto", torch.device("cpu")) == "openvino"
    assert ovr.choose_runtime("auto", torch.device("cuda")) == "torch"
    assert ovr.choose_runtime("torch", torch.device("cpu")) == "torch"
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` sees without the package
    assert ovr.choose_runtime("auto", torch.device("cpu")) == "torch"
    with pytest.raises(UsageError, match="pip install openvino, or use --runtime torch"):
        ovr.choose_runtime("openvino", torch.device("cpu"))
    said = []
    model = LoadedModel(pipe=build_tiny_pipeline(seed=0), model_id="tiny", device=torch.device("cpu"),
                        dtype=torch.float32, announce=said.append)
    assert model.use_runtime("auto") == "torch" and model.runtimes["unet"] == "torch"
    assert len(said) == 1 and "OpenVINO is not installed" in said[0] and "running on torch" in said[0]


def test_the_cli_defaults_to_auto_everywhere():
    from soundscape.cli import build_parser

    parser = build_parser()
    for argv in (["play", "s.yaml"], ["render", "s.yaml", "-o", "x.wav", "--duration", "9"], ["bench"], ["serve"]):
        assert parser.parse_args(argv).runtime == "auto", argv
    play_help = " ".join(parser._subparsers._group_actions[0].choices["play"].format_help().split())
    assert "auto (default) = OpenVINO on a CPU" in play_help


def test_dropping_the_mapped_ir_keeps_the_output(tiny_model_dir):
    """The IR's weights are only read while compiling: dropping their pages changes nothing."""
    model = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="openvino")
    mel = torch.randn(1, 100, 64, generator=torch.Generator().manual_seed(0))
    before = model.vocoder(mel)
    entry = model.vocoder_runtime.model.entry
    assert ovr._drop_mapped_pages(entry) > 0  # OpenVINO keeps the IR mapped
    np.testing.assert_array_equal(model.vocoder(mel), before)


def test_bench_compare_runtimes_interleaves_both(capsys):
    from soundscape.cli import main

    assert main(["bench", "--tiny", "--chunks", "2", "--chunk-seconds", "2.56", "--overlap-seconds", "0.64",
                 "--dtype", "fp32", "--compare-runtimes", "--json"]) == 0
    out = capsys.readouterr()
    r = json.loads(out.out)
    cmp = r["compare_runtimes"]
    assert r["runtimes"]["unet"] == "openvino" and cmp["runtimes"] == {"unet": "torch", "vae": "torch",
                                                                       "vocoder": "torch"}
    assert cmp["rtf"] > 0 and cmp["ratio"] == pytest.approx(r["rtf"] / cmp["rtf"])
    assert len(cmp["chunks"]) == len(r["chunks"]) == 2
    # interleaved: chunk by chunk, one runtime then the other
    order = [line.split("(")[-1].rstrip(")") for line in out.err.splitlines() if line.startswith("chunk ")]
    assert order[:4] == ["openvino", "torch", "openvino", "torch"]
    assert main(["bench", "--tiny", "--chunks", "1", "--runtime", "torch", "--compare-runtimes"]) == 2
    assert "leave out --runtime torch" in capsys.readouterr().err


def test_vocoder_windows_stitch_to_the_whole_call_on_the_real_architecture():
    """The cvssp/audioldm2 vocoder (random weights, fp32 torch) over overlapping windows, seams STITCH_MARGIN
    frames from every window edge, equals one call over the whole input; with too small a margin it does not
    (its receptive field reaches past it), so the test sees what the margin is for."""
    import torch

    from soundscape.model.architecture import _vocoder
    from soundscape.model.openvino_runtime import STITCH_MARGIN, stitch_windows

    torch.manual_seed(0)
    vocoder = _vocoder().eval()
    with torch.no_grad():  # gains like trained weights': at the random init's scale the far taps are near zero
        for p in vocoder.parameters():
            p.mul_(3.0)
    mel = torch.randn(1, 200, vocoder.config.model_in_dim)
    with torch.no_grad():
        whole = vocoder(mel).numpy()

        def run(part):
            return vocoder(torch.from_numpy(part)).numpy()

        window = 2 * STITCH_MARGIN + 40  # many seams
        stitched = stitch_windows(run, mel.numpy(), window, 160)
        narrow = stitch_windows(run, mel.numpy(), 2 * 8 + 40, 160, margin=8)
    assert stitched.shape == whole.shape
    peak = np.abs(whole).max()
    assert np.abs(stitched - whole).max() <= 1e-4 * peak
    assert np.abs(narrow - whole).max() > 1e-2 * peak


def test_a_short_mel_padded_to_the_compiled_window_matches_the_direct_call_before_the_dropped_edge():
    """Play's short chunk after a change (issue 32) decodes fewer frames than the vocoder's one compiled length:
    it runs padded (the last frame repeated) and cut back. The real architecture's output equals a direct call
    up to the last STITCH_MARGIN frames, inside the EDGE_FRAMES (x 4 mel frames) that the joiner drops."""
    import torch

    from soundscape.generator.chunks import EDGE_FRAMES
    from soundscape.model.architecture import _vocoder
    from soundscape.model.openvino_runtime import STITCH_MARGIN, pad_to_window

    torch.manual_seed(0)
    vocoder = _vocoder().eval()
    with torch.no_grad():  # gains like trained weights' (as above)
        for p in vocoder.parameters():
            p.mul_(3.0)
    mel = torch.randn(1, 120, vocoder.config.model_in_dim)
    with torch.no_grad():
        direct = vocoder(mel).numpy()[:, : 120 * 160]
        padded = pad_to_window(lambda part: vocoder(torch.from_numpy(part)).numpy(), mel.numpy(), 200, 160)
    assert padded.shape == direct.shape
    assert STITCH_MARGIN <= 4 * EDGE_FRAMES
    kept = (120 - STITCH_MARGIN) * 160
    peak = np.abs(direct).max()
    assert np.abs(padded[:, :kept] - direct[:, :kept]).max() <= 1e-4 * peak
    assert np.abs(padded - direct).max() > 1e-4 * peak  # the padding does reach the last frames


def test_the_short_chunk_s_unet_shape_compiles_in_the_background_beside_the_one_in_use(tiny_model_dir, scene):
    """Play's short chunk after a change (issue 32): at the first ask the shape is not there and compiles on a thread
    of its own (full chunks meanwhile); then short and full chunks alternate with no compile, two UNet shapes
    kept, the vocoder still one (the short decode padded to its length)."""
    import time

    from soundscape.stream.scene_stream import next_segments

    model = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="openvino")
    stream = SceneStream(model, scene, out_rate=16000, channels=1)
    for _ in range(2):
        stream.next_segment()
    unet = model.unet_runtime.model
    assert len(unet.compiled) == 1 and stream.short_frames() is None  # not compiled yet: it starts now
    deadline = time.monotonic() + 120
    while stream.short_frames() is None:
        assert time.monotonic() < deadline, "the short shape never compiled"
        time.sleep(0.05)
    compiles = unet.compiles, model.vocoder_runtime.model.compiles
    short = next_segments([stream], frames=stream.short_frames())[0]
    full = stream.next_segment()
    assert short.short_frames == stream.spec.short_frames and full.short_frames is None
    assert abs((short.end_s - short.start_s) - (short.short_frames - stream.spec.overlap) * 0.04) < 1e-6
    assert full.start_s == short.end_s
    assert (unet.compiles, model.vocoder_runtime.model.compiles) == compiles  # nothing compiled on the way
    assert len(unet.compiled) == 2 and len(model.vocoder_runtime.model.compiled) == 1
    assert all(np.isfinite(s.audio).all() for s in (short, full))
