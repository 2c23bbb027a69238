"""What the description readers share: the file reader (TOML or JSON) and integer fields with
size suffixes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from vtdwalk._args import DESCRIPTION_CAP, read_regular_file, shown
from vtdwalk.errors import PlatformError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT])(?:i?B)?\s*$", re.IGNORECASE)


def _int(value: Any, what: str) -> int:
    """An integer from an int or a string: decimal, 0x-hex, or a size like "64G" / "4KiB"."""
    if isinstance(value, bool):
        raise PlatformError(f"{what}: expected an integer, got {shown(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(m[1]) << {"K": 10, "M": 20, "G": 30, "T": 40}[m[2].upper()]
        try:
            return int(value.strip().replace("_", ""), 0)
        except ValueError:
            pass
    raise PlatformError(f"{what}: expected an integer, got {shown(value)}")


def _read_description(path: str | Path, what: str = "path") -> dict[str, Any]:
    p = Path(path)
    try:
        raw = read_regular_file(p, what, DESCRIPTION_CAP)
    except OSError as e:
        raise PlatformError(f"cannot read {p}: {e.strerror or e}") from e
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PlatformError(f"{p}: not valid JSON: {e}") from e
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on 3.10 only
            import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
        try:
            data = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise PlatformError(f"{p}: not valid TOML: {e}") from e
    if not isinstance(data, dict):
        raise PlatformError(f"{p}: the description must be a table/object at the top")
    return data
