"""The commands of ``python -m tuner``, one thin module each.

A command turns its ``argparse.Namespace`` into calls of the machinery in :mod:`tuner` and prints.
It imports no other command: what two commands share lives in a module that is not a command
(``tests/test_layering.py`` checks it). :mod:`tuner.cli` imports each one when its command runs.
"""
