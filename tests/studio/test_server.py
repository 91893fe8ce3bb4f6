"""The studio serves this machine only, and no file outside its workdir."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_file_outside_workdir_is_refused(studio):
    url, workdir, _ = studio
    inside = workdir / "note.txt"
    inside.write_text("inside")
    outside = Path(__file__).resolve()  # the repository, the server's working directory
    assert status(f"{url}gradio_api/file={inside}") == 200
    assert status(f"{url}gradio_api/file={outside}") in (403, 404)
    assert status(f"{url}gradio_api/file=/etc/passwd") in (403, 404)
    assert status(f"{url}gradio_api/file={workdir}/../studio.log") in (403, 404)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses listening on ``port`` (IPv4, from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":
            found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def _other_local_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_binds_loopback_by_default(studio):
    url, _, port = studio
    assert url.startswith("http://127.0.0.1:")
    if Path("/proc/net/tcp").is_file():
        assert _listening_addresses(port) == {"127.0.0.1"}
    other = _other_local_address()
    if other is None:
        pytest.skip("no non-loopback address on this machine (the bound address was checked)")
    with pytest.raises(OSError):
        socket.create_connection((other, port), timeout=3).close()
