"""Adler32, the grid's file checksum, computed while the bytes stream past.

The grid writes adler32 as 8 lowercase hex digits (``"0a1b2c3d"``); XRootD answers
``adler32 a1b2c3d`` (no leading zeros): :func:`normalize_adler32` makes both the same string.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK_BYTES = 4 * 1024 * 1024


class Adler32:
    """A running adler32 and byte count: ``update`` each chunk, then read ``hex`` and ``size``."""

    def __init__(self) -> None:
        self._value = 1  # adler32 of no bytes
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._value = zlib.adler32(chunk, self._value)
        self.size += len(chunk)

    @property
    def hex(self) -> str:
        return f"{self._value:08x}"


def checked_chunks(chunks: Iterable[bytes], running: Adler32) -> Iterator[bytes]:
    """Pass ``chunks`` through, adding each to ``running`` on the way."""
    for chunk in chunks:
        running.update(chunk)
        yield chunk


def file_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes of a local file, one chunk at a time (never the whole file in memory)."""
    with open(path, "rb") as file:
        while chunk := file.read(chunk_bytes):
            yield chunk


def adler32_of_file(path: Path) -> str:
    running = Adler32()
    for chunk in file_chunks(path):
        running.update(chunk)
    return running.hex


def normalize_adler32(value: str) -> str:
    """An adler32 written by any tool as 8 lowercase hex digits (ValueError if it is not one)."""
    text = value.strip().lower().removeprefix("adler32:").removeprefix("adler32 ").strip()
    number = int(text, 16)
    if not 0 <= number <= 0xFFFFFFFF or len(text) > 8:
        raise ValueError(f"not an adler32: {value!r}")
    return f"{number:08x}"
