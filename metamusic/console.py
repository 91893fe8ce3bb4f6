"""How every command ends: user-facing errors as one line on stderr and an exit status."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from metamusic.errors import MetaMusicError

__all__ = ["run_cli"]


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and turn user-facing errors into one line on stderr and an exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return main(argv)
    except MetaMusicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
