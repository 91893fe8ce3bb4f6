"""Exceptions that carry a one-line, user-facing message.

Command-line scripts catch :class:`MetaMusicError`, print ``error: <message>`` on one line and
exit with :attr:`MetaMusicError.exit_code`; nothing below them prints tracebacks for bad input.
"""


class MetaMusicError(Exception):
    """Base class for errors whose message is meant for the user."""

    exit_code = 1


class InputError(MetaMusicError):
    """Bad user input (a file, a flag value, a device): exit status 2."""

    exit_code = 2


class CheckpointError(InputError):
    """A model file is missing, corrupt, unsafe or for another architecture."""


class Interrupted(MetaMusicError):
    """The user stopped a render (Ctrl-C); the message says how to resume it. Exit status 130."""

    exit_code = 130


class Terminated(Interrupted):
    """A render stopped by SIGTERM (a scheduler, a preemptible VM), saved like Ctrl-C. Exit status 143."""

    exit_code = 143


class DiskFull(MetaMusicError):
    """The disk (or a file-size limit) ran out mid-render; the message names the folder and the
    space the rest needs, and re-running the same command resumes. Exit status 1."""
