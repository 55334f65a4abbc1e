"""The quality watchdog: every chunk is checked before it can be played or written.

Checks on a chunk's decoded 16 kHz audio x (before joining and loudness), given its presence p
(0 when every layer is at weight 0, else 1):
  finite     every sample is a number                          (NaN or inf: fail)
  silence    20 log10 rms(x) >= silence_db while p > 0          (a scene asking for sound got none)
  clipping   the share of |x| >= CLIP_LEVEL <= clip_fraction    (the vocoder's tanh saturates at 1)
  dc         |mean(x)| <= dc_offset
  clap       cos(CLAP_audio(x), CLAP_text(blend)) >= min_clap   (optional: the pipeline's own CLAP,
             its audio branch and feature extractor, as diffusers' score_waveforms uses it)
A failing chunk is generated again with the next seed of its chunk (see scene_stream.py); the scores go
to the timeline. Everything here depends only on the audio, so a render stays deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

CLIP_LEVEL = 0.999


@dataclass
class Verdict:
    ok: bool
    failed: list[str] = field(default_factory=list)
    scores: dict = field(default_factory=dict)


def check(audio: np.ndarray, presence: float, cfg, clap_score=None) -> Verdict:
    """Score one chunk's audio against the scene's `quality_check` settings."""
    x = np.asarray(audio, dtype=np.float64)
    scores: dict = {}
    failed: list[str] = []
    finite = bool(np.isfinite(x).all())
    scores["finite"] = finite
    if not finite:
        return Verdict(False, ["finite"], scores)
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    scores["rms_db"] = round(20 * np.log10(max(rms, 1e-12)), 2)
    scores["clip_fraction"] = round(float(np.mean(np.abs(x) >= CLIP_LEVEL)), 6)
    scores["dc"] = round(float(np.mean(x)), 6)
    if presence > 0.5 and scores["rms_db"] < cfg.silence_db:
        failed.append("silence")
    if scores["clip_fraction"] > cfg.clip_fraction:
        failed.append("clipping")
    if abs(scores["dc"]) > cfg.dc_offset:
        failed.append("dc")
    if cfg.clap and clap_score is not None and not failed:
        scores["clap"] = round(float(clap_score(audio)), 4)
        if scores["clap"] < cfg.min_clap:
            failed.append("clap")
    return Verdict(not failed, failed, scores)


class ClapScorer:
    """CLAP similarity between a chunk and its blended prompts, with the pipeline's own CLAP model."""

    def __init__(self, model):
        from ..model import text_encoders

        self.model = model
        self._text: dict[str, torch.Tensor] = {}
        text_encoders.need_clap(model)  # CLAP, audio tower included, stays loaded while we score

    @torch.inference_mode()
    def _text_embedding(self, prompt: str) -> torch.Tensor:
        if prompt not in self._text:
            pipe = self.model.pipe
            ids = pipe.tokenizer(prompt, return_tensors="pt", padding=True).to(self.model.device)
            emb = pipe.text_encoder.get_text_features(**ids)
            emb = getattr(emb, "pooler_output", emb)  # a tensor, or an output object in newer transformers
            self._text[prompt] = torch.nn.functional.normalize(emb.float(), dim=-1)[0].cpu()
        return self._text[prompt]

    @torch.inference_mode()
    def score(self, audio: np.ndarray, weights: dict[str, float]) -> float:
        """cos(audio embedding, weighted mean of the prompts' text embeddings)."""
        from scipy.signal import resample_poly

        pipe = self.model.pipe
        fe = pipe.feature_extractor
        total = sum(w for w in weights.values() if w > 0)
        if total <= 0:
            return 1.0  # silence asked for: nothing to compare
        text = sum(w / total * self._text_embedding(p) for p, w in weights.items() if w > 0)
        text = torch.nn.functional.normalize(text, dim=-1)
        rate = pipe.vocoder.config.sampling_rate
        wave = resample_poly(np.asarray(audio, dtype=np.float64), fe.sampling_rate, rate).astype(np.float32)
        features = fe([wave], return_tensors="pt", sampling_rate=fe.sampling_rate).input_features
        dtype = next(pipe.text_encoder.parameters()).dtype
        emb = pipe.text_encoder.get_audio_features(input_features=features.to(self.model.device, dtype))
        emb = getattr(emb, "pooler_output", emb)
        emb = torch.nn.functional.normalize(emb.float(), dim=-1)[0].cpu()
        return float(emb @ text)
