"""The model downloader against a local HTTP server (127.0.0.1 only; nothing leaves the machine)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metamusic import download as dl
from metamusic.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = bytes((i * 7919 + i // 251) % 256 for i in range(200_000))  # several 64 KiB chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves files from ``server.root`` with single-range support and fault injection."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        target = srv.root / self.path.lstrip("/")
        if not target.is_file():
            self.send_error(404)
            return
        data = target.read_bytes()
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not srv.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", srv.content_types.get(target.name, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if srv.truncate_next > 0:  # announce the full length, send part of it, hang up
            srv.truncate_next -= 1
            body = body[: len(body) // 3]
            self.close_connection = True
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.root, srv.requests, srv.content_types = root, [], {}
    srv.ignore_range, srv.truncate_next = False, 0
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)


def _file(srv, name="model.bin", sha=PAYLOAD_SHA, size=None) -> dl.ModelFile:
    return dl.ModelFile(name, f"{srv.url}/{name}", name, sha256=sha, size=size)


def _fetch(file, dest, **kw):
    kw.setdefault("backoff", 0.0)
    return dl.download(file, dest, progress=False, **kw)


def test_good_file_has_right_content_and_no_part_left(server, tmp_path):
    (server.root / "model.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "ckpt"
    [path] = _fetch(_file(server), dest)
    assert path == dest / "model.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (dest / "model.bin.part").exists()
    assert server.requests == [("/model.bin", None)]


def test_hash_mismatch_is_rejected_and_leaves_nothing(server, tmp_path):
    (server.root / "model.bin").write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(dl.DownloadError, match="SHA-256 .* does not match the published " + PAYLOAD_SHA):
        _fetch(_file(server), tmp_path)
    assert not (tmp_path / "model.bin").exists()
    assert not (tmp_path / "model.bin.part").exists()


def test_size_mismatch_is_rejected(server, tmp_path):
    (server.root / "model.bin").write_bytes(PAYLOAD)
    with pytest.raises(dl.DownloadError, match=f"got {len(PAYLOAD)} bytes, expected 5"):
        _fetch(_file(server, sha=None, size=5), tmp_path)
    assert not (tmp_path / "model.bin").exists()


@pytest.mark.parametrize("sniffed", [False, True], ids=["content-type", "body"])
def test_html_page_is_rejected_with_a_clear_message(server, tmp_path, sniffed):
    page = b"<!DOCTYPE html>\n<html><body>This share link has expired.</body></html>\n"
    (server.root / "model.bin").write_bytes(page if sniffed else b"not really a page")
    if not sniffed:
        server.content_types["model.bin"] = "text/html; charset=utf-8"
    file = _file(server, sha=None)
    with pytest.raises(dl.DownloadError) as info:
        _fetch(file, tmp_path)
    message = str(info.value)
    assert "returned an HTML page, not a model file: the mirror may be dead" in message
    assert f"download by hand from {file.url}" in message
    assert "\n" not in message
    assert not (tmp_path / "model.bin").exists()
    assert not (tmp_path / "model.bin.part").exists()
    assert len(server.requests) == 1  # an HTML answer is not retried


def test_truncated_transfer_keeps_part_then_resumes_with_range(server, tmp_path):
    (server.root / "model.bin").write_bytes(PAYLOAD)
    server.truncate_next = 2
    part = tmp_path / "model.bin.part"
    with pytest.raises(dl.DownloadError, match=r"truncated transfer.*gave up after 2 attempts.*kept, run again"):
        _fetch(_file(server), tmp_path, retries=1)
    assert not (tmp_path / "model.bin").exists()
    kept = part.read_bytes()
    assert 0 < len(kept) < len(PAYLOAD) and PAYLOAD.startswith(kept)
    # the retry inside the first call already resumed from what the first attempt left
    assert server.requests[1][1] == f"bytes={len(PAYLOAD) // 3}-"

    server.requests.clear()
    [path] = _fetch(_file(server), tmp_path)
    assert server.requests == [("/model.bin", f"bytes={len(kept)}-")]
    assert path.read_bytes() == PAYLOAD
    assert not part.exists()


def test_one_dropped_connection_is_retried_within_a_call(server, tmp_path):
    (server.root / "model.bin").write_bytes(PAYLOAD)
    server.truncate_next = 1
    [path] = _fetch(_file(server), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, f"bytes={len(PAYLOAD) // 3}-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    (server.root / "model.bin").write_bytes(PAYLOAD)
    (tmp_path / "model.bin.part").write_bytes(b"garbage that must not survive")
    server.ignore_range = True
    [path] = _fetch(_file(server), tmp_path)
    assert server.requests[0][1] == "bytes=29-"  # asked to resume, got a full 200
    assert path.read_bytes() == PAYLOAD


def test_complete_part_is_finished_after_416(server, tmp_path):
    (server.root / "model.bin").write_bytes(PAYLOAD)
    (tmp_path / "model.bin.part").write_bytes(PAYLOAD)
    [path] = _fetch(_file(server), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/model.bin", f"bytes={len(PAYLOAD)}-")]


def test_present_file_is_skipped_and_verified_only_on_request(server, tmp_path):
    (tmp_path / "model.bin").write_bytes(b"a different file")
    [path] = _fetch(_file(server), tmp_path)
    assert path.read_bytes() == b"a different file"
    assert server.requests == []
    with pytest.raises(dl.DownloadError, match="does not match the published"):
        _fetch(_file(server), tmp_path, verify=True)
    (tmp_path / "model.bin").write_bytes(PAYLOAD)
    assert _fetch(_file(server), tmp_path, verify=True) == [tmp_path / "model.bin"]
    assert server.requests == []


def test_http_404_is_an_error_without_retries(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        _fetch(_file(server, name="missing.bin"), tmp_path)
    assert len(server.requests) == 1


def test_refused_connection_is_retried_then_reported(tmp_path):
    with socket.socket() as s:  # a free 127.0.0.1 port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    file = dl.ModelFile("x", f"http://127.0.0.1:{port}/x.bin", "x.bin")
    with pytest.raises(dl.DownloadError, match=r"cannot connect.*gave up after 3 attempts"):
        _fetch(file, tmp_path, retries=2, timeout=5)


def test_mirror_replaces_the_url_and_must_be_http():
    file = dl.ModelFile("x", "https://example.invalid/a?p=%2Fx&dl=1", "name with space.ckpt")
    assert dl.source_url(file, None) == file.url
    assert dl.source_url(file, "http://127.0.0.1:9/m/") == "http://127.0.0.1:9/m/name%20with%20space.ckpt"
    with pytest.raises(InputError, match="not an http"):
        dl.source_url(file, "file:///etc")


def test_registry_matches_the_published_sources():
    assert dl.DEFAULT_MODELS == ("vqgan_imagenet_f16_16384", "clip_vit_b32", "wav2clip")
    vq = dl.REGISTRY["vqgan_imagenet_f16_16384"]
    assert [f.filename for f in vq.files] == ["vqgan_imagenet_f16_16384.yaml", "vqgan_imagenet_f16_16384.ckpt"]
    assert vq.files[1].url == (
        "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p=%2Fckpts%2Flast.ckpt&dl=1"
    )
    clips = (("clip_vit_b32", "ViT-B-32.pt"), ("clip_vit_b16", "ViT-B-16.pt"), ("clip_rn50", "RN50.pt"))
    for name, filename in clips:
        [f] = dl.REGISTRY[name].files
        assert f.filename == filename and f.url.endswith(f"/{f.sha256}/{filename}")
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256)
    assert dl.REGISTRY["wav2clip"].files[0].filename == "Wav2CLIP.pt"
    assert dl.REGISTRY["wav2clip"].files[0].sha256 is None


def test_cli_unknown_model_exits_2_and_lists_known(capsys):
    assert dl.main(["no_such_model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'no_such_model'; known models:")
    assert "clip_vit_b32" in err and err.count("\n") == 1


@pytest.mark.parametrize("via_env", [False, True], ids=["--mirror", "env"])
def test_cli_downloads_a_named_entry_from_a_mirror(server, tmp_path, monkeypatch, capsys, via_env):
    (server.root / "fake.yaml").write_bytes(b"model: {}\n")
    (server.root / "fake.ckpt").write_bytes(PAYLOAD)
    entry = dl.ModelEntry(
        "fake",
        (
            dl.ModelFile("fake config", "https://unreachable.invalid/c", "fake.yaml"),
            dl.ModelFile("fake ckpt", "https://unreachable.invalid/k", "fake.ckpt", sha256=PAYLOAD_SHA),
        ),
        "a fake model served by the test",
    )
    monkeypatch.setitem(dl.REGISTRY, "fake", entry)
    dest = tmp_path / "checkpoints"
    argv = ["fake", "--dest", str(dest), "--no-progress"]
    if via_env:
        monkeypatch.setenv(dl.MIRROR_ENV, server.url + "/")
    else:
        argv += ["--mirror", server.url]
    assert dl.main(argv) == 0
    assert (dest / "fake.yaml").read_bytes() == b"model: {}\n"
    assert (dest / "fake.ckpt").read_bytes() == PAYLOAD
    assert sorted(p for p, _ in server.requests) == ["/fake.ckpt", "/fake.yaml"]
    assert "downloaded: " in capsys.readouterr().out
    # a second run finds both files and fetches nothing
    assert dl.main(argv) == 0
    assert len(server.requests) == 2
    assert capsys.readouterr().out.count("present: ") == 2


def test_cli_network_error_exits_1(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(dl.REGISTRY, "fake", dl.ModelEntry("fake", (dl.ModelFile("f", "x", "gone.bin"),), "-"))
    assert dl.main(["fake", "--dest", str(tmp_path), "--mirror", server.url, "--no-progress"]) == 1
    assert capsys.readouterr().err.startswith("error: http://127.0.0.1:")


def test_download_models_sh_lists_models(tmp_path):
    script = REPO / "download_models.sh"
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    env = {k: v for k, v in os.environ.items() if k != dl.MIRROR_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(
        ["bash", str(script), "--list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "vqgan_imagenet_f16_16384 (default)" in out.stdout
    assert "ViT-B-32.pt" in out.stdout and "Wav2CLIP.pt" in out.stdout
    bad = subprocess.run(["bash", str(script), "nope"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown model 'nope'")


def test_whisper_entries_carry_the_hash_of_the_official_urls():
    whisper = pytest.importorskip("whisper", reason="openai-whisper (the metamusic[lyrics] extra) is not installed")
    for size in ("small", "base", "medium"):
        [f] = dl.REGISTRY[f"whisper_{size}"].files
        assert f.filename == f"whisper_{size}.pt"
        assert f.url == whisper._MODELS[size]  # the package's own URL, whose path is the SHA-256
        assert f.url.split("/")[-2] == f.sha256 and re.fullmatch(r"[0-9a-f]{64}", f.sha256)


def test_cli_downloads_a_whisper_checkpoint_checked_against_its_sha256(server, tmp_path, capsys):
    """``download_models.sh whisper_small`` through a mirror: a good file is saved, a wrong one refused."""
    [official] = dl.REGISTRY["whisper_small"].files
    dest = tmp_path / "checkpoints"
    argv = ["whisper_small", "--dest", str(dest), "--mirror", server.url, "--no-progress"]
    (server.root / "whisper_small.pt").write_bytes(PAYLOAD)  # not the real file: its hash differs
    assert dl.main(argv) == 1
    assert f"does not match the published {official.sha256}" in capsys.readouterr().err
    assert not (dest / "whisper_small.pt").exists()
    assert server.requests[-1][0] == "/whisper_small.pt"


def test_whisper_entry_downloads_when_the_hash_matches(server, tmp_path, monkeypatch):
    [official] = dl.REGISTRY["whisper_base"].files
    fake = dl.ModelFile(official.name, official.url, official.filename, sha256=PAYLOAD_SHA)
    monkeypatch.setitem(dl.REGISTRY, "whisper_base", dl.ModelEntry("whisper_base", (fake,), "-"))
    (server.root / "whisper_base.pt").write_bytes(PAYLOAD)
    assert dl.main(["whisper_base", "--dest", str(tmp_path), "--mirror", server.url, "--no-progress"]) == 0
    assert (tmp_path / "whisper_base.pt").read_bytes() == PAYLOAD
