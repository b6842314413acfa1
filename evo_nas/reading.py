"""Reading the files people write and damage (YAML and JSON) within bounds, every error one line.   [pyyaml]

Every YAML and JSON document evonas reads from a user or a run directory goes through here:
a config file, a run's config.yaml, a genome file, meta.json, a snapshot, a journal line. What
is bounded, and why (README, "Bad input"):
- size: a file is read only up to `max_bytes` (a few hundred bytes of YAML must not become
  gigabytes, nor a 10 GB meta.json be read whole);
- expansion: YAML anchors and aliases (`&a`, `*a`) are refused before anything is built, so an
  alias bomb (nine aliases of nine aliases of ...) is an error, not gigabytes;
- depth: nesting beyond MAX_DEPTH is refused while the YAML is composed, or right after the
  JSON is parsed, so no RecursionError reaches a reader;
- text: the bytes must be UTF-8; a bad byte is named by its line and offset;
- keys: a key given twice in one mapping is an error (a typo must not silently win).
The error is the caller's UserError subclass, naming the file, the line and column, and what.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from evo_nas.errors import UserError, short

MAX_DEPTH = 100  # nesting levels; evonas's own files use fewer than 10
MAX_BYTES = 1 << 20  # a config or genome file; config.yaml and genome files are a few KB
MAX_JSON_BYTES = 64 << 20  # meta.json, a snapshot: KBs; generous, but not a 10 GB read


def read_text(path: str | os.PathLike, error: type[UserError], max_bytes: int = MAX_BYTES,
              what: str = "file") -> str:
    """A file's text, checked to be at most `max_bytes` of UTF-8 (a leading BOM dropped)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(max_bytes + 1) if size <= max_bytes else b""
    except OSError as err:
        raise error(f"{path}: cannot read {what} ({err.strerror or type(err).__name__})") from None
    if size > max_bytes or len(raw) > max_bytes:
        raise error(f"{path}: {max(size, len(raw)):,} bytes is more than a {what} may have ({max_bytes:,})")
    return decode(raw, str(path), error)


def decode(raw: bytes, where: str, error: type[UserError]) -> str:
    """UTF-8 text, or one line naming the first bad byte's value, line and offset."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise error(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}, byte offset "
                    f"{err.start}); save it as UTF-8") from None


# -- YAML ----------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases, with a depth bound and no repeated keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None) is not None:
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name) are not allowed; "
                                                          "write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as err:  # an integer of 5,000 digits, a bad date
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({_first_words(err)})",
                                                    node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: SafeLoader merges it below
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in lines:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {short(key)} appears twice (lines {lines[key]} and {line})",
                            key_node.start_mark)
                except TypeError:  # a list or mapping as a key
                    raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value, not a list "
                                                            "or a mapping", key_node.start_mark) from None
                lines[key] = line
        return super().construct_mapping(node, deep)


class _TooDeep(yaml.YAMLError):
    def __init__(self, mark):
        super().__init__()
        self.problem_mark = mark


def load_yaml(text: str, where: str, error: type[UserError], what: str = "a YAML file") -> object:
    """Parse YAML text (see the module's bounds); errors name `where`, the line and the column."""
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_data()
    except _TooDeep as err:
        raise error(f"{where}: nested too deeply to be {what} (more than {MAX_DEPTH} levels at "
                    f"line {err.problem_mark.line + 1})") from None
    except yaml.YAMLError as err:
        raise error(f"{where}: {yaml_error(err, text)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str | os.PathLike, error: type[UserError], what: str = "YAML file",
              max_bytes: int = MAX_BYTES) -> object:
    """A YAML file, read within the bounds above; `what` names its kind in errors."""
    return load_yaml(read_text(path, error, max_bytes, what), str(path), error, f"a {what}")


def yaml_error(err: yaml.YAMLError, text: str = "") -> str:
    """A YAML error as one line: where (line, column) and what."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(err, yaml.reader.ReaderError):  # a control character: it has a position only
        where = f"line {text.count(chr(10), 0, err.position) + 1}"
    else:
        where = "somewhere"
    what = getattr(err, "problem", None) or getattr(err, "reason", None) or " ".join(str(err).split())
    if isinstance(err, yaml.reader.ReaderError):
        what = f"character #x{err.character:04x} is not allowed"
    return f"not valid YAML ({where}: {what})"


# -- JSON ----------------------------------------------------------------------------------------

def load_json(text: str, where: str, error: type[UserError], what: str = "a JSON document") -> object:
    """Parse JSON text; nesting beyond MAX_DEPTH is an error like any other damage."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise error(f"{where}: nested too deeply to be {what} (more than {MAX_DEPTH} levels)") from None
    except ValueError as err:
        raise error(f"{where}: not valid JSON ({_first_words(err)})") from None
    if too_deep(data, text):
        raise error(f"{where}: nested too deeply to be {what} (more than {MAX_DEPTH} levels)")
    return data


def read_json(path: str | os.PathLike, error: type[UserError], what: str = "JSON file",
              max_bytes: int = MAX_JSON_BYTES) -> object:
    """A JSON file, read within the bounds above; `what` names its kind in errors."""
    return load_json(read_text(path, error, max_bytes, what), str(path), error, f"a {what}")


def too_deep(data: object, text: str = "") -> bool:
    """Whether `data` nests deeper than MAX_DEPTH. A text with fewer brackets than that cannot,
    which spares the walk for nearly every journal line."""
    if text and text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    level, depth = [data], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return True
        level = [v for x in level if isinstance(x, dict | list)
                 for v in (x.values() if isinstance(x, dict) else x) if isinstance(v, dict | list)]
    return False


def _first_words(err: BaseException, limit: int = 100) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
