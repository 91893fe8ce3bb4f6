"""One ``--help`` style for every MetaMusic command: sections, defaults written once, examples last."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wide enough to scan; the description and the examples keep their line breaks.

    Defaults are part of each flag's help text (written once, only where they mean something),
    never appended automatically, so switches show no ``(default: False)``.
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        """``-ap, --audio_prompt AUDIO_PROMPT``: the value's name once, after the last spelling."""
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {value}"


def command_name(script: str) -> str:
    """The command the user typed: an installed entry point (``metamusic-generate``) or ``script``."""
    typed = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return typed if typed.startswith("metamusic-") else script


def make_parser(script: str, description: str, examples: Sequence[str] = (), usage: str | None = None,
                **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser in the shared style; ``examples`` are full command lines shown at the end,
    ``usage`` a short synopsis after the command's name (default: argparse's list of every flag)."""
    prog = command_name(script)
    epilog = None
    if examples:
        epilog = "examples:\n" + "\n".join(f"  {e.replace('{prog}', prog)}" for e in examples)
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   usage=f"%(prog)s {usage}" if usage else None,
                                   formatter_class=HelpFormatter, **kwargs)
