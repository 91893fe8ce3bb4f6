"""The VQGAN-CLIP optimisation step: prompts, cut-outs, augments, optimisers and a stepper.

Pure functions of tensors plus :class:`Stepper`; no model code is imported here. The decoder
and perceptor are any objects with the small interface described in ``stepper``.
"""

from metamusic.optim.augments import (
    AUGMENT_CODES,
    DEFAULT_AUGMENTS,
    apply_augments,
    build_augments,
    method_augments,
)
from metamusic.optim.cutouts import (
    CUT_METHODS,
    latest_reference,
    make_cutouts,
    resample,
)
from metamusic.optim.init import clamp_latent, noise_image, random_latent, z_bounds
from metamusic.optim.optimisers import OPTIMISERS, build_optimiser
from metamusic.optim.prompts import (
    Target,
    blend_targets,
    image_prompt_size,
    mean_targets,
    noise_targets,
    parse_prompt,
    split_prompts,
    split_story,
    target_loss,
)
from metamusic.optim.stepper import (
    INIT_WEIGHT_TARGETS,
    PRECISIONS,
    StepConfig,
    Stepper,
    StepResult,
    embed_image_prompt,
    optimise_segment,
    resolve_precision,
    step_seed,
)

__all__ = [
    "AUGMENT_CODES",
    "CUT_METHODS",
    "DEFAULT_AUGMENTS",
    "INIT_WEIGHT_TARGETS",
    "OPTIMISERS",
    "PRECISIONS",
    "StepConfig",
    "StepResult",
    "Stepper",
    "Target",
    "apply_augments",
    "blend_targets",
    "build_augments",
    "build_optimiser",
    "clamp_latent",
    "embed_image_prompt",
    "image_prompt_size",
    "latest_reference",
    "make_cutouts",
    "mean_targets",
    "method_augments",
    "noise_image",
    "noise_targets",
    "optimise_segment",
    "parse_prompt",
    "random_latent",
    "resample",
    "resolve_precision",
    "split_prompts",
    "split_story",
    "step_seed",
    "target_loss",
    "z_bounds",
]
