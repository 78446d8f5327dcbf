"""Sandboxes kept in PostgreSQL for a pair of services (services/shared_sandboxes.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from dirac_like.sandbox import SandboxError, SandboxNotFound
from dirac_like.services.shared_sandboxes import PostgresSandboxStore
from dirac_like.store.base import open_store

DATA = bytes(range(256)) * 40  # 10240 bytes
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresSandboxStore]:
    open_store(postgres_url).close()  # the sandboxes' tables are the store's schema
    store = PostgresSandboxStore(postgres_url, 1 << 20, clock=lambda: 1000.0)
    try:
        yield store
    finally:
        store.close()


def upload(store: PostgresSandboxStore, uploader: str, chunk: int = 3000) -> int:
    received = 0
    for offset in range(0, len(DATA), chunk):
        received = store.write_chunk(
            SHA, len(DATA), offset, DATA[offset : offset + chunk], uploader=uploader
        )
    return received


def test_an_archive_uploaded_in_chunks_reads_back_in_any_range(
    store: PostgresSandboxStore,
) -> None:
    assert not store.has(SHA)
    assert upload(store, "alice") == len(DATA)
    assert store.has(SHA) and store.granted(SHA, "alice") and not store.granted(SHA, "bob")
    assert store.get(SHA) == DATA
    for offset, length in ((0, 1), (2999, 2), (2500, 4000), (10000, 1000), (0, 20000)):
        data, size = store.read_chunk(SHA, offset, length)
        assert size == len(DATA) and data == DATA[offset : offset + length]


def test_a_chunk_sent_again_is_written_again_and_a_gap_is_refused(
    store: PostgresSandboxStore,
) -> None:
    store.write_chunk(SHA, len(DATA), 0, DATA[:4000], uploader="alice")
    assert store.write_chunk(SHA, len(DATA), 0, DATA[:4000], uploader="alice") == 4000
    with pytest.raises(SandboxError, match="does not follow"):
        store.write_chunk(SHA, len(DATA), 6000, DATA[6000:7000], uploader="alice")
    assert store.write_chunk(SHA, len(DATA), 4000, DATA[4000:], uploader="alice") == len(DATA)
    assert store.get(SHA) == DATA


def test_bytes_that_do_not_match_their_name_are_refused_and_not_kept(
    store: PostgresSandboxStore,
) -> None:
    with pytest.raises(SandboxError, match="upload it again"):
        store.write_chunk(SHA, 4, 0, b"evil", uploader="mallory")
    assert not store.has(SHA)
    with pytest.raises(SandboxNotFound):
        store.read_chunk(SHA, 0, 10)


def test_another_uploader_sends_the_bytes_and_then_holds_the_one_copy(
    store: PostgresSandboxStore,
) -> None:
    upload(store, "alice")
    assert upload(store, "bob", chunk=5000) == len(DATA)
    assert store.granted(SHA, "bob") and store.get(SHA) == DATA


def test_unreferenced_old_archives_are_collected(store: PostgresSandboxStore) -> None:
    upload(store, "alice")
    assert store.collect({SHA}, older_than=10.0, now=2000.0) == []
    assert store.collect(set(), older_than=10.0, now=2000.0) == [SHA]
    assert not store.has(SHA)
