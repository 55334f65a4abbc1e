"""Prepacked oneDNN weights on the bf16 CPU path (issue 10): same results, applied where they pay, only there."""

from __future__ import annotations

import copy

import pytest
import torch

from soundscape.model.loading import LoadedModel, load_model
from soundscape.model.prepack import (PackedConv, PackedConvTranspose1d, PackedLinear, is_prepacked, onednn_has_bf16,
                                      prepack)
from soundscape.model.tiny import build_tiny_pipeline

# The packed ops themselves need oneDNN's bf16 kernels: an AVX2-only CPU has none (load leaves it unpacked).
needs_onednn_bf16 = pytest.mark.skipif(not onednn_has_bf16(),
                                       reason="this CPU's oneDNN has no bf16 kernels (AVX2 only): nothing is packed")


def _snr(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return float(10 * torch.log10(ref.pow(2).sum() / (out - ref).pow(2).sum()))


def _stages(pipe):
    """Each stage as a call on fixed inputs: UNet (a guided batch of 2), VAE decode, vocoder."""
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 8, 64, 16, generator=g)
    dims = pipe.unet.config.cross_attention_dim[0]  # per block: (self, GPT-2 tokens, T5 tokens)
    gpt = torch.randn(2, 8, dims[1], generator=g)
    t5 = torch.randn(2, 11, dims[2], generator=g)
    mask = torch.ones(2, 11, dtype=torch.long)
    mel = torch.randn(1, 256, 64, generator=g)

    def run(unet, vae, vocoder, dtype):
        with torch.inference_mode():
            return {
                "unet": unet(latents.to(dtype), torch.tensor(500), encoder_hidden_states=gpt.to(dtype),
                             encoder_hidden_states_1=t5.to(dtype), encoder_attention_mask_1=mask,
                             return_dict=False)[0].float(),
                "vae": vae.decode(latents[:1].to(dtype)).sample.float(),
                "vocoder": vocoder(mel.to(dtype)).float(),
            }
    return run


@needs_onednn_bf16
def test_prepacked_stages_compute_what_the_plain_ones_do():
    pipe = build_tiny_pipeline(seed=0)
    run = _stages(pipe)
    ref = run(pipe.unet, pipe.vae, pipe.vocoder, torch.float32)
    plain = [copy.deepcopy(m).to(torch.bfloat16) for m in (pipe.unet, pipe.vae, pipe.vocoder)]
    packed = copy.deepcopy(plain)
    counts = [prepack(m) for m in packed]
    # Every linear and conv layer of the UNet and VAE, every conv and transposed conv of the vocoder.
    assert counts[0] == sum(type(m) in (torch.nn.Linear, torch.nn.Conv2d) for m in plain[0].modules())
    assert counts[2] == sum(type(m) in (torch.nn.Conv1d, torch.nn.ConvTranspose1d) for m in plain[2].modules())
    assert any(type(m) is torch.nn.ConvTranspose1d for m in plain[2].modules())
    assert not any(type(m) in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d) for m in packed[0].modules())
    assert any(isinstance(m, PackedLinear) for m in packed[0].modules())
    assert any(isinstance(m, PackedConv) and m.one_d for m in packed[2].modules())
    assert any(isinstance(m, PackedConvTranspose1d) for m in packed[2].modules())
    a, b = run(*plain, torch.bfloat16), run(*packed, torch.bfloat16)
    for stage in ("unet", "vae", "vocoder"):
        assert a[stage].shape == b[stage].shape == ref[stage].shape, stage
        assert torch.isfinite(b[stage]).all(), stage
        # The packed kernels are bf16 too: as close to fp32 as plain bf16 (about 35-45 dB), not worse.
        snr_plain, snr_packed = _snr(a[stage], ref[stage]), _snr(b[stage], ref[stage])
        assert snr_packed > 30 and snr_packed > snr_plain - 3, (stage, snr_plain, snr_packed)


def test_load_prepacks_bf16_on_the_cpu_only(tiny_model_dir, monkeypatch):
    bf16 = load_model(str(tiny_model_dir), device="cpu", dtype="bf16", quiet=True, runtime="torch")
    if not onednn_has_bf16():
        # An AVX2-only CPU: the packed ops would refuse bf16 weights, so nothing is packed, and bf16 still runs.
        assert bf16.prepacked == () and not is_prepacked(bf16.pipe.unet)
        with torch.inference_mode():
            out = bf16.pipe.vocoder(torch.randn(1, 16, bf16.pipe.vocoder.config.model_in_dim, dtype=torch.bfloat16))
        assert torch.isfinite(out.float()).all()
        return
    assert bf16.prepacked == ("unet", "vae", "vocoder")
    assert all(is_prepacked(m) for m in (bf16.pipe.unet, bf16.pipe.vae, bf16.pipe.vocoder))
    assert bf16.unet is bf16.pipe.unet and not bf16.packed  # in place: no second copy of the weights
    # Still a parameter left to read a dtype and device from (the vocoder has nothing but convs).
    assert next(bf16.pipe.vocoder.parameters()).dtype == torch.bfloat16
    assert bf16.pipe.vocoder.dtype == bf16.pipe.unet.dtype == torch.bfloat16
    fp32 = load_model(str(tiny_model_dir), device="cpu", dtype="fp32", quiet=True, runtime="torch")
    assert fp32.prepacked == () and not is_prepacked(fp32.pipe.unet)  # packed fp32 measured slower
    fp16 = load_model(str(tiny_model_dir), device="cpu", dtype="fp16", quiet=True, runtime="torch")
    assert fp16.prepacked == ()
    monkeypatch.setenv("SOUNDSCAPE_PREPACK", "0")
    off = load_model(str(tiny_model_dir), device="cpu", dtype="bf16", quiet=True, runtime="torch")
    assert off.prepacked == () and not is_prepacked(off.pipe.unet)


@needs_onednn_bf16
def test_keep_torch_packs_copies_and_leaves_the_pipeline_castable():
    pipe = build_tiny_pipeline(seed=0).to("cpu", torch.bfloat16)
    model = LoadedModel(pipe=pipe, model_id="tiny", device=torch.device("cpu"), dtype=torch.bfloat16)
    model.use_runtime("torch", keep_torch=True)
    assert model.prepacked == ("unet", "vae", "vocoder")
    assert is_prepacked(model.unet) and is_prepacked(model.vocoder) and model.unet is not pipe.unet
    assert not is_prepacked(pipe.unet) and not is_prepacked(pipe.vocoder)
    assert pipe.vae.decode.__self__ is model.packed["vae"]  # our decode path runs the packed copy
    pipe.unet.to(torch.float32)  # diffusers' side (bench --compare-diffusers) still casts
    assert next(pipe.unet.parameters()).dtype == torch.float32
    model.use_runtime("torch", keep_torch=True)  # again: nothing packed twice
    assert model.prepacked == ("unet", "vae", "vocoder")


@needs_onednn_bf16
def test_openvino_refuses_weights_prepacked_in_place(tiny_model_dir):
    pytest.importorskip("openvino")
    from soundscape.errors import UsageError

    model = load_model(str(tiny_model_dir), device="cpu", dtype="bf16", quiet=True, runtime="torch")
    with pytest.raises(UsageError, match="load it again with --runtime openvino"):
        model.use_runtime("openvino")
