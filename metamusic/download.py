"""Download the pretrained weights MetaMusic needs into ``checkpoints/``.

A small registry names every file (URL, local file name, published SHA-256 when there is one).
:func:`download` streams a file into ``<file>.part`` with the standard library only, resumes an
interrupted ``.part`` with an HTTP ``Range`` request, retries connection errors, refuses the HTML
pages that dead mirrors return, checks length and hash, and only then renames the file into place.

Run ``python -m metamusic.download --list`` (or ``bash download_models.sh --list``) to see the
models; with no names it fetches what the README's main command needs.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from metamusic.errors import InputError, MetaMusicError
from metamusic.files import replace_durably, sha256_of

MIRROR_ENV = "METAMUSIC_MIRROR"
DEFAULT_DEST = "checkpoints"
CHUNK_BYTES = 1 << 16
USER_AGENT = "metamusic-downloader/0.1 (+python-urllib)"
_HTML_PREFIXES = (b"<!doctype", b"<html")


class DownloadError(MetaMusicError):
    """A file could not be fetched or failed its checks (exit status 1)."""


class _Retryable(Exception):
    """Internal: a transfer failure worth retrying (the ``.part`` file is kept)."""


@dataclass(frozen=True)
class ModelFile:
    """One file to fetch: where from, its local name and what it must hash to."""

    name: str
    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A named model: the files that make it up and a one-line description."""

    name: str
    files: tuple[ModelFile, ...]
    description: str


def _heibox(name: str, share: str, description: str) -> ModelEntry:
    """Return the entry of a taming-transformers VQGAN shared on heibox (config + checkpoint)."""
    base = f"https://heibox.uni-heidelberg.de/d/{share}/files/"
    return ModelEntry(
        name,
        (
            ModelFile(f"{name} config", f"{base}?p=%2Fconfigs%2Fmodel.yaml&dl=1", f"{name}.yaml"),
            ModelFile(f"{name} checkpoint", f"{base}?p=%2Fckpts%2Flast.ckpt&dl=1", f"{name}.ckpt"),
        ),
        description,
    )


def _openai_clip(name: str, sha256: str, filename: str, description: str) -> ModelEntry:
    """Return the entry of an OpenAI CLIP archive (its URL carries its own SHA-256)."""
    url = f"https://openaipublic.azureedge.net/clip/models/{sha256}/{filename}"
    return ModelEntry(name, (ModelFile(name, url, filename, sha256=sha256),), description)


def _openai_whisper(size: str, sha256: str, description: str) -> ModelEntry:
    """Return the entry of an OpenAI Whisper checkpoint (its URL carries its SHA-256), saved as whisper_<size>.pt."""
    name = f"whisper_{size}"
    url = f"https://openaipublic.azureedge.net/main/whisper/models/{sha256}/{size}.pt"
    return ModelEntry(name, (ModelFile(name, url, f"{name}.pt", sha256=sha256),), description)


_MIRROR_IO = "http://mirror.io.community/blob/vqgan"

REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        _heibox(
            "vqgan_imagenet_f16_16384",
            "a7530b09fed84f80a887",
            "VQGAN ImageNet f16, 16384 codes (~980 MB)",
        ),
        _heibox(
            "vqgan_imagenet_f16_1024",
            "8088892a516d4e3baf92",
            "VQGAN ImageNet f16, 1024 codes (~958 MB)",
        ),
        _heibox(
            "vqgan_gumbel_f8_8192",
            "2e5662443a6b4307b470",
            "VQGAN Gumbel f8, 8192 codes, Open Images (~376 MB)",
        ),
        ModelEntry(
            "wikiart_16384",
            (
                ModelFile("wikiart_16384 config", f"{_MIRROR_IO}/wikiart_16384.yaml", "wikiart_16384.yaml"),
                ModelFile("wikiart_16384 checkpoint", f"{_MIRROR_IO}/wikiart_16384.ckpt", "wikiart_16384.ckpt"),
            ),
            "VQGAN WikiArt f16, 16384 codes (~1 GB; community mirror, often down)",
        ),
        _openai_clip(
            "clip_vit_b32",
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            "ViT-B-32.pt",
            "OpenAI CLIP ViT-B/32, TorchScript archive (~338 MB)",
        ),
        _openai_clip(
            "clip_vit_b16",
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
            "ViT-B-16.pt",
            "OpenAI CLIP ViT-B/16, TorchScript archive (~335 MB)",
        ),
        _openai_clip(
            "clip_rn50",
            "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
            "RN50.pt",
            "OpenAI CLIP RN50, TorchScript archive (~244 MB)",
        ),
        ModelEntry(
            "wav2clip",
            (
                ModelFile(
                    "wav2clip",
                    "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/"
                    "v0.1.0-alpha/Wav2CLIP.pt",
                    "Wav2CLIP.pt",
                ),
            ),
            "Wav2CLIP audio encoder, CLIP ViT-B/32 space (~45 MB, no published hash)",
        ),
        _openai_whisper(
            "base",
            "ed3a0b6b1c0edf879ad9b11b1af5a0e6ab5db9205f891f668f8b0e6c6326e34e",
            "OpenAI Whisper base, multilingual, for --align/--transcribe (~139 MB)",
        ),
        _openai_whisper(
            "small",
            "9ecf779972d90ba49c06d968637d720dd632c55bbf19d441fb42bf17a411e794",
            "OpenAI Whisper small, multilingual: the default for --align/--transcribe (~461 MB)",
        ),
        _openai_whisper(
            "medium",
            "345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1",
            "OpenAI Whisper medium, multilingual, most accurate of the three (~1.4 GB)",
        ),
    )
}

DEFAULT_MODELS: tuple[str, ...] = ("vqgan_imagenet_f16_16384", "clip_vit_b32", "wav2clip")


def source_url(file: ModelFile, mirror: str | None) -> str:
    """Return the URL to fetch ``file`` from: ``<mirror>/<filename>`` or its original URL."""
    if not mirror:
        return file.url
    parts = urllib.parse.urlsplit(mirror)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"mirror {mirror!r} is not an http(s):// base URL")
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(file.filename)}"


def _looks_like_html(head: bytes) -> bool:
    return head.lstrip()[:16].lower().startswith(_HTML_PREFIXES)


def _html_error(url: str, file: ModelFile, final: Path) -> DownloadError:
    return DownloadError(
        f"{url} returned an HTML page, not a model file: the mirror may be dead; "
        f"try again later or download by hand from {file.url} to {final}"
    )


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """Return (first byte, total size) from a ``Content-Range`` header (None when absent)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _open(url: str, part: Path, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """Request ``url`` from byte ``offset`` on; None when the ``part`` holding ``offset`` bytes is already complete."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            _, total = _parse_content_range(exc.headers.get("Content-Range"))
            exc.close()
            if total == offset:
                return None  # the .part is already complete
            part.unlink()  # the .part is longer than the file: start over
            raise _Retryable("the partial file did not match the server's file") from None
        exc.close()
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL or try --mirror") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"cannot connect ({reason})") from None


def _resume_point(
    response: http.client.HTTPResponse, part: Path, offset: int
) -> tuple[int, int | None, str, int | None]:
    """(byte the body starts at, file size or None, ``part`` open mode, body length or None) of a response."""
    length_header = response.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.isdigit() else None
    if response.status == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range"))
        if start != offset:
            part.unlink()
            raise _Retryable("the server answered the resume request with the wrong range")
        mode = "ab"
    else:  # 200: the whole file (a server that ignores Range restarts from byte 0)
        offset, total, mode = 0, length, "wb"
    if total is None and length is not None:
        total = offset + length
    return offset, total, mode, length


def _write_body(
    response: http.client.HTTPResponse, url: str, file: ModelFile, part: Path, final: Path,
    offset: int, total: int | None, mode: str, progress: bool,
) -> int:
    """Stream the response body into ``part`` (opened with ``mode``) with a progress bar; bytes received."""

    def read_chunk() -> bytes:
        try:
            return response.read(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection lost after {offset + received} bytes ({exc})") from None

    received = 0
    chunk = read_chunk()
    if offset == 0 and _looks_like_html(chunk[:512]):
        raise _html_error(url, file, final)  # checked before touching any existing .part
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=file.filename, disable=not progress, leave=False,
    )
    try:
        with part.open(mode) as out:
            while chunk:
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                chunk = read_chunk()
    finally:
        bar.close()
    return received


def _transfer(url: str, file: ModelFile, part: Path, final: Path, progress: bool, timeout: float) -> None:
    """Fetch ``url`` into ``part``, appending from its current size when the server allows it."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, part, offset, timeout)
    if response is None:
        return  # the .part is already complete

    with response:
        if "text/html" in (response.headers.get("Content-Type") or "").lower():
            raise _html_error(url, file, final)
        offset, total, mode, length = _resume_point(response, part, offset)
        received = _write_body(response, url, file, part, final, offset, total, mode, progress)
    if length is not None and received < length:
        raise _Retryable(f"truncated transfer: got {offset + received} of {offset + length} bytes")


def _fetch_with_retries(
    url: str, file: ModelFile, part: Path, final: Path, *, progress: bool, timeout: float,
    retries: int, backoff: float,
) -> None:
    """Run :func:`_transfer`, resuming up to ``retries`` times after a connection failure."""
    for attempt in range(retries + 1):
        try:
            _transfer(url, file, part, final, progress, timeout)
            return
        except _Retryable as exc:
            if attempt == retries:
                kept = f"; {part} is kept, run again to resume" if part.exists() else ""
                raise DownloadError(f"{url}: {exc} (gave up after {retries + 1} attempts){kept}") from None
            time.sleep(backoff * 2**attempt)


def download_file(
    file: ModelFile,
    dest_dir: Path,
    *,
    mirror: str | None = None,
    progress: bool = True,
    verify: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> tuple[Path, bool]:
    """Fetch one file into ``dest_dir``; return (its path, whether it was downloaded now)."""
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    url = source_url(file, mirror)
    dest_dir = Path(dest_dir)
    final = dest_dir / file.filename
    if final.exists():
        if verify and file.sha256 and sha256_of(final) != file.sha256:
            raise DownloadError(
                f"{final}: SHA-256 does not match the published {file.sha256}; delete it and run again"
            )
        return final, False
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{dest_dir}: cannot create the folder ({exc.strerror})") from None
    part = final.with_name(final.name + ".part")
    _fetch_with_retries(url, file, part, final, progress=progress, timeout=timeout, retries=retries, backoff=backoff)

    size = part.stat().st_size
    if file.size is not None and size != file.size:
        part.unlink()
        raise DownloadError(f"{url}: got {size} bytes, expected {file.size}; the file was deleted, run again")
    if file.sha256:
        actual = sha256_of(part)
        if actual != file.sha256:
            part.unlink()
            raise DownloadError(
                f"{url}: SHA-256 {actual} does not match the published {file.sha256}; "
                "the file was deleted (a bad mirror?)"
            )
    replace_durably(part, final)
    return final, True


def download(
    entry_or_file: ModelEntry | ModelFile,
    dest_dir: Path,
    *,
    mirror: str | None = None,
    progress: bool = True,
    verify: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> list[Path]:
    """Fetch every file of a model (or one file) into ``dest_dir``; return their paths."""
    files = entry_or_file.files if isinstance(entry_or_file, ModelEntry) else (entry_or_file,)
    return [
        download_file(
            f, dest_dir, mirror=mirror, progress=progress, verify=verify,
            timeout=timeout, retries=retries, backoff=backoff,
        )[0]
        for f in files
    ]


def resolve_names(names: Sequence[str], all_models: bool = False) -> list[ModelEntry]:
    """Return the registry entries for ``names`` (the defaults when empty, everything with ``all_models``)."""
    if all_models:
        return list(REGISTRY.values())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise InputError(f"unknown model {', '.join(map(repr, unknown))}; known models: {', '.join(REGISTRY)}")
    return [REGISTRY[n] for n in dict.fromkeys(names or DEFAULT_MODELS)]


def format_listing() -> str:
    """Return the ``--list`` text: one model per line, then its files."""
    lines = []
    for entry in REGISTRY.values():
        mark = " (default)" if entry.name in DEFAULT_MODELS else ""
        lines.append(f"{entry.name}{mark}: {entry.description}")
        for f in entry.files:
            lines.append(f"    {f.filename}  sha256={f.sha256 or 'unpublished'}  {f.url}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    from metamusic.helpformat import make_parser

    parser = make_parser(
        "download_models.sh", "Download MetaMusic model weights (VQGAN, CLIP, Wav2CLIP, Whisper) into a checkpoints folder.",
        examples=("{prog}   # the defaults", "{prog} clip_vit_b16",
                  "{prog} --list"),
    )
    parser.add_argument(
        "models", nargs="*", metavar="MODEL",
        help=f"models to fetch (default: {' '.join(DEFAULT_MODELS)}); see --list",
    )
    parser.add_argument("--all", action="store_true", help="fetch every known model")
    parser.add_argument("--list", action="store_true", help="list the known models and exit")
    parser.add_argument("--dest", default=DEFAULT_DEST, type=Path, help="folder for the files (default: checkpoints)")
    parser.add_argument("--mirror", default=None, help=f"base URL serving the files by name (also ${MIRROR_ENV})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--verify", action="store_true", help="also check the SHA-256 of files already present")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch the named models; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        print(format_listing())
        return 0
    if args.all and args.models:
        parser.error("give model names or --all, not both")
    try:
        entries = resolve_names(args.models, args.all)
        for entry in entries:
            for f in entry.files:
                path, fetched = download_file(
                    f, args.dest, mirror=args.mirror, progress=not args.no_progress, verify=args.verify
                )
                print(f"{'downloaded' if fetched else 'present'}: {path}")
    except MetaMusicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; run again to resume the partial download", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
