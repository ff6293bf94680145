"""Sources (organ, site, scanner) of images from a column of a table: ``sonofm data pack --source-from T.csv:COLUMN``.

The table's rows name images by a ``path`` column (absolute, or relative to the table's folder) or, failing that, by
a ``name`` column (the file name without its extension, as the ``labels.csv`` of sonofm's datasets do). Every image
needs a row; the sources are the column's distinct values among the images, sorted.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sonofm.data.frames import parse_frame_ref
from sonofm.errors import SonofmError

MAX_SOURCES = 32_767  # source ids are stored as int16


@dataclass(frozen=True)
class SourceColumn:
    """``TABLE.csv:COLUMN`` as given to ``--source-from``."""

    table: Path
    column: str

    @classmethod
    def parse(cls, text: str) -> SourceColumn:
        table, colon, column = text.rpartition(":")
        if not colon or not table or not column:
            raise SonofmError(f"--source-from must be `folder` or TABLE.csv:COLUMN, got {text!r}")
        return cls(Path(table), column)

    def __str__(self) -> str:
        return f"{self.table}:{self.column}"

    def source_ids(self, files: Sequence[Path]) -> tuple[list[int], list[str]]:
        """Each file's source id and the source names (ids index the names)."""
        rows, key_column = self._rows()
        lookup: dict[str, str] = {}
        for line, row in enumerate(rows, start=2):
            key = self._row_key(row[key_column], key_column)
            if key in lookup and lookup[key] != row[self.column]:
                raise SonofmError(f"{self.table} line {line}: {row[key_column]!r} is listed twice with different "
                                  f"{self.column} values")
            lookup[key] = row[self.column]
        labels, missing = [], []
        for file in files:
            label = lookup.get(_file_key(file, key_column))
            if label is None or not label.strip():
                missing.append(file)
            labels.append(label)
        if missing:
            raise SonofmError(f"{len(missing)} images have no {self.column} in {self.table} (matched by its "
                              f"`{key_column}` column), e.g. {missing[0]}")
        names = sorted(set(labels))
        if len(names) > MAX_SOURCES:
            raise SonofmError(f"{self.table} column {self.column} has {len(names)} distinct values; at most "
                              f"{MAX_SOURCES} sources are supported")
        ids = {name: index for index, name in enumerate(names)}
        return [ids[label] for label in labels], names

    def _rows(self) -> tuple[list[dict[str, str]], str]:
        try:
            with self.table.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                fields = reader.fieldnames or []
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise SonofmError(f"cannot read --source-from table {self.table}: {error}") from None
        if self.column not in fields:
            raise SonofmError(f"{self.table} has no column {self.column!r} (columns: {', '.join(fields)})")
        key_column = next((name for name in ("path", "name") if name in fields), None)
        if key_column is None:
            raise SonofmError(f"{self.table} needs a `path` or `name` column to match its rows to images")
        return rows, key_column

    def _row_key(self, value: str, key_column: str) -> str:
        if key_column == "name":
            return value
        path = Path(value)
        return str((path if path.is_absolute() else self.table.parent / path).resolve())


def _file_key(file: Path, key_column: str) -> str:
    """How a table row names ``file``: its resolved path, or its name without extension (a cine frame's clip)."""
    parsed = parse_frame_ref(file)
    source = parsed[0] if parsed else file
    return source.stem if key_column == "name" else str(Path(source).resolve())
