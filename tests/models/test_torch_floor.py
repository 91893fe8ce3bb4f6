"""pyproject's torch floor is the oldest torch whose torch.serialization has what checkpoint_io uses."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
# The torch release that added each torch.serialization function (pytorch/pytorch PRs #127939, #139106).
FIRST_RELEASE = {
    "load": (1, 0),
    "add_safe_globals": (2, 4),
    "safe_globals": (2, 5),
    "get_unsafe_globals_in_checkpoint": (2, 6),
}


def test_torch_floor_covers_every_serialization_function_used():
    source = (ROOT / "metamusic" / "models" / "checkpoint_io.py").read_text(encoding="utf-8")
    used = set(re.findall(r"torch\.serialization\.(\w+)", source))
    assert used, "checkpoint_io.py no longer uses torch.serialization: update this test"
    assert used <= set(FIRST_RELEASE), f"add the first torch release of {used - set(FIRST_RELEASE)}"
    for name in used:
        assert hasattr(torch.serialization, name), name
    needed = max(FIRST_RELEASE[name] for name in used)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    floor = re.search(r'"torch>=(\d+)\.(\d+)', pyproject)
    assert floor, "pyproject.toml must give torch a floor"
    assert (int(floor[1]), int(floor[2])) == needed
