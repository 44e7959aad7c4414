"""The commands of ``python -m tuner``, one thin module each.

A command turns its ``argparse.Namespace`` into a call of the Python API (:mod:`tuner.api`, the
CLI's own engine) and prints what it returns. It imports no other command: what two commands share
lives in a module that is not a command (``tests/test_layering.py`` checks it). :mod:`tuner.cli`
imports each one when its command runs.
"""
