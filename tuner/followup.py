"""The commands the tool prints for the user to run next (resume, final model, report), quoted for a shell.

A run name or path may hold spaces, quotes or ``>``; pasted as printed, such a command would run
redirections. Every printed command is built by :func:`tuner_command`, which quotes each argument
with :func:`shlex.quote`.
"""

from __future__ import annotations

import shlex


def tuner_command(*args: object) -> str:
    """``python -m tuner ARGS...`` as one line to paste into a POSIX shell, each argument quoted."""
    return " ".join(["python -m tuner", *(shlex.quote(str(arg)) for arg in args)])


def resume_search(space: str, name: str, storage: str) -> str:
    """The command that continues a search (its saved settings win over any other flag)."""
    return tuner_command("search", "--space", space, "--name", name, "--storage", storage, "--resume")


def resume_compare(settings: dict) -> str:
    """The command that continues a comparison from its saved settings (``compare.json``'s ``settings``)."""
    return tuner_command("compare", "--task", settings["task"], "--name", settings["name"],
                         "--storage", settings["storage"], "--resume")
