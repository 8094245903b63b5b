"""SQL lives in ``.sql`` files next to each provider and is loaded by name.

A queries file is a sequence of blocks, each introduced by a line ``-- name: <query_name>``;
everything up to the next such line (or the end) is that query. A schema file is loaded whole.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")


def parse_queries(text: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = _NAME.match(line.strip())
        if match:
            if name is not None:
                queries[name] = "\n".join(lines).strip()
            name, lines = match[1], []
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
        elif name is not None:
            lines.append(line)
    if name is not None:
        queries[name] = "\n".join(lines).strip()
    return queries


class Queries:
    """Named queries of one file; ``queries["fetch_work_item"]`` or a clear KeyError."""

    def __init__(self, package: str, filename: str) -> None:
        self._source = f"{package}/{filename}"
        self._queries = parse_queries(read_text(package, filename))

    def __getitem__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self._source}") from None

    def names(self) -> list[str]:
        return sorted(self._queries)


@cache
def read_text(package: str, filename: str) -> str:
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")
