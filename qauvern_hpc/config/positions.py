"""Where things are in the config file: YAML parsed with the line and column of every key and value.

`parse_yaml` builds plain data (safe loader only) and records, for every key path (`Loc`, e.g.
``("rules", 0, "match", "users")``), where its value starts and where its key is written, so that every
error can name ``file:line:column: key.path``. Duplicate keys and non-scalar keys are refused here (PyYAML
would silently keep the last one). Lines and columns are 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from qauvern_hpc.core.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    loc: Loc
    message: str
    first_loc: Loc | None = None  # for duplicates: where the first one is


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _Loader(yaml.SafeLoader):
    pass


@dataclass
class Document:
    """Parsed YAML plus where each value and each mapping key was written."""

    data: Any
    values: dict[Loc, Mark]  # where each value starts
    keys: dict[Loc, Mark]  # where each mapping key is written


def _mark(m: yaml.Mark) -> Mark:
    return Mark(m.line + 1, m.column + 1)


def parse_yaml(text: str, filename: str) -> Document:
    loader = _Loader(text)
    values: dict[Loc, Mark] = {}
    keys: dict[Loc, Mark] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{filename}: the config is empty")

        def build(n: yaml.Node, path: Loc, depth: int) -> Any:
            if depth > 64:
                raise ConfigError(f"{filename}:{_mark(n.start_mark).line}: nesting too deep")
            values.setdefault(path, _mark(n.start_mark))
            if isinstance(n, yaml.MappingNode):
                seen: dict[Any, yaml.Node] = {}
                for knode, _v in n.value:
                    if knode.tag == "tag:yaml.org,2002:merge":
                        continue
                    k = loader.construct_object(knode, deep=True)
                    if isinstance(k, list | dict):
                        m = _mark(knode.start_mark)
                        raise ConfigError(
                            f"{filename}:{m.line}:{m.column}: {format_loc(path)}: a key must be a scalar"
                        )
                    if k in seen:
                        m, first = _mark(knode.start_mark), _mark(seen[k].start_mark)
                        raise ConfigError(
                            f"{filename}:{m.line}:{m.column}: {format_loc((*path, k))}: duplicate key "
                            f"(first at line {first.line})"
                        )
                    seen[k] = knode
                loader.flatten_mapping(n)
                out: dict[Any, Any] = {}
                for knode, vnode in n.value:
                    k = loader.construct_object(knode, deep=True)
                    keys.setdefault((*path, k), _mark(knode.start_mark))
                    out[k] = build(vnode, (*path, k), depth + 1)
                return out
            if isinstance(n, yaml.SequenceNode):
                return [build(v, (*path, i), depth + 1) for i, v in enumerate(n.value)]
            return loader.construct_object(n, deep=True)

        data = build(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        where = f"{filename}:{m.line + 1}:{m.column + 1}" if m else filename
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return Document(data, values, keys)


def position(doc: Document, loc: Loc, *, key: bool = False) -> Mark | None:
    """Where `loc` is written (its key with key=True), else its closest written ancestor."""
    if key and loc in doc.keys:
        return doc.keys[loc]
    for n in range(len(loc), -1, -1):
        prefix = loc[:n]
        if prefix in doc.values:
            return doc.values[prefix]
    return None


def where(filename: str, mark: Mark | None) -> str:
    return f"{filename}:{mark.line}:{mark.column}" if mark else filename
