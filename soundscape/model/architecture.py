"""The full-size cvssp/audioldm2 architecture with random weights, for benchmarks.

Why: speed and memory depend on the architecture, not on the weights, so
`soundscape bench --random-weights` can measure the real model's cost on a
machine that cannot download its ~4.5 GB of weights. The configuration below is
the published one (see shared/guide/audioldm2.md); the tokenizers are the tiny
offline ones from `tiny.py`, so token ids differ from the real model's but the
sequence lengths are of the same order. The audio it makes is noise.
"""

from __future__ import annotations

import torch

from .loading import LoadedModel, choose_device

MODEL_ID = "random:cvssp/audioldm2"

# UNet: AudioLDM2UNet2DConditionModel, ~350M parameters.
UNET_SAMPLE_SIZE = 256
UNET_CHANNELS = 8  # latent channels in and out
UNET_BLOCK_OUT_CHANNELS = (128, 256, 384, 640)
UNET_DOWN_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
UNET_UP_BLOCKS = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
UNET_LAYERS_PER_BLOCK = 2
UNET_TRANSFORMER_LAYERS_PER_BLOCK = 1
# Per block: self-attention (None), GPT-2 tokens (768), Flan-T5 tokens (1024).
UNET_CROSS_ATTENTION_DIM = [None, 768, 1024]
UNET_ATTENTION_HEAD_DIM = 8
UNET_NORM_GROUPS = 32

# VAE: AutoencoderKL on log-mel "images", 4x down in time and frequency.
VAE_CHANNELS = 1
VAE_LATENT_CHANNELS = 8
VAE_BLOCK_OUT_CHANNELS = (128, 256, 512)
VAE_LAYERS_PER_BLOCK = 2
VAE_SAMPLE_SIZE = 1024
VAE_SCALING_FACTOR = 0.4111

# Vocoder: SpeechT5HifiGan, 64 mel bins in, 5*4*2*2*2 = 160 samples per mel frame.
VOCODER_MEL_BINS = 64
VOCODER_SAMPLING_RATE = 16000
VOCODER_UPSAMPLE_RATES = [5, 4, 2, 2, 2]
VOCODER_UPSAMPLE_KERNELS = [16, 16, 8, 4, 4]
VOCODER_INITIAL_CHANNEL = 1024
VOCODER_RESBLOCK_KERNELS = [3, 7, 11]
VOCODER_RESBLOCK_DILATIONS = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]

# CLAP (laion/clap-htsat-unfused): a roberta-base text branch and the HTSAT audio branch.
CLAP_PROJECTION_DIM = 512
CLAP_TEXT = dict(vocab_size=50265, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                 num_hidden_layers=12, max_position_embeddings=514, type_vocab_size=1,
                 pad_token_id=1, bos_token_id=0, eos_token_id=2)
CLAP_AUDIO = dict(spec_size=256, window_size=8, num_mel_bins=64, patch_size=4, patch_embeds_hidden_size=96,
                  depths=[2, 2, 6, 2], num_attention_heads=[4, 8, 16, 32], hidden_size=768,
                  enable_fusion=False)
# The pipeline pads CLAP's input to the tokenizer's model_max_length (roberta's 512).
CLAP_MAX_TOKENS = 512

# Flan-T5-large encoder.
T5 = dict(vocab_size=32128, d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_heads=16,
          feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
          relative_attention_max_distance=128, tie_word_embeddings=False)
T5_MAX_TOKENS = 128

# Projection into GPT-2's width, then GPT-2 base generating 8 "language of audio" tokens.
PROJECTION_DIMS = dict(text_encoder_dim=512, text_encoder_1_dim=1024, langauge_model_dim=768)
GPT2 = dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024,
            bos_token_id=50256, eos_token_id=50256)
GPT2_NEW_TOKENS = 8

# Scheduler: the model's training schedule (DDIM in the hub folder; bench picks the solver).
SCHEDULER = dict(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 steps_offset=1, clip_sample=False, set_alpha_to_one=False)


def _unet():
    from diffusers import AudioLDM2UNet2DConditionModel

    return AudioLDM2UNet2DConditionModel(
        sample_size=UNET_SAMPLE_SIZE, in_channels=UNET_CHANNELS, out_channels=UNET_CHANNELS,
        block_out_channels=UNET_BLOCK_OUT_CHANNELS, down_block_types=UNET_DOWN_BLOCKS,
        up_block_types=UNET_UP_BLOCKS, layers_per_block=UNET_LAYERS_PER_BLOCK,
        transformer_layers_per_block=UNET_TRANSFORMER_LAYERS_PER_BLOCK,
        cross_attention_dim=tuple(list(UNET_CROSS_ATTENTION_DIM) for _ in UNET_BLOCK_OUT_CHANNELS),
        attention_head_dim=UNET_ATTENTION_HEAD_DIM, norm_num_groups=UNET_NORM_GROUPS,
    )


def _vae():
    from diffusers import AutoencoderKL

    n = len(VAE_BLOCK_OUT_CHANNELS)
    return AutoencoderKL(
        in_channels=VAE_CHANNELS, out_channels=VAE_CHANNELS, latent_channels=VAE_LATENT_CHANNELS,
        block_out_channels=VAE_BLOCK_OUT_CHANNELS, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, layers_per_block=VAE_LAYERS_PER_BLOCK,
        sample_size=VAE_SAMPLE_SIZE, scaling_factor=VAE_SCALING_FACTOR,
    )


def _vocoder():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=VOCODER_MEL_BINS, sampling_rate=VOCODER_SAMPLING_RATE,
        upsample_initial_channel=VOCODER_INITIAL_CHANNEL, upsample_rates=VOCODER_UPSAMPLE_RATES,
        upsample_kernel_sizes=VOCODER_UPSAMPLE_KERNELS, resblock_kernel_sizes=VOCODER_RESBLOCK_KERNELS,
        resblock_dilation_sizes=VOCODER_RESBLOCK_DILATIONS, normalize_before=False,
    ))


def _text_models():
    from diffusers import AudioLDM2ProjectionModel
    from transformers import (
        ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig, GPT2Config, GPT2LMHeadModel, T5Config,
        T5EncoderModel,
    )

    text = ClapTextConfig(projection_dim=CLAP_PROJECTION_DIM, **CLAP_TEXT)
    audio = ClapAudioConfig(projection_dim=CLAP_PROJECTION_DIM, **CLAP_AUDIO)
    clap = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                                projection_dim=CLAP_PROJECTION_DIM))
    t5 = T5EncoderModel(T5Config(**T5))
    gpt2 = GPT2LMHeadModel(GPT2Config(**GPT2))
    gpt2.config.max_new_tokens = GPT2_NEW_TOKENS
    projection = AudioLDM2ProjectionModel(**PROJECTION_DIMS)
    return clap, t5, projection, gpt2


def build_random_audioldm2(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                           seed: int = 0) -> LoadedModel:
    """The real AudioLDM2 architecture (~1.1B parameters) with random weights, on `device` in `dtype`.

    Slow on a CPU (tens of seconds: every weight is initialised); needs ~4.5 GB while building.
    """
    from diffusers import AudioLDM2Pipeline, DDIMScheduler
    from transformers import ClapFeatureExtractor

    from .tiny import _roberta_tokenizer, _t5_tokenizer

    dev = device if isinstance(device, torch.device) else choose_device(device)
    torch.manual_seed(seed)
    clap, t5, projection, gpt2 = _text_models()
    pipe = AudioLDM2Pipeline(
        vae=_vae(), text_encoder=clap, text_encoder_2=t5, projection_model=projection, language_model=gpt2,
        tokenizer=_roberta_tokenizer(CLAP_MAX_TOKENS), tokenizer_2=_t5_tokenizer(T5_MAX_TOKENS),
        feature_extractor=ClapFeatureExtractor(feature_size=64, sampling_rate=48000, hop_length=480),
        unet=_unet(), scheduler=DDIMScheduler(**SCHEDULER), vocoder=_vocoder(),
    )
    pipe.set_progress_bar_config(disable=True)
    # Built modules start in training mode: dropout would make the random model's encoders non-deterministic.
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    # Built in fp32 (CPU init kernels), then cast; fp32 needs no cast (and no diffusers warning).
    pipe = pipe.to(dev) if dtype == torch.float32 else pipe.to(dev, dtype)
    return LoadedModel(pipe=pipe, model_id=MODEL_ID, device=dev, dtype=dtype)


def parameter_counts(pipe) -> dict[str, int]:
    """Parameters per pipeline component, e.g. {"unet": 350_000_000, ...} (prepacked weights included)."""
    from .prepack import packed_numel

    counts = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            counts[name] = sum(p.numel() for p in component.parameters()) + packed_numel(component)
    return counts
