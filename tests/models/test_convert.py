"""python -m metamusic.convert: a one-time CLIP conversion to weights-only safetensors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch


def convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metamusic.convert", *args], capture_output=True, text=True)


def test_convert_refuses_untrusted_archive_then_converts_with_trust(tiny_models, tmp_path):
    from metamusic.models.clip import load_clip

    dst = tmp_path / "clip.safetensors"
    proc = convert(tiny_models["clip_torchscript"], str(dst))
    assert proc.returncode == 2 and "TorchScript" in proc.stderr and "--trust_torchscript" in proc.stderr
    assert not dst.exists()
    proc = convert(tiny_models["clip_torchscript"], str(dst), "--trust_torchscript")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == dst
    a = load_clip(dst)  # weights-only, no trust needed
    b = load_clip(tiny_models["clip_torchscript"], trust_torchscript=True)
    with torch.no_grad():
        assert torch.allclose(a.encode_text(["paper boat"]), b.encode_text(["paper boat"]), atol=1e-6)


def test_convert_missing_name_says_how_to_download(tmp_path):
    proc = convert("ViT-B/32", "--checkpoints_dir", str(tmp_path))
    assert proc.returncode == 2 and "download_models.sh clip_vit_b32" in proc.stderr
