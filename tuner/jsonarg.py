"""The one parser for command-line values that are "a JSON object, or a JSON file".

The form of the value decides, never the file system: a value whose first non-blank character is
``{`` is inline JSON, anything else is a path. Probing the file system first breaks on inline
objects longer than a file name (``os.stat`` raises ``ENAMETOOLONG`` instead of answering no), and
every real configuration of a space is longer than that.
"""

from __future__ import annotations

import json
from pathlib import Path

from tuner.errors import ConfigError

_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def json_object_arg(value: str, flag: str) -> dict:
    """Parse ``value`` given to ``flag`` as an inline JSON object or the path of a JSON file.

    Raises:
        ConfigError: one line naming the flag: a missing or unreadable file, JSON that does not
            parse (with its line and column), or JSON that is not an object.
    """
    inline = value.lstrip().startswith("{")
    if inline:
        text, where = value, "inline JSON"
    else:
        shown = repr(value if len(value) <= 80 else value[:60] + "...")
        path = Path(value).expanduser()
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"{flag}: no file {shown}; give a JSON object such as '{{\"lr\": 0.001}}' "
                              "or the path of a JSON file such as best.json") from None
        except IsADirectoryError:
            raise ConfigError(f"{flag}: {shown} is a directory; give a JSON file such as "
                              f"{Path(value) / 'best.json'}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{flag}: {shown} is not a text file; give a JSON file such as best.json") from None
        except OSError as err:
            raise ConfigError(f"{flag}: {shown} is neither a JSON object (one starts with {{) nor a file "
                              f"that can be read ({err.strerror})") from None
        where = f"file {shown}"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{flag}: {where} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") \
            from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{flag}: {where} holds a JSON {_JSON_TYPES[type(parsed)]}, not an object "
                          "such as {\"lr\": 0.001}")
    return parsed


def read_params(text: str | None) -> tuple[dict, str | None]:
    """Parse ``--params``: a JSON object, or a JSON file (``best.json`` carries its space too).

    Returns the parameters and the space named in the file, if any.
    """
    if not text:
        return {}, None
    params = json_object_arg(text, "--params")
    if "params" in params and "space" in params:  # a best.json written by `tuner search`
        if not isinstance(params["params"], dict):
            raise ConfigError(f"--params: its \"params\" is a {type(params['params']).__name__}, not an object "
                              "of name: value; give a best.json written by `python -m tuner best`")
        return dict(params["params"]), str(params["space"])
    return params, None
