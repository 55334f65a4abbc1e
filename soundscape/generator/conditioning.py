"""Prompt conditioning: encode each prompt once, blend layers into one per chunk.

AudioLDM2's UNet attends to two sequences per prompt:
  G (8, 768)  GPT-2 "language of audio" tokens   -> encoder_hidden_states
  E (L, 1024) Flan-T5 tokens, with a mask m (L,)  -> encoder_hidden_states_1 / mask_1

Blend notation (layers i with weights w_i >= 0, ŵ_i = w_i / Σ_j w_j):
  G      = Σ_i ŵ_i G_i
  E[p]   = Σ_i ŵ_i m_i[p] E_i[p] / Σ_i ŵ_i m_i[p]      (per T5 position p; 0 where no layer has a token)
  m[p]   = 1 if any layer with ŵ_i > 0 has a token at p
Sequences are zero-padded to the longest L first. Normalising per position keeps
a long prompt's tail from being faded by layers that have no token there.

"slerp" keeps each blended token's norm at the weighted mean of the inputs'
norms (a linear blend of unrelated directions shrinks towards the origin, which
the UNet never saw in training); with two inputs that is spherical
interpolation's magnitude rule, and a single layer at weight 1 is unchanged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch

from ..model import text_encoders
from ..model.loading import LoadedModel
from .prompt_cache import PromptCache, text_fingerprint


@dataclass(frozen=True)
class PromptEmbedding:
    """One prompt encoded: T5 sequence (1, L, D1), its mask (1, L), GPT-2 tokens (1, 8, D)."""

    t5: torch.Tensor
    mask: torch.Tensor
    gpt: torch.Tensor


@dataclass(frozen=True)
class Conditioning:
    """What the UNet gets for one chunk: batch [negative, positive] for guidance."""

    t5: torch.Tensor  # (2, L, D1)
    mask: torch.Tensor  # (2, L)
    gpt: torch.Tensor  # (2, 8, D)


class PromptEncoder:
    """Encodes prompts with the pipeline's own encoders, cached by (model, prompt).

    Where an encoding comes from, first hit wins: this process's memory, the prompt cache on disk
    (generator/prompt_cache.py, when the model came from files), the text encoders, loaded for
    the purpose when they are out (model/text_encoders.py) and released after `encode_all`.
    Thread-safe: the generator thread and a background re-encoder may share it.
    """

    def __init__(self, model: LoadedModel, disk: bool = True, hold_s: float = 0.0):
        self.model = model
        # Seconds the text encoders stay loaded after their last use (serve: listeners arrive with new prompts
        # in bursts, and loading them takes seconds); 0 releases them as soon as a call is done.
        self.hold_s = hold_s
        self._timer: threading.Timer | None = None
        self._last_use = 0.0
        self._cache: dict[tuple[str, str], PromptEmbedding] = {}
        self._lock = threading.Lock()
        self._disk = _disk_cache(model) if disk else None
        self.encoded = 0  # prompts run through the text encoders (not found in a cache)
        self.encoding = False  # the status line: "encoding a new prompt"

    def has(self, prompt: str) -> bool:
        """In this process's memory already: `encode` returns it without a wait."""
        return (self.model.model_id, prompt) in self._cache

    def encode(self, prompt: str) -> PromptEmbedding:
        """One prompt; text encoders loaded for it are released again at once."""
        # A prompt in memory never waits for the lock: another thread may hold it for seconds, encoding a
        # new prompt (stream/prompt_ahead.py) while the generator starts its next chunk.
        hit = self._cache.get((self.model.model_id, prompt))
        if hit is not None:
            return hit
        with self._lock:
            loaded_here = False
            try:
                emb, loaded_here = self._encode(prompt)
            finally:
                self._done(loaded_here)
            return emb

    def encode_all(self, prompts) -> None:
        """Every prompt of a scene in one go: the text encoders are loaded at most once, then released."""
        with self._lock:
            loaded_here = False
            try:
                for prompt in dict.fromkeys(prompts):
                    loaded_here = self._encode(prompt)[1] or loaded_here
            finally:
                self._done(loaded_here)

    def _done(self, loaded_here: bool) -> None:
        """After a call (lock held): release the encoders it loaded now, or once `hold_s` passes unused."""
        if self.hold_s <= 0:
            if loaded_here:
                text_encoders.release(self.model)
            return
        if not text_encoders.loaded(self.model) or self.model.text_source is None:
            return
        self._last_use = time.monotonic()
        if self._timer is None:
            self._arm(self.hold_s)

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._release_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _release_if_idle(self) -> None:
        with self._lock:
            self._timer = None
            idle = time.monotonic() - self._last_use
            if idle < self.hold_s:
                self._arm(self.hold_s - idle)  # used meanwhile: wait for the rest
            elif text_encoders.loaded(self.model):
                text_encoders.release(self.model)

    def _encode(self, prompt: str) -> tuple[PromptEmbedding, bool]:
        key = (self.model.model_id, prompt)
        hit = self._cache.get(key)
        if hit is not None:
            return hit, False
        stored = self._disk.get(prompt) if self._disk else None
        if stored is not None:
            emb = PromptEmbedding(**{k: v.to(self.model.device) for k, v in stored.items()})
            self._cache[key] = emb
            return emb, False
        self.encoding = True
        try:
            loaded_here = text_encoders.load(self.model)
            pipe = self.model.pipe
            with torch.inference_mode():
                t5, mask, gpt = pipe.encode_prompt(
                    prompt, self.model.device, num_waveforms_per_prompt=1, do_classifier_free_guidance=False
                )
        finally:
            self.encoding = False
        emb = PromptEmbedding(t5=t5.detach(), mask=mask.detach(), gpt=gpt.detach())
        self._cache[key] = emb
        self.encoded += 1
        if self._disk:
            self._disk.put(prompt, {"t5": emb.t5, "mask": emb.mask, "gpt": emb.gpt})
        return emb, loaded_here


def _disk_cache(model: LoadedModel) -> PromptCache | None:
    """The prompt cache on disk for a model loaded from files; None for one built in memory."""
    fingerprint = text_fingerprint(model.source)
    if fingerprint is None:
        return None
    return PromptCache(fingerprint, {"dtype": str(model.precision.text), "device": model.device.type},
                       dims=_unet_text_dims(model), dtype=model.precision.text)


def _unet_text_dims(model: LoadedModel) -> tuple[int, int] | None:
    """(GPT-2 width, T5 width) the UNet's cross-attention takes: what a cached prompt must hold."""
    try:
        dims = model.pipe.unet.config.cross_attention_dim
        dims = dims[-1] if isinstance(dims[0], (list, tuple)) else dims
        return int(dims[1]), int(dims[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dim 1 (sequence) to `length`."""
    extra = length - x.shape[1]
    if extra == 0:
        return x
    shape = list(x.shape)
    shape[1] = extra
    return torch.cat([x, x.new_zeros(shape)], dim=1)


def _keep_norm(blended: torch.Tensor, parts: list[torch.Tensor], w: list[float]) -> torch.Tensor:
    target = sum(wi * p.norm(dim=-1, keepdim=True) for wi, p in zip(w, parts))
    return blended * target / blended.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def blend(embeddings: list[PromptEmbedding], weights: list[float], mode: str = "linear") -> PromptEmbedding:
    """Blend layer embeddings by weight (see the notation at the top of this file)."""
    if len(embeddings) != len(weights) or not embeddings:
        raise ValueError(f"blend: expected one weight per embedding, got {len(weights)} for {len(embeddings)}")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"blend: expected a positive total weight, got {total}")
    pairs = [(e, w / total) for e, w in zip(embeddings, weights) if w > 0]
    if len(pairs) == 1:
        return pairs[0][0]
    embs, w = [p[0] for p in pairs], [p[1] for p in pairs]
    length = max(e.t5.shape[1] for e in embs)
    t5s = [_pad(e.t5, length) for e in embs]
    masks = [_pad(e.mask, length).to(t5s[0].dtype) for e in embs]
    gpt = sum(wi * e.gpt for wi, e in zip(w, embs))
    num = sum(wi * m[..., None] * t for wi, m, t in zip(w, masks, t5s))
    den = sum(wi * m for wi, m in zip(w, masks))
    t5 = num / den.clamp_min(1e-8)[..., None]
    if mode == "slerp":
        gpt = _keep_norm(gpt, [e.gpt for e in embs], w)
        t5 = _keep_norm(t5, t5s, w) * (den > 0)[..., None]
    mask = (den > 0).to(embs[0].mask.dtype)
    return PromptEmbedding(t5=t5, mask=mask, gpt=gpt)


def with_negative(positive: PromptEmbedding, negative: PromptEmbedding) -> Conditioning:
    """Stack [negative, positive] for classifier-free guidance, padding T5 to a common length."""
    length = max(positive.t5.shape[1], negative.t5.shape[1])
    return Conditioning(
        t5=torch.cat([_pad(negative.t5, length), _pad(positive.t5, length)]),
        mask=torch.cat([_pad(negative.mask, length), _pad(positive.mask, length)]),
        gpt=torch.cat([negative.gpt, positive.gpt]),
    )


def stack_conditioning(conds: list[Conditioning]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B streams' conditionings as one UNet batch: (gpt, t5, mask), rows [negatives..., positives...].

    T5 sequences are zero-padded to the longest, their masks with 0, so a padded position is
    never attended to: each stream sees what it would alone. One stream stacks to itself.
    """
    if len(conds) == 1:
        c = conds[0]
        return c.gpt, c.t5, c.mask
    length = max(c.t5.shape[1] for c in conds)
    rows = [(c, k) for k in (0, 1) for c in conds]
    return (torch.cat([c.gpt[k:k + 1] for c, k in rows]),
            torch.cat([_pad(c.t5[k:k + 1], length) for c, k in rows]),
            torch.cat([_pad(c.mask[k:k + 1], length) for c, k in rows]))
