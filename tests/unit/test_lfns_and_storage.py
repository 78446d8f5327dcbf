"""LFN rules, the LFN -> PFN mapping with its round-trip check, SE config, streaming adler32."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.checksums import Adler32, adler32_of_file, normalize_adler32
from dirac_like.config import load_config
from dirac_like.errors import ConfigError, InvalidArgument, InvalidLfn
from dirac_like.lfns import check_lfn, is_under, parent_of, user_folder
from dirac_like.storage import StorageElementConfig, default_storage


@pytest.mark.parametrize(
    "lfn",
    [
        "/lhcb/user/a/../b",
        "/lhcb/./f",
        "/lhcb//f",
        "/lhcb/f/",
        "lhcb/f",
        "/lhcb",
        "/lhcb/f\nx",
        "/lhcb/a\\b",
        "",
    ],
)
def test_bad_lfns_are_refused_with_a_reason(lfn: str) -> None:
    with pytest.raises(InvalidLfn):
        check_lfn(lfn)


def test_an_lfn_whose_first_folder_is_not_a_vo_is_refused() -> None:
    assert check_lfn("/lhcb/data/f", ("lhcb",)) == "/lhcb/data/f"
    with pytest.raises(InvalidLfn, match="not a VO"):
        check_lfn("/atlas/data/f", ("lhcb",))


def test_folders_and_parents() -> None:
    assert user_folder("lhcb", "alice") == "/lhcb/user/alice"
    assert is_under("/lhcb/user/alice/f", "/lhcb/user/alice")
    assert not is_under("/lhcb/user/alicex/f", "/lhcb/user/alice")
    assert parent_of("/lhcb/f") == "/lhcb"


def test_pfn_is_base_url_plus_lfn_with_the_longest_rule_first() -> None:
    se = StorageElementConfig(
        name="X",
        protocol="xroot",
        endpoint="root://h:1094",
        base_path="/grid",
        rules={"/lhcb/user": "/users", "/lhcb/user/big": "/big"},
    )
    assert se.pfn("/lhcb/data/f") == "root://h:1094//grid/lhcb/data/f"
    assert se.pfn("/lhcb/user/a/f") == "root://h:1094//grid/users/a/f"
    assert se.pfn("/lhcb/user/big/f") == "root://h:1094//grid/big/f"


def test_a_rule_that_does_not_map_back_is_caught_before_any_file_is_touched() -> None:
    # /lhcb/data/x would land on /users/x, which maps back to /lhcb/user/x: two LFNs, one PFN
    se = StorageElementConfig(
        name="X", base_path="/d", rules={"/lhcb/user": "/users", "/lhcb/data": "/users"}
    )
    with pytest.raises(InvalidArgument, match="maps back"):
        se.pfn("/lhcb/data/x")


@given(st.lists(st.sampled_from(["a", "b", "user", "x1", "data"]), min_size=1, max_size=5))
def test_every_valid_lfn_round_trips(segments: list[str]) -> None:
    se = StorageElementConfig(name="X", base_path="/d", rules={"/vo/user": "/u"})
    lfn = "/vo/" + "/".join(segments)
    assert se.lfn(se.path(lfn)) == lfn


def test_storage_config_is_read_from_toml_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[storage.A]\nprotocol = "xroot"\nendpoint = "root://127.0.0.1:1"\n'
        'base_path = "/g"\ntags = ["disk", "tier1"]\nsite = "S"\n'
    )
    se = load_config(path).storage["A"]
    assert (se.name, se.tags, se.site) == ("A", ("disk", "tier1"), "S")
    path.write_text('[storage.A]\nprotocol = "gridftp"\nbase_path = "/g"\n')
    with pytest.raises(ConfigError, match=r"storage\.A\.protocol"):
        load_config(path)
    path.write_text('[storage.A]\nbase_path = "/g"\nsize = 3\n')
    with pytest.raises(ConfigError, match=r"storage\.A\.size: unknown key"):
        load_config(path)


def test_without_storage_config_a_file_se_in_the_home_is_the_default(tmp_path: Path) -> None:
    ((name, se),) = default_storage(tmp_path).items()
    assert se.protocol == "file" and Path(se.base_path).is_relative_to(tmp_path)
    assert load_config(None).storage_elements(tmp_path).keys() == {name}


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_streaming_adler32_equals_the_whole_file_checksum(chunks: list[bytes]) -> None:
    running = Adler32()
    for chunk in chunks:
        running.update(chunk)
    assert running.hex == f"{zlib.adler32(b''.join(chunks)):08x}"
    assert running.size == sum(map(len, chunks))


def test_adler32_of_a_file_and_the_forms_tools_print(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello")
    assert adler32_of_file(path) == "062c0215"
    assert normalize_adler32("adler32 62c0215") == "062c0215"
    assert normalize_adler32("adler32:62C0215") == "062c0215"
    with pytest.raises(ValueError):
        normalize_adler32("zz")
