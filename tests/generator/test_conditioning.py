"""Conditioning: cached encodings, blend maths, and parity with the pipeline's own prompt path."""

import numpy as np
import torch

from one_stream import decode, denoise, is_cached, slerp
from soundscape.generator.conditioning import PromptEncoder, blend, with_negative
from soundscape.generator.denoise import DenoiseSpec, chunk_noise


def test_loaded_pipeline_has_the_real_parts(tiny_model):
    from transformers import GPT2LMHeadModel, RobertaTokenizer, T5Tokenizer

    pipe = tiny_model.pipe
    assert isinstance(pipe.tokenizer, RobertaTokenizer) and isinstance(pipe.tokenizer_2, T5Tokenizer)
    assert isinstance(pipe.language_model, GPT2LMHeadModel)
    assert pipe.vocoder.config.sampling_rate == 16000 and pipe.vocoder.config.model_in_dim == 64
    assert np.prod(pipe.vocoder.config.upsample_rates) == 160
    assert pipe.vae_scale_factor == 4 and pipe.vae.config.latent_channels == 8


def _ours_and_theirs(tiny_model, guidance, **pipe_kwargs):
    pipe = tiny_model.pipe
    prompt, negative = "birds singing in a forest", "noise"
    enc = PromptEncoder(tiny_model)
    cond = with_negative(blend([enc.encode(prompt)], [1.0]), enc.encode(negative))
    spec = DenoiseSpec(frames=64, steps=3, guidance_scale=guidance)
    ours = decode(tiny_model, denoise(tiny_model, cond, None, 123, spec)).numpy()
    x_t, _ = chunk_noise(123, (1, 8, 64, 16))
    if guidance > 1:
        # Our negative is encoded once, on its own; the pipeline re-encodes it padded to each
        # prompt's length (which shifts GPT-2's positions), so hand it ours.
        pipe_kwargs.update(negative_prompt_embeds=cond.t5[:1], negative_attention_mask=cond.mask[:1],
                           negative_generated_prompt_embeds=cond.gpt[:1])
    theirs = pipe(prompt, num_inference_steps=3, guidance_scale=guidance, audio_length_in_s=64 * 0.04,
                  latents=x_t, **pipe_kwargs).audios[0]
    return ours, theirs


def test_single_layer_matches_the_pipeline_prompt_path(tiny_model):
    """A single layer at weight 1 through our encoder and loop == AudioLDM2Pipeline(prompt)."""
    for guidance in (1.0, 3.0):
        ours, theirs = _ours_and_theirs(tiny_model, guidance)
        assert ours.shape == theirs.shape == (64 * 640,)
        assert np.abs(theirs).max() > 0.01
        assert np.abs(ours - theirs).max() < 1e-4, guidance


def test_encodings_are_cached(tiny_model):
    enc = PromptEncoder(tiny_model)
    a = enc.encode("rain on a roof")
    assert is_cached(enc, "rain on a roof")
    assert enc.encode("rain on a roof") is a


def test_blend_maths(tiny_model):
    enc = PromptEncoder(tiny_model)
    a, b = enc.encode("rain"), enc.encode("birds singing in a forest at dawn")
    assert a.t5.shape[1] != b.t5.shape[1]
    # A single layer at any positive weight is that layer, untouched.
    assert blend([a, b], [0.7, 0.0]) is a
    mix = blend([a, b], [1.0, 1.0])
    length = max(a.t5.shape[1], b.t5.shape[1])
    assert mix.t5.shape[1] == length and mix.mask.shape[1] == length
    assert torch.allclose(mix.gpt, (a.gpt + b.gpt) / 2, atol=1e-6)
    # Where only the longer prompt has tokens, its tokens are kept, not halved.
    short, long_ = (a, b) if a.t5.shape[1] < b.t5.shape[1] else (b, a)
    tail = slice(short.t5.shape[1], length)
    assert torch.allclose(mix.t5[:, tail], long_.t5[:, tail], atol=1e-6)
    assert mix.mask.sum() == long_.mask.sum()
    # Weights are relative: (2, 2) is (1, 1).
    assert torch.allclose(blend([a, b], [2.0, 2.0]).gpt, mix.gpt)
    # slerp: endpoints exact, norms kept.
    assert torch.equal(slerp(a.gpt, b.gpt, 0.0), a.gpt) and torch.equal(slerp(a.gpt, b.gpt, 1.0), b.gpt)
    half = slerp(a.gpt, b.gpt, 0.5)
    expect = (a.gpt.norm(dim=-1) + b.gpt.norm(dim=-1)) / 2
    assert torch.allclose(half.norm(dim=-1), expect, rtol=1e-4)
    sl = blend([a, b], [1.0, 1.0], mode="slerp")
    assert torch.allclose(sl.gpt.norm(dim=-1), expect, rtol=1e-4)
