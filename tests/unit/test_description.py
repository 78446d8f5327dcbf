"""Job descriptions: attribute names, validation, defaults, requirements, parametric expansion."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.description import (
    DescriptionLimits,
    JobDescription,
    ParsedDescriptions,
    description_from_stored,
    parse_descriptions,
    parse_job_descriptions,
    payload_environment,
    to_jdl,
    with_job_id,
)
from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import parse_jdl
from dirac_like.model import Requirements

DEFAULT_LIMITS = DescriptionLimits()


def one(source: str | dict[str, Any], limits: DescriptionLimits = DEFAULT_LIMITS) -> JobDescription:
    jobs = parse_descriptions(source, limits)
    assert len(jobs) == 1
    return jobs[0]


def parsed(source: str | dict[str, Any]) -> ParsedDescriptions:
    return parse_job_descriptions(source, DEFAULT_LIMITS)


def warnings_of(source: str | dict[str, Any]) -> list[str]:
    return [str(warning) for warning in parsed(source).warnings]


def error_of(
    source: str | dict[str, Any], limits: DescriptionLimits = DEFAULT_LIMITS
) -> InvalidJobDescription:
    with pytest.raises(InvalidJobDescription) as caught:
        parse_descriptions(source, limits)
    return caught.value


FULL_JDL = """[
    Executable = "run.sh";
    Arguments = "-n 5";
    JobName = "analysis";
    JobGroup = "group1";
    JobType = "MCSimulation";
    Priority = 7;
    CPUTime = 3600;
    Site = { "LCG.CERN.cern", "LCG.IN2P3.fr" };
    BannedSites = "LCG.IN2P3.fr";
    Platform = "x86_64-el9";
    Tags = { "GPU", "8Processors" };
    NumberOfProcessors = 8;
    MaxRAM = 4096;
    InputSandbox = { "run.sh", "config.json" };
    OutputSandbox = { "std.out", "result.root" };
    StdOutput = "out.txt";
    StdError = "err.txt";
    InputData = { "/vo/data/f1" };
    InputDataPolicy = "DIRAC.WorkloadManagementSystem.Client.DownloadInputData";
    OutputPath = { "/myjobs/output" };
    LogLevel = "debug";
    GridCE = { "ce1.cern.ch", "ce2.cern.ch" };
    ExecutionEnvironment = { "MY_VAR=1", "OTHER=a=b" };
    StdInput = "in.txt";
    OutputData = "/vo/user/out.root";
    OutputSE = "CERN-USER";
]"""


# --- attributes and defaults ----------------------------------------------------------------------


def test_every_attribute_reaches_its_field() -> None:
    job = one(FULL_JDL)
    assert (job.executable, job.arguments, job.job_name, job.job_group, job.job_type) == (
        "run.sh", "-n 5", "analysis", "group1", "MCSimulation")  # fmt: skip
    assert (job.priority, job.cpu_time, job.number_of_processors, job.max_ram_mb) == (
        7, 3600, 8, 4096)  # fmt: skip
    assert (job.max_processors, job.smp_granularity, job.log_level) == (8, 1, "DEBUG")
    assert job.sites == ("LCG.CERN.cern", "LCG.IN2P3.fr")
    assert job.banned_sites == ("LCG.IN2P3.fr",)
    assert job.grid_ces == ("ce1.cern.ch", "ce2.cern.ch")
    assert job.platforms == ("x86_64-el9",)
    assert job.tags == ("GPU", "8Processors")
    assert job.input_sandbox == ("run.sh", "config.json")
    assert job.output_sandbox == ("std.out", "result.root")
    assert (job.std_input, job.std_output, job.std_error) == ("in.txt", "out.txt", "err.txt")
    assert job.input_data == ("LFN:/vo/data/f1",)  # DIRAC adds the LFN: prefix
    assert job.input_data_policy.endswith("DownloadInputData")
    assert job.output_data == ("/vo/user/out.root",)
    assert (job.output_se, job.output_path) == (("CERN-USER",), "/myjobs/output")
    assert job.execution_environment == ("MY_VAR=1", "OTHER=a=b")


def test_defaults_and_stored_attributes() -> None:
    job = one({"Executable": "x"}, DescriptionLimits(default_cpu_time=1234))
    assert (job.job_type, job.priority, job.cpu_time, job.number_of_processors) == (
        "User", 1, 1234, 1)  # fmt: skip
    assert (job.std_output, job.std_error, job.max_ram_mb, job.sites, job.log_level) == (
        "std.out", "std.err", 0, (), "INFO")  # fmt: skip
    assert job.attributes == {
        "Executable": "x",
        "JobType": "User",
        "Priority": 1,
        "CPUTime": 1234,
        "NumberOfProcessors": 1,
        "StdOutput": "std.out",
        "StdError": "std.err",
    }


def test_names_are_case_insensitive_and_stored_in_dirac_spelling() -> None:
    job = one('executable = "x"; cputime = 60; SITE = "A"; bannedsite = "B"; tag = "T";')
    assert job.cpu_time == 60 and job.sites == ("A",) and job.banned_sites == ("B",)
    assert job.tags == ("T",)
    assert {"Executable", "CPUTime", "Site", "BannedSites", "Tags"} <= set(job.attributes)
    assert "cputime" not in job.attributes and "tag" not in job.attributes


def test_same_attribute_twice_last_wins_with_a_warning() -> None:
    result = parsed('Executable = "x";\nTag = "a";\nTags = "b";')
    assert result.descriptions[0].tags == ("b",)
    (warning,) = result.warnings
    assert (warning.attribute, warning.line) == ("Tags", 3) and "given twice" in str(warning)
    result = parsed({"Executable": "x", "priority": 1, "PRIORITY": 2})
    assert result.descriptions[0].priority == 2
    assert [w.attribute for w in result.warnings] == ["PRIORITY"]


def test_list_attributes_take_a_list_or_a_string_split_at_commas() -> None:
    job = one({"Executable": "x", "InputSandbox": "a.txt, b.txt", "Tags": ["a", " b ", ""]})
    assert job.input_sandbox == ("a.txt", "b.txt")  # DIRAC's getListFromExpression splits
    assert job.tags == ("a", "b")  # stripped, empty items dropped
    assert job.attributes["InputSandbox"] == ["a.txt", "b.txt"]


def test_integers_may_be_quoted_but_not_words() -> None:
    job = one('Executable = "x"; CPUTime = "3600"; Priority = " 4 ";')
    assert (job.cpu_time, job.priority) == (3600, 4)
    assert job.attributes["CPUTime"] == 3600  # stored as the number it means
    error = error_of('Executable = "x";\nCPUTime = "1h";')
    assert (error.attribute, error.line) == ("CPUTime", 2)
    assert "must be an integer" in str(error)


@pytest.mark.parametrize("attribute", ["Priority", "CPUTime", "NumberOfProcessors", "MaxRAM"])
@pytest.mark.parametrize("value", [True, 1.5, [1], {"a": 1}])
def test_integer_attributes_refuse_other_types(attribute: str, value: Any) -> None:
    error = error_of({"Executable": "x", attribute: value})
    assert error.attribute == attribute and "must be an integer" in str(error)


@pytest.mark.parametrize("value", [True, ["a", "b"], {"a": 1}])
def test_string_attributes_refuse_other_types(value: Any) -> None:
    error = error_of({"Executable": "x", "JobName": value})
    assert error.attribute == "JobName" and "must be a string" in str(error)


def test_numbers_in_string_attributes_become_strings_and_one_item_lists_their_item() -> None:
    job = one({"Executable": "x", "Arguments": 42, "JobGroup": 1.5, "OutputPath": ["/a"]})
    assert (job.arguments, job.job_group, job.output_path) == ("42", "1.5", "/a")


def test_list_items_must_be_strings() -> None:
    error = error_of({"Executable": "x", "Site": ["A", {"b": 1}]})
    assert error.attribute == "Site" and "must be strings" in str(error)


def test_unknown_attributes_are_kept_and_written_back() -> None:
    text = 'Executable = "x";\nOrigin = "DIRAC";\nRequirements = other.Ram > 2;\nOpts = [ A = 1 ];'
    job = one(text)
    assert job.attributes["Origin"] == "DIRAC" and job.attributes["Opts"] == {"A": 1}
    assert job.attributes["Requirements"] == "other.Ram > 2"  # kept as text, not evaluated
    rendered = to_jdl(job)
    assert 'Requirements = "other.Ram > 2";' in rendered
    assert parse_descriptions(rendered)[0] == job
    msgpack.packb(job.attributes)  # storable as it is


def test_unknown_attribute_names_must_be_jdl_names() -> None:
    error = error_of({"Executable": "x", "not a name": 1})
    assert error.attribute == "not a name" and "not a valid attribute name" in str(error)


@pytest.mark.parametrize(
    "attribute",
    ["Owner", "OwnerGroup", "OwnerDN", "VirtualOrganization", "JobID", "Status",
     "ParameterNumber", "Parameter.A", "DIRACSetup"],
)  # fmt: skip
def test_server_set_attributes_are_ignored_with_a_warning(attribute: str) -> None:
    result = parsed(f'Executable = "x";\n{attribute} = "forged";')
    assert attribute not in result.descriptions[0].attributes
    (warning,) = result.warnings
    assert (warning.attribute, warning.line) == (attribute, 2)
    assert "set by the server" in str(warning)


def test_mapping_and_jdl_give_the_same_job() -> None:
    from_jdl = one(FULL_JDL)
    assert one(parse_jdl(FULL_JDL).attributes) == from_jdl


def test_bad_sources_are_refused() -> None:
    for source in (None, 3, ["Executable"], b"Executable = 1;"):
        with pytest.raises(InvalidJobDescription):
            parse_descriptions(source)  # type: ignore[arg-type]
    assert "empty" in str(error_of({}))
    assert error_of({1: "x"}).attribute is None  # type: ignore[dict-item]


def test_executable_is_required_and_not_empty() -> None:
    assert error_of('JobName = "x";').attribute == "Executable"
    error = error_of('Executable = "  ";')
    assert (error.attribute, error.line) == ("Executable", 1)


@pytest.mark.parametrize(
    "attribute, bad, good",
    [
        ("Priority", [-1, 11], [0, 10]),
        ("CPUTime", [0, 7201], [1, 7200]),
        ("NumberOfProcessors", [0, 17], [1, 16]),
        ("MinNumberOfProcessors", [0, 17], [1, 16]),
        ("MaxNumberOfProcessors", [0, 17], [1, 16]),
        ("SmpGranularity", [0, 17], [1, 16]),
        ("MaxRAM", [0, 2**40 + 1], [1, 2**40]),
    ],
)
def test_integer_ranges(attribute: str, bad: list[int], good: list[int]) -> None:
    limits = DescriptionLimits(max_processors=16, max_cpu_time=7200)
    for value in bad:
        error = error_of(f'Executable = "x";\n{attribute} = {value};', limits)
        assert (error.attribute, error.line) == (attribute, 2)
    for value in good:
        one({"Executable": "x", attribute: value}, limits)


def test_processor_range_and_granularity() -> None:
    job = one(
        'Executable = "x"; MinNumberOfProcessors = 2; MaxNumberOfProcessors = 8; '
        "SmpGranularity = 2;"
    )
    assert (job.number_of_processors, job.max_processors, job.smp_granularity) == (2, 8, 2)
    requirements = job.requirements()
    assert (requirements.cores, requirements.max_cores, requirements.core_step) == (2, 8, 2)
    assert "NumberOfProcessors" not in job.attributes
    only_min = one('Executable = "x"; MinNumberOfProcessors = 4;')
    assert (only_min.number_of_processors, only_min.max_processors) == (4, 4)
    assert only_min.requirements().max_cores == 0  # a range of one: exactly 4
    only_max = one('Executable = "x"; MaxNumberOfProcessors = 4;')
    assert (only_max.number_of_processors, only_max.max_processors) == (1, 4)


def test_number_of_processors_overrides_the_range_with_a_warning() -> None:
    result = parsed('Executable = "x"; NumberOfProcessors = 3;\nMaxNumberOfProcessors = 8;')
    job = result.descriptions[0]
    assert (job.number_of_processors, job.max_processors) == (3, 3)
    assert "MaxNumberOfProcessors" not in job.attributes
    assert [(w.attribute, w.line) for w in result.warnings] == [("MaxNumberOfProcessors", 2)]


def test_max_processors_below_min_is_refused() -> None:
    error = error_of('Executable = "x"; MinNumberOfProcessors = 4;\nMaxNumberOfProcessors = 2;')
    assert (error.attribute, error.line) == ("MaxNumberOfProcessors", 2)


@pytest.mark.parametrize(
    "line, attribute, message",
    [
        ('JobType = "Hacker";', "JobType", "not allowed"),
        ('LogLevel = "loud";', "LogLevel", "not one of"),
        ('StdOutput = "logs/out";', "StdOutput", "plain file name"),
        ('StdInput = "../in";', "StdInput", "plain file name"),
        ('InputData = { "data/f1" };', "InputData", "must be LFNs"),
        ('InputData = { "LFN://vo/f1" };', "InputData", "must be LFNs"),
        ('InputSandbox = { "LFN:vo/f1" };', "InputSandbox", "LFN:/"),
        ('ExecutionEnvironment = { "NOEQUALS" };', "ExecutionEnvironment", "NAME=value"),
        ('ExecutionEnvironment = { "1BAD=x" };', "ExecutionEnvironment", "NAME=value"),
    ],
)
def test_values_dirac_refuses(line: str, attribute: str, message: str) -> None:
    error = error_of(f'Executable = "x";\n{line}')
    assert (error.attribute, error.line) == (attribute, 2) and message in str(error)


def test_input_data_limit_and_lfn_entries_kept() -> None:
    files = ", ".join(f'"/vo/f{i}"' for i in range(3))
    error = error_of(
        f'Executable = "x"; InputData = {{ {files} }};', DescriptionLimits(max_input_data=2)
    )
    assert "more than the limit of 2" in str(error)
    job = one('Executable = "x"; InputSandbox = { "a.sh", "LFN:/vo/b.tgz" };')
    assert job.input_sandbox == ("a.sh", "LFN:/vo/b.tgz")


def test_every_site_banned_is_an_error() -> None:
    error = error_of('Executable = "x";\nSite = { "A", "B" };\nBannedSites = { "A", "B" };')
    assert (error.attribute, error.line) == ("Site", 2)
    assert one('Executable = "x"; Site = "A"; BannedSites = "B";').sites == ("A",)


def test_site_any_means_any_site() -> None:
    job = one('Executable = "x"; Site = "ANY";')
    assert job.sites == () and job.attributes["Site"] == ["ANY"]


def test_requirements_carry_every_matching_field() -> None:
    job = one(FULL_JDL)
    assert job.requirements() == Requirements(
        sites=("LCG.CERN.cern", "LCG.IN2P3.fr"),
        banned_sites=("LCG.IN2P3.fr",),
        platforms=("x86_64-el9",),
        cores=8,
        max_ram_mb=4096,
        cpu_time=3600,
        tags=("8Processors", "GPU"),
        ces=("ce1.cern.ch", "ce2.cern.ch"),
    )


def test_equal_requirements_compare_equal_whatever_the_order() -> None:
    a = one('Executable = "x"; Site = { "B", "A", "A" }; Tags = { "y", "x" };')
    b = one('Executable = "y"; Site = { "A", "B" }; Tags = { "x", "y" };')
    assert a.requirements() == b.requirements()


# --- ranges and size -------------------------------------------------------------------------


def test_integers_beyond_64_bits_are_refused_in_mappings_too() -> None:
    error = error_of({"Executable": "x", "Parameters": [1, 18446744073709551616]})
    assert error.attribute == "Parameters" and "64 bits" in str(error)
    error = error_of({"Executable": "x", "Extra": {"Deep": [2**63]}})
    assert error.attribute == "Extra"
    error = error_of('Executable = "x";\nParameters = { 18446744073709551616 };')
    assert (error.attribute, error.line, error.code) == ("Parameters", 2, "invalid_jdl")


def test_values_that_cannot_be_stored_are_refused() -> None:
    for value in (None, float("nan"), b"x", {1: "a"}):
        error = error_of({"Executable": "x", "Extra": value})
        assert error.attribute == "Extra"


def test_descriptions_larger_than_the_cap_are_refused() -> None:
    big = "x" * (256 * 1024)
    assert "longer than the limit" in str(error_of(f'Executable = "{big}";'))
    assert "larger than the limit" in str(error_of({"Executable": "x", "Extra": big}))


# --- effects: environment, job id ------------------------------------------------------------


def test_payload_environment_from_execution_environment_and_cores() -> None:
    job = one(FULL_JDL)
    assert payload_environment(job.attributes, 6) == {
        "MY_VAR": "1", "OTHER": "a=b", "DIRAC_JOB_PROCESSORS": "6"}  # fmt: skip
    assert payload_environment({"Executable": "x"}, 1) == {"DIRAC_JOB_PROCESSORS": "1"}


def test_job_id_placeholder_is_replaced_once_the_id_is_known() -> None:
    job = one('Executable = "x"; Arguments = "--id %j"; OutputSandbox = { "out_%j.txt" };')
    assert job.arguments == "--id %j"  # not known at parse time
    numbered = with_job_id(job, 42)
    assert numbered.arguments == "--id 42" and numbered.output_sandbox == ("out_42.txt",)
    plain = one('Executable = "x";')
    assert with_job_id(plain, 42) is plain
    jobs = parse_descriptions('Executable = "x"; Arguments = "%s"; Parameters = { "a%j", "b" };')
    assert [with_job_id(job, 7).arguments for job in jobs] == ["a7", "b"]
    assert [job.holds_job_id for job in jobs] == [True, False]


# --- stored jobs -----------------------------------------------------------------------------


def test_stored_attributes_rebuild_the_same_job() -> None:
    jobs = parse_descriptions('Executable = "x"; Arguments = "%s"; Site = "A"; Parameters = 2;')
    for job in jobs:
        stored = dict(job.attributes, Owner="alice", OwnerGroup="users", JobID=12, Status="Waiting")
        rebuilt = description_from_stored(stored)
        assert rebuilt.arguments == job.arguments and rebuilt.sites == job.sites
        assert rebuilt.requirements() == job.requirements()
        assert rebuilt.attributes["ParameterNumber"] == job.attributes["ParameterNumber"]
        assert rebuilt.attributes["Owner"] == "alice"


def test_stored_attributes_are_not_held_to_submission_limits_nor_expanded() -> None:
    stored = {"Executable": "x", "CPUTime": 10**9, "NumberOfProcessors": 5000}
    assert description_from_stored(stored).cpu_time == 10**9
    rebuilt = description_from_stored({"Executable": "x", "Arguments": "%s", "Parameters": 3})
    assert rebuilt.arguments == "%s" and rebuilt.attributes["Parameters"] == 3


# --- properties -----------------------------------------------------------------------------------

jdl_names = st.from_regex(r"X[A-Za-z0-9_]{0,8}", fullmatch=True)
plain_text = st.text(
    st.characters(blacklist_characters="%\x00", blacklist_categories=("Cs",)), max_size=12
)
unknown_values = st.recursive(
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | plain_text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)
descriptions = st.fixed_dictionaries(
    {"Executable": plain_text.filter(str.strip)},
    optional={
        "Arguments": plain_text,
        "JobName": plain_text,
        "Priority": st.integers(0, 10),
        "CPUTime": st.integers(1, 100_000),
        "Site": st.lists(st.sampled_from(["A", "B", "C"]), max_size=2),
        "Tags": st.lists(st.sampled_from(["GPU", "x"]), max_size=2),
        "MinNumberOfProcessors": st.integers(1, 4),
        "SmpGranularity": st.integers(1, 4),
        "InputData": st.lists(st.from_regex(r"/vo/[a-z]{1,5}", fullmatch=True), max_size=3),
        "ExecutionEnvironment": st.lists(
            st.from_regex(r"[A-Z]{1,4}=[a-z0-9]{0,4}", fullmatch=True), max_size=2
        ),
        "LogLevel": st.sampled_from(["DEBUG", "info"]),
        "GridCE": st.lists(st.sampled_from(["ce1", "ce2"]), max_size=2),
    },
).flatmap(
    lambda known: st.dictionaries(jdl_names, unknown_values, max_size=3).map(
        lambda unknown: {**unknown, **known}
    )
)


@given(descriptions)
def test_description_to_jdl_text_and_back_is_the_same_description(source: dict[str, Any]) -> None:
    job = one(source)
    text = to_jdl(job)
    assert one(text) == job
    assert description_from_stored(parse_jdl(text).attributes) == job


attribute_names = st.sampled_from(
    [
        "Executable", "Arguments", "JobName", "Priority", "CPUTime", "Site", "BannedSites",
        "Tags", "NumberOfProcessors", "MaxRAM", "InputSandbox", "Parameters", "ParameterStart",
        "ParameterStep", "ParameterFactor", "Parameters.A", "ParameterStart.A", "Owner", "Foo",
        "MinNumberOfProcessors", "MaxNumberOfProcessors", "InputData", "ExecutionEnvironment",
    ]
)  # fmt: skip
any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats()
    | st.text(alphabet="%sn()A ab1/", max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@given(st.dictionaries(attribute_names, any_values, max_size=8))
def test_any_mapping_gives_jobs_or_invalid_job_description(source: dict[str, Any]) -> None:
    try:
        jobs = parse_descriptions(source, DescriptionLimits(max_parametric_jobs=1000))
    except InvalidJobDescription as error:
        assert error.attribute is None or isinstance(error.attribute, str)
    else:
        assert 1 <= len(jobs) <= 1000
        assert all(job.executable.strip() for job in jobs)
