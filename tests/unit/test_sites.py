"""Site files (etc/sites/*.toml): the shipped examples load; each bad file is an error naming the
file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dirac_like.errors import ConfigError
from dirac_like.protocol import PilotResources
from dirac_like.sites import SiteConfigError, load_site, load_sites

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "sites"

GOOD_CE = """
[ce.CERN-CE-1]
fabric = "local"
cores_per_slot = 2
"""


def write_site(folder: Path, text: str, name: str = "LCG.CERN.cern") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write_site(tmp_path, text)
    with pytest.raises(SiteConfigError) as caught:
        load_site(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


# -- the shipped examples --------------------------------------------------------------------


def test_shipped_sites_load() -> None:
    sites = load_sites(SHIPPED)
    assert {"DIRAC.Local.org", "LCG.Example.org"} <= set(sites)
    local = sites["DIRAC.Local.org"]
    assert len(local.ces) == 2
    assert {ce.fabric for ce in local.ces} == {"local"}
    slurm_ce = sites["LCG.Example.org"].ces[0]
    assert slurm_ce.fabric == "slurm"
    assert slurm_ce.partition


def test_site_name_is_the_file_name(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path, GOOD_CE, "DIRAC.Test.org"))
    assert site.name == "DIRAC.Test.org"
    assert site.ce("CERN-CE-1").cores_per_slot == 2


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path, GOOD_CE))
    ce = site.ces[0]
    assert (ce.tags, ce.required_tags, ce.partition) == ((), (), "")
    assert site.max_pilots_per_cycle >= 1 and site.failure_threshold >= 1


def test_ce_resources_describe_a_pilot_on_it(tmp_path: Path) -> None:
    text = GOOD_CE + 'memory_mb = 4000\nmax_cpu_time = 3600\nplatform = "P"\ntags = ["GPU"]\n'
    ce = load_site(write_site(tmp_path, text)).ces[0]
    assert ce.resources("LCG.CERN.cern") == PilotResources(
        site="LCG.CERN.cern",
        ce="CERN-CE-1",
        platform="P",
        cores=2,
        memory_mb=4000,
        cpu_time_left=3600,
        tags=["GPU"],
        required_tags=[],
    )


def test_unknown_ce_name_in_lookup(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path, GOOD_CE))
    with pytest.raises(ConfigError, match="unknown CE 'nope'"):
        site.ce("nope")


# -- bad files ---------------------------------------------------------------------------------


def test_unknown_fabric_names_ce_and_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE.replace('"local"', '"pbs"'))
    assert message.endswith(
        "ce.CERN-CE-1.fabric: unknown fabric 'pbs' (known: local, simulated, slurm)"
    )


def test_ce_without_cores(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE.replace("cores_per_slot = 2\n", ""))
    assert "ce.CERN-CE-1.cores_per_slot: missing" in message


@pytest.mark.parametrize("cores", [0, -4])
def test_ce_with_too_few_cores(tmp_path: Path, cores: int) -> None:
    message = load_error(tmp_path, GOOD_CE.replace("= 2", f"= {cores}"))
    assert "ce.CERN-CE-1.cores_per_slot: must be at least 1" in message


def test_ce_without_fabric(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE.replace('fabric = "local"\n', ""))
    assert "ce.CERN-CE-1.fabric: missing" in message


def test_duplicate_ce_names(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE + GOOD_CE)
    assert message.endswith("ce.CERN-CE-1: duplicate CE name")


def test_duplicate_ce_names_differing_in_case(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE + GOOD_CE.replace("CERN-CE-1", "cern-ce-1"))
    assert "ce.cern-ce-1: duplicate CE name" in message


@pytest.mark.parametrize("text", ["max_pilots_per_cycle = 5\n", "max_pilots_per_cycle = 5\n[ce]\n"])
def test_site_without_ce(tmp_path: Path, text: str) -> None:
    assert "ce: no CE defined" in load_error(tmp_path, text)


def test_unknown_key_in_ce(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE + "max_queue = 3\n")
    assert message.endswith("ce.CERN-CE-1.max_queue: unknown key")


def test_unknown_key_at_site_level(tmp_path: Path) -> None:
    message = load_error(tmp_path, "cycle_second = 5\n" + GOOD_CE)
    assert message.endswith("cycle_second: unknown key")


def test_name_is_not_a_site_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'name = "Other"\n' + GOOD_CE)
    assert message.endswith("name: unknown key")


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE.replace("= 2", '= "two"'))
    assert "ce.CERN-CE-1.cores_per_slot: expected int" in message


def test_tags_must_be_a_list_of_strings(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE + 'tags = "GPU"\n')
    assert "ce.CERN-CE-1.tags: expected a list of strings" in message


def test_partition_only_for_slurm(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE + 'partition = "grid"\n')
    assert "ce.CERN-CE-1.partition: only for the slurm fabric" in message


def test_negative_limit(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_CE + "max_queued = -1\n")
    assert "ce.CERN-CE-1.max_queued: must not be negative" in message


def test_backoff_cap_below_backoff(tmp_path: Path) -> None:
    text = "backoff_seconds = 600.0\nmax_backoff_seconds = 60.0\n" + GOOD_CE
    assert "max_backoff_seconds: must be at least backoff_seconds" in load_error(tmp_path, text)


def test_not_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in load_error(tmp_path, "[ce.X\n")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match="cannot read site file"):
        load_site(tmp_path / "nope.toml")
    with pytest.raises(SiteConfigError, match="does not exist"):
        load_sites(tmp_path / "nope")


def test_load_sites_names_the_bad_file(tmp_path: Path) -> None:
    write_site(tmp_path, GOOD_CE, "A.good.org")
    bad = write_site(tmp_path, GOOD_CE.replace('"local"', '"pbs"'), "B.bad.org")
    with pytest.raises(SiteConfigError, match=re.escape(str(bad))):
        load_sites(tmp_path)
