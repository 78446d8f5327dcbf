"""Every JDL of the corpus (tests/data/jdl, sources in its index.toml) gets DIRAC's outcome, as a
JDL file and in its JSON form; and every accepted one survives to_jdl and back, and the store."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from dirac_like.description import (
    DescriptionLimits,
    ParsedDescriptions,
    description_from_stored,
    parse_job_descriptions,
    to_jdl,
)
from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import Expression, Placeholder, parse_jdl

CORPUS = Path(__file__).parent.parent / "data" / "jdl"
INDEX: list[dict[str, Any]] = tomllib.loads((CORPUS / "index.toml").read_text())["entry"]
LIMITS = DescriptionLimits()  # the service's defaults


def test_the_index_and_the_files_agree() -> None:
    assert sorted(entry["file"] for entry in INDEX) == sorted(p.name for p in CORPUS.glob("*.jdl"))
    for entry in INDEX:
        assert entry["source"] and entry["dirac"] in ("accepted", "refused")
        assert ("ours" in entry) <= ("note" in entry), f"{entry['file']}: explain the difference"


def expected_outcome(entry: dict[str, Any]) -> str:
    outcome: str = entry.get("ours", entry["dirac"])
    return outcome


def as_json(source: str) -> dict[str, Any]:
    """The JSON form of a JDL: its attributes as a JSON object (bare words as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Placeholder | Expression):
            return value.text
        if isinstance(value, list):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {name: plain(item) for name, item in value.items()}
        return value

    attributes = {name: plain(value) for name, value in parse_jdl(source).attributes.items()}
    loaded: dict[str, Any] = json.loads(json.dumps(attributes))
    return loaded


def check_accepted(entry: dict[str, Any], parsed: ParsedDescriptions) -> None:
    jobs = parsed.descriptions
    assert len(jobs) == entry["jobs"]
    assert [warning.attribute for warning in parsed.warnings] == entry["warnings"]
    for expected in entry.get("job", []):
        attributes = jobs[expected["number"]].attributes
        for name, value in expected["attributes"].items():
            assert attributes.get(name) == value, (expected["number"], name)


@pytest.mark.parametrize("entry", INDEX, ids=[entry["file"] for entry in INDEX])
def test_corpus_file_gets_diracs_outcome(entry: dict[str, Any]) -> None:
    text = (CORPUS / entry["file"]).read_text()
    if expected_outcome(entry) == "accepted":
        check_accepted(entry, parse_job_descriptions(text, LIMITS))
        return
    with pytest.raises(InvalidJobDescription) as caught:
        parse_job_descriptions(text, LIMITS)
    error = caught.value
    assert entry["message"] in str(error)
    assert (error.attribute, error.line) == (entry.get("attribute"), entry["line"])


@pytest.mark.parametrize("entry", INDEX, ids=[entry["file"] for entry in INDEX])
def test_corpus_file_in_json_form_gets_the_same_outcome(entry: dict[str, Any]) -> None:
    text = (CORPUS / entry["file"]).read_text()
    try:
        source = as_json(text)
    except InvalidJobDescription:
        assert expected_outcome(entry) == "refused"  # no JSON form of a syntax error
        return
    if expected_outcome(entry) == "accepted":
        from_json = parse_job_descriptions(source, LIMITS)
        check_accepted(entry, from_json)
        return
    with pytest.raises(InvalidJobDescription) as caught:
        parse_job_descriptions(source, LIMITS)
    assert caught.value.attribute == entry.get("attribute")


@pytest.mark.parametrize(
    "entry",
    [e for e in INDEX if expected_outcome(e) == "accepted"],
    ids=lambda entry: entry["file"],
)
def test_accepted_corpus_jobs_survive_to_jdl_and_back(entry: dict[str, Any]) -> None:
    jobs = parse_job_descriptions((CORPUS / entry["file"]).read_text(), LIMITS).descriptions
    for job in jobs:
        assert description_from_stored(parse_jdl(to_jdl(job)).attributes) == job
        assert msgpack.unpackb(msgpack.packb(job.attributes)) == job.attributes  # storable
