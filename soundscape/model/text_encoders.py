"""Text encoders on demand: loaded when a prompt must be encoded, released afterwards.

CLAP's text branch, Flan-T5, the projection and GPT-2 are 57 % of AudioLDM 2's weights (1.18 GB in
bf16) but run once per new prompt, and give the same tensors every time; the prompt cache
(generator/prompt_cache.py) keeps those tensors on disk. So a playing scene does not hold them:
`load_model` leaves them out, `load` brings them in for a batch of prompts, `release` drops them.

A model built in memory (the random-weights benchmark, a test's pipeline) has nowhere to load them
from again: `text_source` is None, and its encoders stay resident. CLAP stays too while the watchdog
scores chunks with it (`keep_clap`). Without the watchdog's CLAP score, CLAP's audio tower is dropped
at load: prompts only need its text branch.
"""

from __future__ import annotations

import gc
import sys

from ..memory import give_back_heap
from .loading import TEXT_STAGES, LoadedModel


def loaded(model: LoadedModel) -> bool:
    return all(getattr(model.pipe, stage, None) is not None for stage in TEXT_STAGES)


def load(model: LoadedModel, quiet: bool = True) -> bool:
    """Bring the text encoders in, if they are out. Returns whether this call loaded them."""
    if loaded(model) or model.text_source is None:
        return False
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2ProjectionModel
    from transformers import ClapModel, GPT2LMHeadModel, T5EncoderModel

    if not quiet:
        print("loading the text encoders to encode a new prompt...", file=sys.stderr)
    source, dtype, device = model.text_source, model.precision.text, model.device
    classes = {"text_encoder": ClapModel, "text_encoder_2": T5EncoderModel,
               "projection_model": AudioLDM2ProjectionModel, "language_model": GPT2LMHeadModel}
    pipe = model.pipe
    for stage in TEXT_STAGES:
        if getattr(pipe, stage, None) is None:
            module = classes[stage].from_pretrained(source, subfolder=stage, torch_dtype=dtype)
            if stage == "text_encoder" and not model.keep_clap:
                # Prompts use CLAP's text branch only; its audio tower is for the watchdog's score.
                module.audio_model = module.audio_projection = None
            setattr(pipe, stage, module.to(device).eval())
    model.text_loads += 1
    return True


def release(model: LoadedModel) -> None:
    """Drop the text encoders (CLAP stays while the watchdog needs it); a no-op when they cannot be reloaded."""
    if model.text_source is None:
        return
    pipe = model.pipe
    for stage in TEXT_STAGES:
        if stage == "text_encoder" and model.keep_clap:
            continue
        setattr(pipe, stage, None)
    gc.collect()
    give_back_heap()  # the freed weights go back to the system, not just to the heap


def need_clap(model: LoadedModel) -> None:
    """The watchdog's CLAP score is on: keep CLAP, with its audio tower, resident from now on."""
    model.keep_clap = True
    clap = getattr(model.pipe, "text_encoder", None)
    if clap is not None and getattr(clap, "audio_model", None) is None:
        model.pipe.text_encoder = None  # loaded without its audio tower: load it whole
    if model.pipe.text_encoder is None and model.text_source is not None:
        from transformers import ClapModel

        clap = ClapModel.from_pretrained(model.text_source, subfolder="text_encoder", torch_dtype=model.precision.text)
        model.pipe.text_encoder = clap.to(model.device).eval()
