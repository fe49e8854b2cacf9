"""Validate apiops-worker commands with the JSON Schemas the repository ships.

Only the schemas in messages/schema/ are used (<type>.json for each command type,
plan.json for plans), read by the jsonschema library (Debian's python3-jsonschema):
no rule of the worker is copied here, so a command that passes is one the schemas
accept. docs/contract.md lists what only the worker can check: the subject's project,
a replyTo under the project's own inbox, and keys given twice (see loads).
"""

import json
import os
import pathlib

import jsonschema

# The repository's messages/schema, or APIOPS_SCHEMA_DIR when the schemas were copied
# elsewhere.
SCHEMA_DIR = pathlib.Path(
    os.environ.get("APIOPS_SCHEMA_DIR")
    or pathlib.Path(__file__).resolve().parents[2] / "messages" / "schema"
)


class Schemas:
    """The command schemas by type name ("keystore.create", ..., "plan")."""

    def __init__(self, directory=SCHEMA_DIR):
        if not hasattr(jsonschema, "Draft202012Validator"):
            raise RuntimeError("the schemas are Draft 2020-12: jsonschema 4 or later is needed")
        self._validators = {}
        for path in sorted(pathlib.Path(directory).glob("*.json")):
            if path.name == "result.json":
                continue  # the worker's answer, not a command
            schema = json.loads(path.read_text(encoding="utf-8"))
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            # Draft 2020-12 makes "format" an annotation; asserting it is the stricter
            # reading. The patterns do not rely on it (notAfter has one of its own).
            self._validators[path.stem] = cls(schema, format_checker=cls.FORMAT_CHECKER)
        if not self._validators:
            raise FileNotFoundError(f"no command schemas in {directory}")

    def types(self):
        return sorted(self._validators)

    def errors(self, type_name, command):
        """What is wrong with command (decoded JSON) as a command of type_name: a list
        of "path: message" strings, empty when the schema accepts it."""
        validator = self._validators.get(type_name)
        if validator is None:
            return [f"{type_name!r} is not a command type: no schema"]
        found = sorted(validator.iter_errors(command), key=lambda e: [str(p) for p in e.absolute_path])
        return [f"{_path(e.absolute_path) or '(the command)'}: {_message(e)}" for e in found]


def _message(e):
    # The schemas' one "not" with a pattern refuses line terminators (see the contract's
    # "JSON Schemas"); jsonschema's own message would print the whole subschema.
    if e.validator == "not" and isinstance(e.validator_value, dict) and "pattern" in e.validator_value:
        return f"{e.instance!r} holds a line break or another line terminator"
    return e.message


def _path(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class DuplicateKeys(ValueError):
    """A JSON object names a key twice. Python's json keeps the last value, so a schema
    never sees the first; the worker rejects such a command."""


def loads(text):
    """Parses a command as strictly as the worker does: no NaN or Infinity (Python's
    json takes them, JSON does not) and no key given twice (DuplicateKeys)."""

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    def unique(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeys(f"the key {key!r} appears more than once")
            seen.add(key)
        return dict(pairs)

    return json.loads(text, parse_constant=no_constant, object_pairs_hook=unique)
