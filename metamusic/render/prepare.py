"""Step 4 of a render: the models, the prompt targets of every segment and the starting latent.

Targets (CLIP text embeddings of lyrics, Wav2CLIP embeddings of the song's audio, image and
noise prompts) are computed once per segment here, never per step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.models.clip import Perceptor as CLIPPerceptor
from metamusic.models.vqgan import VQGAN
from metamusic.models.wav2clip import Wav2CLIP
from metamusic.optim.prompts import Target, compose_prompt
from metamusic.optim.stepper import StepConfig
from metamusic.render.inputs import Inputs
from metamusic.song.audio import Audio
from metamusic.song.timeline import Segment

MIN_AUDIO_WINDOW = 0.25  # seconds: shorter audio windows are widened around their centre


@dataclass
class Models:
    """The loaded networks of a render (ready: eval mode, no gradients)."""

    vqgan: VQGAN
    perceptor: CLIPPerceptor
    wav2clip: Wav2CLIP | None


def load_models(config: Config, need_audio: bool) -> Models:
    from metamusic.models.clip import load_clip
    from metamusic.models.vqgan_loader import load_vqgan
    from metamusic.models.wav2clip_loader import load_wav2clip

    device = torch.device(config.device)
    vqgan = load_vqgan(config.models.vqgan_config, config.models.vqgan_checkpoint, device=device)
    perceptor = load_clip(config.models.clip_model, device=device, checkpoints_dir=config.models.checkpoints_dir,
                          trust_torchscript=config.models.trust_torchscript)
    wav2clip = load_wav2clip(config.models.wav2clip_checkpoint, device=device) if need_audio else None
    if wav2clip is not None and perceptor.embed_dim != wav2clip.embed_dim:
        raise InputError(
            f"{config.models.clip_model}: CLIP embeds into {perceptor.embed_dim}-d but Wav2CLIP into "
            f"{wav2clip.embed_dim}-d (CLIP ViT-B/32 space): use -m ViT-B/32 or ViT-B/16 with audio prompts"
        )
    return Models(vqgan, perceptor, wav2clip)


def encode_targets(config: Config, inputs: Inputs, segments: Sequence[Segment], models: Models) -> list[list[Target]]:
    """The prompt targets of every segment, computed once before any step.

    The weights are the storyboard's, for every kind of segment; a prompt of weight 0 is left
    out, and a segment left with no prompt at all holds the previous image (no steps).
    """
    from metamusic.optim.prompts import noise_targets, split_prompts

    device = torch.device(config.device)
    perceptor = models.perceptor
    with torch.no_grad():
        # Global prompts (-p for songs, -ip, noise prompts) apply to every segment.
        shared: list[Target] = []
        if inputs.audio is not None and config.prompts.prompts:
            shared += _text_targets(perceptor, split_prompts(config.prompts.prompts))
        for i, path in enumerate(config.prompts.image_prompts):
            shared.append(_image_target(config, perceptor, path, inputs.size, i))
        if config.prompts.noise_prompt_seeds:
            shared += noise_targets(config.prompts.noise_prompt_seeds, config.prompts.noise_prompt_weights,
                                    perceptor.embed_dim, device=device)

        text_cache: dict[str, torch.Tensor] = {}
        audio16 = _audio_16k(config, inputs)
        per_segment = []
        for seg in segments:
            targets = list(shared)
            if seg.text and seg.kind in ("text", "fused"):
                if inputs.audio is None:
                    targets += _text_targets(perceptor, split_prompts(seg.text))
                else:
                    text = compose_prompt(seg.text, config.prompts.prompt_prefix, config.prompts.theme)
                    if text not in text_cache:
                        text_cache[text] = _unit(perceptor.encode_text([text]).float())
                    if seg.text_weight:
                        targets.append(Target(text_cache[text], seg.text_weight))
            if seg.kind in ("audio", "fused") and models.wav2clip is not None and seg.audio_weight:
                emb = _audio_embedding(models.wav2clip, audio16, seg.audio_start, seg.audio_end, device)
                targets.append(Target(emb, seg.audio_weight))
            per_segment.append(targets)
    return per_segment


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _text_targets(perceptor: CLIPPerceptor, prompts: Sequence[str]) -> list[Target]:
    from metamusic.optim.prompts import parse_prompt

    out = []
    for p in prompts:
        text, weight, stop = parse_prompt(p)
        out.append(Target(_unit(perceptor.encode_text([text]).float()), weight, stop))
    return out


def _image_target(config: Config, perceptor: CLIPPerceptor, path: str, size: tuple[int, int], index: int) -> Target:
    """-ip as VQGAN-CLIP: resized to the output size, embedded through the step's cut-outs (one row each)."""
    from PIL import Image

    from metamusic.optim.prompts import image_prompt_size, parse_prompt
    from metamusic.optim.stepper import embed_image_prompt, step_seed

    file, weight, stop = parse_prompt(path)
    try:
        img = Image.open(file).convert("RGB")
    except OSError:
        raise InputError(f"{file}: not an image PIL can read") from None
    img = img.resize(image_prompt_size(img.size, tuple(size)), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = x.to(config.device)  # (1, 3, H, W)
    gen = torch.Generator(device=x.device).manual_seed(step_seed(int(config.seed), -1, index))
    return embed_image_prompt(perceptor, x, gen, step_config(config), weight=weight, stop=stop)


def _audio_16k(config: Config, inputs: Inputs) -> Audio | None:
    """The song at 16 kHz for Wav2CLIP (reuses the analysis signal when -sf is 16000)."""
    if inputs.audio is None:
        return None
    if inputs.audio.sample_rate == 16000:
        return inputs.audio
    from metamusic.song.audio import load_audio

    return load_audio(config.music.audio, sample_rate=16000)


def _audio_embedding(wav2clip: Wav2CLIP, audio: Audio, start: float, end: float, device: torch.device) -> torch.Tensor:
    """Unit Wav2CLIP embedding of the song between ``start`` and ``end`` seconds (1, 512).

    Windows shorter than MIN_AUDIO_WINDOW are widened around their centre so the spectrogram
    has enough frames (a beat segment can be a few hundredths of a second).
    """
    sr = audio.sample_rate
    if end - start < MIN_AUDIO_WINDOW:
        mid = (start + end) / 2
        start, end = mid - MIN_AUDIO_WINDOW / 2, mid + MIN_AUDIO_WINDOW / 2
        shift = max(0.0, -start) - max(0.0, end - audio.duration)
        start, end = start + shift, end + shift
    a, b = max(0, int(round(start * sr))), min(len(audio.samples), int(round(end * sr)))
    clip = torch.from_numpy(np.ascontiguousarray(audio.samples[a:b], dtype=np.float32)).to(device)
    return _unit(wav2clip(clip.unsqueeze(0)).float())


def initial_latent(config: Config, inputs: Inputs, models: Models, generator: torch.Generator) -> torch.Tensor:
    """Random codebook tokens, or the encoding of --init_image / --init_noise (as VQGAN-CLIP's generate.py)."""
    from PIL import Image

    from metamusic.optim.init import noise_image, random_latent

    device = torch.device(config.device)
    w, h = inputs.size
    grid = (h // inputs.factor, w // inputs.factor)
    image = None
    if config.prompts.init_image:
        try:
            pil = Image.open(config.prompts.init_image).convert("RGB").resize((w, h), Image.LANCZOS)
        except OSError:
            raise InputError(f"{config.prompts.init_image}: not an image PIL can read") from None
        image = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    elif config.prompts.init_noise:
        image = noise_image(config.prompts.init_noise, (w, h), generator)
        if not isinstance(image, torch.Tensor):
            image = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    if image is not None:
        with torch.no_grad():
            return models.vqgan.encode(image.to(device) * 2 - 1).float()
    return random_latent(models.vqgan.codebook.float().cpu(), grid, generator).to(device)


def step_config(config: Config) -> StepConfig:
    """The step's settings: config.step, with at most 8 cut-outs in a --preview."""
    if config.output.preview:
        return dataclasses.replace(config.step, cutn=min(config.step.cutn, 8))
    return config.step
