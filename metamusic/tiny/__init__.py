"""Tiny random checkpoints in the exact official file formats (for tests and smoke runs).

``python -m metamusic.tiny DIR [--seed N]`` writes them and prints, as its last line, a JSON
object with the paths (keys ``vqgan_config``, ``vqgan_checkpoint``, ``clip``, ``wav2clip``, and ``whisper`` when
the optional ``openai-whisper`` package is installed, ...).
The files go through the same loaders as the real weights.
"""

from __future__ import annotations

from pathlib import Path

from metamusic.errors import InputError


def write_all(directory: str | Path, seed: int = 0) -> dict[str, str]:
    """Write every tiny checkpoint into ``directory``; return their paths by role."""
    from metamusic.tiny.clip import write_tiny_clip
    from metamusic.tiny.vqgan import write_tiny_vqgan
    from metamusic.tiny.wav2clip import write_tiny_wav2clip

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths.update(write_tiny_vqgan(directory, seed=seed))
    clip = write_tiny_clip(directory, seed=seed)
    # "clip" is the weights-only state dict so every command accepts it as it is; the OpenAI-
    # format TorchScript archive (whose hash is not a published one) needs --trust_torchscript.
    paths["clip"] = clip["clip_state_dict"]
    paths["clip_torchscript"] = clip["clip"]
    paths.update(write_tiny_wav2clip(directory, seed=seed))
    try:
        from metamusic.models.whisper_loader import import_whisper

        import_whisper()
    except InputError:  # the optional extra metamusic[lyrics] is not installed: no "whisper" key
        pass
    else:
        from metamusic.tiny.whisper import write_tiny_whisper

        paths.update(write_tiny_whisper(directory, seed=seed))
    return {k: str(v) for k, v in paths.items()}
