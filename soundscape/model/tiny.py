"""A tiny, randomly initialised AudioLDM2 pipeline with the real time geometry.

Why: the real weights (cvssp/audioldm2, ~1.1B parameters) cannot be downloaded
everywhere, but every piece of soundscape around the model (conditioning,
continuation, crossfades, playback) must run for real in tests and demos. This
pipeline has the same time geometry as the real one (16 kHz, 64 mel bins,
hop 160, VAE factor 4, 8 latent channels) and the same component classes, so
it goes through exactly the code users run. It makes noise, not birdsong.

    python -m soundscape.model.tiny DIR     # writes a diffusers-format folder
"""

from __future__ import annotations

from pathlib import Path

import torch

# Words the tiny tokenizers know as whole tokens; anything else falls back to
# characters (T5) or bytes (RoBERTa), so any prompt tokenizes.
_WORDS = (
    "birds singing forest dawn rain roof cafe ocean waves shore night crickets "
    "thunder storm wind stream water chatter cups music distant gentle heavy "
    "soft loud low noise hum fire crackling leaves a of the on in and with"
).split()


def _roberta_tokenizer(max_length: int = 77):
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _t5_tokenizer(max_length: int = 128):
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -5.0) for w in _WORDS]
    pieces += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.'-"]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in range(7, -1, -1)]
    return T5Tokenizer(vocab=pieces, extra_ids=8, model_max_length=max_length)


@torch.no_grad()
def _make_audible(vocoder, vae, target_rms: float = 0.1) -> None:
    """Rescale the random vocoder so the tiny model's noise is audible (~-20 dBFS).

    Why: HiFi-GAN's default init gives output around 1e-9, which would make
    every level, seam and playback test meaningless.
    """
    for m in vocoder.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            torch.nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
            m.weight.mul_(0.5)
            if m.bias is not None:
                m.bias.zero_()
    latents = torch.randn(1, 8, 64, 16, generator=torch.Generator().manual_seed(0))
    mel = vae.decode(latents / vae.config.scaling_factor).sample.squeeze(1)
    vocoder.conv_post.weight.mul_(target_rms / float(vocoder(mel).std()))


def _tiny_text_models(tokenizer, tokenizer_2):
    """CLAP, Flan-T5, GPT-2 and the projection, tiny, in the order the seeded generator builds them."""
    from diffusers import AudioLDM2ProjectionModel
    from transformers import (ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig, GPT2Config, GPT2LMHeadModel,
                              T5Config, T5EncoderModel)

    text_config = ClapTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2,
        max_position_embeddings=tokenizer.model_max_length + 4, projection_dim=16,
    )
    audio_config = ClapAudioConfig(
        # spec_size 256 over 64 mel bins: HTSAT folds 4 x 256 = 1024 frames, the extractor's 10 s (as the real model)
        spec_size=256, window_size=4, num_mel_bins=64, intermediate_size=32, depths=[1, 1],
        num_attention_heads=[2, 2], num_hidden_layers=2, hidden_size=32, projection_dim=16,
        patch_size=2, patch_stride=2, patch_embed_input_channels=4, patch_embeds_hidden_size=16,
    )
    clap = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(),
                                projection_dim=16))
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_ff=32, d_kv=8,
                                 num_heads=2, num_layers=1))
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=64,
                                      n_ctx=256, n_positions=256, bos_token_id=0, eos_token_id=0))
    gpt2.config.max_new_tokens = 8
    projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    return clap, t5, gpt2, projection


def build_tiny_pipeline(seed: int = 0):
    """Build the tiny pipeline in memory. Deterministic for a given seed."""
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DPMSolverMultistepScheduler,
    )
    from transformers import ClapFeatureExtractor, SpeechT5HifiGan, SpeechT5HifiGanConfig

    tokenizer = _roberta_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    torch.manual_seed(seed)
    # Real geometry: 8 latent channels, VAE factor 4 (three blocks), 64 mel bins in.
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=64,
        in_channels=8,
        out_channels=8,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 32], [None, 16, 32]),
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=8,
        block_out_channels=(8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.4111,
    )
    clap, t5, gpt2, projection = _tiny_text_models(tokenizer, tokenizer_2)
    # Real vocoder geometry: 64 mel bins in, 5*4*2*2*2 = 160 samples per mel frame.
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=64,
        upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[10, 8, 4, 4, 4],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False,
    ))
    _make_audible(vocoder, vae)
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000,
    )
    feature_extractor = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, hop_length=480)
    pipe = AudioLDM2Pipeline(
        vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=projection,
        language_model=gpt2, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        feature_extractor=feature_extractor, unet=unet, scheduler=scheduler, vocoder=vocoder,
    )
    # Built modules start in training mode (dropout on); a loaded pipeline is in eval mode.
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def save_tiny_pipeline(path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    build_tiny_pipeline(seed).save_pretrained(path)
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m soundscape.model.tiny",
                                     description="Write a tiny random AudioLDM2 pipeline with the real time geometry "
                                                 "(it makes noise, not birdsong): for trying the plumbing and for "
                                                 "tests. Use it with --model DIR.")
    parser.add_argument("folder", metavar="DIR", help="the folder to write it to (made if missing)")
    folder = parser.parse_args(argv).folder  # this module's own command line: the one value, read here
    print(f"tiny AudioLDM2 pipeline written to {save_tiny_pipeline(folder)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
