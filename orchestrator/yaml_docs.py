"""Reading and checking YAML documents: the error type of a bad spec, and the checks every section shares."""

from __future__ import annotations

import math
from typing import Any

import yaml

from clipsweep.trainers.typed import unknown_field


class SpecError(ValueError):
    """A spec that cannot run; the message names the YAML path, the value and what is allowed."""


def read_yaml(path: str, what: str) -> Any:
    """The document of a YAML file.

    Raises:
        SpecError: naming the file, and the line of malformed YAML (a tab gets "indent with spaces").
    """
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise SpecError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: the {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        hint = "; indent with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
        raise SpecError(f"{path}:{where}: malformed YAML: {problem}{hint}") from None


def reject_nonfinite(doc: Any, source: str, path: str = "") -> None:
    """Refuses inf and nan anywhere in a document (YAML reads `1.0e+400` as infinity)."""
    if isinstance(doc, float) and not math.isfinite(doc):
        raise SpecError(f"{source}: {path}={doc!r}; allowed: a finite number")
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in children:
        reject_nonfinite(value, source, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key))


def reject_unknown(doc: Any, allowed: tuple[str, ...], path: str, source: str) -> None:
    """Refuses a field not in `allowed` (with the nearest one) or a non-mapping at `path`."""
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: {path}={doc!r}; expected a mapping of fields")
    unknown = sorted(set(map(str, doc)) - set(allowed))
    if unknown:
        raise SpecError(f"{source}: {unknown_field(f'{path}.{unknown[0]}' if path else unknown[0], allowed)}")


def plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML and JSON friendly)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def yaml_flow(value: Any) -> str:
    return yaml.safe_dump(plain(value), default_flow_style=True, width=1000).strip()
