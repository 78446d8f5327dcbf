"""Job descriptions: attribute names, validation, defaults, requirements, parametric expansion."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.description import (
    DescriptionLimits,
    JobDescription,
    description_from_stored,
    parse_descriptions,
)
from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import format_jdl
from dirac_like.model import Requirements

DEFAULT_LIMITS = DescriptionLimits()


def one(source: str | dict[str, Any], limits: DescriptionLimits = DEFAULT_LIMITS) -> JobDescription:
    jobs = parse_descriptions(source, limits)
    assert len(jobs) == 1
    return jobs[0]


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
    OutputData = "/vo/user/out.root";
    OutputSE = "CERN-USER";
]"""


# --- attributes and defaults ----------------------------------------------------------------------


def test_every_attribute_reaches_its_field() -> None:
    job = one(FULL_JDL)
    assert (job.executable, job.arguments, job.job_name, job.job_group, job.job_type) == (
        "run.sh", "-n 5", "analysis", "group1", "MCSimulation")  # fmt: skip
    assert (job.priority, job.cpu_time, job.number_of_processors, job.max_ram_mb) == (
        7,
        3600,
        8,
        4096,
    )
    assert job.sites == ("LCG.CERN.cern", "LCG.IN2P3.fr")
    assert job.banned_sites == ("LCG.IN2P3.fr",)
    assert job.platforms == ("x86_64-el9",)
    assert job.tags == ("GPU", "8Processors")
    assert job.input_sandbox == ("run.sh", "config.json")
    assert job.output_sandbox == ("std.out", "result.root")
    assert (job.std_output, job.std_error) == ("out.txt", "err.txt")
    assert job.input_data == ("/vo/data/f1",)
    assert job.output_data == ("/vo/user/out.root",)
    assert job.output_se == ("CERN-USER",)


def test_defaults_and_stored_attributes() -> None:
    job = one({"Executable": "x"}, DescriptionLimits(default_cpu_time=1234))
    assert (job.job_type, job.priority, job.cpu_time, job.number_of_processors) == (
        "User",
        1,
        1234,
        1,
    )
    assert (job.std_output, job.std_error, job.max_ram_mb, job.sites) == (
        "std.out",
        "std.err",
        0,
        (),
    )
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


def test_same_attribute_under_two_spellings_is_an_error() -> None:
    error = error_of('Executable = "x";\nTag = "a";\nTags = "b";')
    assert (error.attribute, error.line) == ("Tags", 3)
    assert "given twice" in str(error)
    error = error_of({"Executable": "x", "priority": 1, "PRIORITY": 2})
    assert error.attribute == "PRIORITY" and error.line is None


def test_list_attributes_take_a_string_or_a_list() -> None:
    job = one({"Executable": "x", "InputSandbox": "a.txt, b.txt", "Tags": ["a", " b ", ""]})
    assert job.input_sandbox == ("a.txt, b.txt",)  # one item: commas do not split
    assert job.tags == ("a", "b")  # stripped, empty items dropped
    assert job.attributes["InputSandbox"] == ["a.txt, b.txt"]


def test_integers_may_be_quoted_but_not_words() -> None:
    assert one('Executable = "x"; Priority = "3"; CPUTime = "600";').priority == 3
    error = error_of('Executable = "x";\nPriority = "high";')
    assert (error.attribute, error.line) == ("Priority", 2)
    assert "Priority must be an integer, found string 'high'" in str(error)


@pytest.mark.parametrize(
    "attribute, value",
    [("Priority", True), ("CPUTime", 1.5), ("MaxRAM", [1]), ("NumberOfProcessors", {"a": 1})],
)
def test_integer_attributes_refuse_other_types(attribute: str, value: Any) -> None:
    error = error_of({"Executable": "x", attribute: value})
    assert error.attribute == attribute and "must be an integer" in str(error)


@pytest.mark.parametrize("value", [True, ["a"], {"k": 1}])
def test_string_attributes_refuse_other_types(value: Any) -> None:
    error = error_of({"Executable": "x", "JobName": value})
    assert error.attribute == "JobName" and "must be a string" in str(error)


def test_numbers_in_string_attributes_become_strings() -> None:
    job = one("Executable = x; JobGroup = 1234; Tags = { 8, GPU };")
    assert job.job_group == "1234" and job.tags == ("8", "GPU")


def test_list_items_must_be_strings() -> None:
    error = error_of('Executable = "x";\nSite = { "A", { "B" } };')
    assert (error.attribute, error.line) == ("Site", 2) and "must be strings" in str(error)


def test_unknown_attribute_is_named_with_its_line() -> None:
    error = error_of('Executable = "x";\nFoo = 1;')
    assert (error.attribute, error.line) == ("Foo", 2)
    assert "unknown attribute Foo" in str(error)


@pytest.mark.parametrize(
    "attribute", ["Owner", "OwnerGroup", "JobID", "Status", "ParameterIndex", "Parameter.A"]
)
def test_server_set_attributes_are_refused_in_a_submission(attribute: str) -> None:
    error = error_of(f'Executable = "x";\n{attribute} = "v";')
    assert (error.attribute, error.line) == (attribute, 2)
    assert "set by the server" in str(error)


def test_mapping_and_jdl_give_the_same_job() -> None:
    mapping = {"Executable": "x", "Site": ["A"], "Priority": 2, "Arguments": "a b"}
    assert one(mapping) == one(format_jdl(mapping))


def test_bad_sources_are_refused() -> None:
    assert "no attributes" in str(error_of({}))
    assert "mapping" in str(error_of(42))  # type: ignore[arg-type]
    assert "attribute names must be strings" in str(error_of({1: "x"}))  # type: ignore[dict-item]


# --- validation -----------------------------------------------------------------------------------


def test_executable_is_required() -> None:
    error = error_of('JobName = "x";')
    assert error.attribute == "Executable" and "required" in str(error)


def test_executable_must_not_be_empty() -> None:
    error = error_of('JobName = "n";\nExecutable = "  ";')
    assert (error.attribute, error.line) == ("Executable", 2)


@pytest.mark.parametrize(
    "attribute, bad, good",
    [
        ("Priority", [-1, 11], [0, 10]),
        ("CPUTime", [0, 7201], [1, 7200]),
        ("NumberOfProcessors", [0, 17], [1, 16]),
        ("MaxRAM", [0, -5], [1, 10**6]),
    ],
)
def test_integer_ranges(attribute: str, bad: list[int], good: list[int]) -> None:
    limits = DescriptionLimits(max_cpu_time=7200, max_processors=16)
    for value in bad:
        error = error_of(f'Executable = "x";\n{attribute} = {value};', limits)
        assert (error.attribute, error.line) == (attribute, 2)
        assert "must be" in str(error)
    for value in good:
        assert one({"Executable": "x", attribute: value}, limits).attributes[attribute] == value


def test_every_site_banned_is_an_error() -> None:
    error = error_of('Executable = "x";\nSite = { "A", "B" };\nBannedSites = { "B", "A", "C" };')
    assert (error.attribute, error.line) == ("Site", 2)
    assert "every site in Site is banned" in str(error)
    assert one({"Executable": "x", "Site": ["A", "B"], "BannedSites": ["A"]}).sites == ("A", "B")
    assert one({"Executable": "x", "BannedSites": ["A"]}).banned_sites == ("A",)


def test_site_any_means_any_site() -> None:
    job = one({"Executable": "x", "Site": "ANY", "BannedSites": "ANY"})
    assert job.sites == () and job.requirements().sites == ()
    assert job.attributes["Site"] == ["ANY"]


# --- requirements ---------------------------------------------------------------------------------


def test_requirements_carry_every_matching_field() -> None:
    assert one(FULL_JDL).requirements() == Requirements(
        sites=("LCG.CERN.cern", "LCG.IN2P3.fr"),
        banned_sites=("LCG.IN2P3.fr",),
        platforms=("x86_64-el9",),
        cores=8,
        max_ram_mb=4096,
        cpu_time=3600,
        tags=("8Processors", "GPU"),
    )


def test_equal_requirements_compare_equal_whatever_the_order() -> None:
    first = one(
        'Executable = "a"; Site = { "B", "A" }; Tags = { "y", "x" }; Platform = { "p", "q" };'
    )
    second = one(
        'Executable = "b"; Site = { "A", "B", "A" }; Tags = { "x", "y" }; Platform = { "q", "p" };'
    )
    assert first != second
    assert first.requirements() == second.requirements()
    assert hash(first.requirements()) == hash(second.requirements())
    assert first.requirements() != one('Executable = "a"; Site = "A";').requirements()


# --- parametric jobs ------------------------------------------------------------------------------


def test_count_alone_gives_zero_to_n_minus_one() -> None:
    jobs = parse_descriptions('Executable = "x"; Arguments = "%s"; Parameters = 4;')
    assert [job.arguments for job in jobs] == ["0", "1", "2", "3"]
    assert [job.attributes["Parameter"] for job in jobs] == [0, 1, 2, 3]
    assert [job.attributes["ParameterIndex"] for job in jobs] == [0, 1, 2, 3]
    assert all("Parameters" not in job.attributes for job in jobs)


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("ParameterStart = 10;", [10, 11, 12, 13]),
        ("ParameterStart = 10; ParameterStep = 5;", [10, 15, 20, 25]),
        ("ParameterStart = 1; ParameterFactor = 2;", [1, 2, 4, 8]),
        ("ParameterStart = 1; ParameterStep = 1; ParameterFactor = 3;", [1, 4, 13, 40]),
        ("ParameterStart = 0.5; ParameterStep = 0.25;", [0.5, 0.75, 1.0, 1.25]),
        ("ParameterStep = 0;", [0, 0, 0, 0]),
        ("ParameterStep = 0.5;", [0.0, 0.5, 1.0, 1.5]),
    ],
)
def test_count_with_start_step_factor(extra: str, expected: list[Any]) -> None:
    jobs = parse_descriptions(f'Executable = "x"; Parameters = 4; {extra}')
    assert [job.attributes["Parameter"] for job in jobs] == expected


def test_list_of_values() -> None:
    jobs = parse_descriptions(
        'Executable = "x"; Arguments = "--in %s"; Parameters = { "a", "b", 7 };'
    )
    assert [job.arguments for job in jobs] == ["--in a", "--in b", "--in 7"]
    assert [job.attributes["Parameter"] for job in jobs] == ["a", "b", 7]


def test_named_vectors() -> None:
    text = """
    Executable = "x";
    Arguments = "%(A)s %(b)s %n";
    Parameters.A = { 1, 2, 3 };
    Parameters.B = 3; ParameterStart.B = 10; ParameterStep.B = 5;
    """
    jobs = parse_descriptions(text)
    assert [job.arguments for job in jobs] == ["1 10 0", "2 15 1", "3 20 2"]
    assert jobs[2].attributes["Parameter.A"] == 3 and jobs[2].attributes["Parameter.B"] == 20
    assert not any(name.startswith("Parameters") for name in jobs[0].attributes)


def test_unnamed_and_named_vectors_together() -> None:
    jobs = parse_descriptions(
        'Executable = "x"; Arguments = "%s-%(k)s"; Parameters = 2; Parameters.k = { "a", "b" };'
    )
    assert [job.arguments for job in jobs] == ["0-a", "1-b"]


def test_vectors_of_unequal_length_name_the_mismatch() -> None:
    error = error_of('Executable = "x";\nParameters.A = { 1, 2 };\nParameters.B = { 1, 2, 3 };')
    assert (error.attribute, error.line) == ("Parameters.B", 3)
    assert "Parameters.B has 3 values but Parameters.A has 2" in str(error)


def test_placeholders_everywhere_and_percent_escapes() -> None:
    text = """
    Executable = "run_%s.sh";
    Arguments = "100%% done, %d stays, index %n";
    JobName = "job_%n";
    OutputSandbox = { "out_%s.txt", "std.out", "%(tag)s.log" };
    InputData = "/vo/%s/file";
    Parameters = { "a", "b" };
    Parameters.tag = { "t1", "t2" };
    """
    jobs = parse_descriptions(text)
    second = jobs[1]
    assert second.executable == "run_b.sh"
    assert second.arguments == "100% done, %d stays, index 1"
    assert second.job_name == "job_1"
    assert second.output_sandbox == ("out_b.txt", "std.out", "t2.log")
    assert second.input_data == ("/vo/b/file",)
    assert second.attributes["OutputSandbox"] == ["out_b.txt", "std.out", "t2.log"]
    assert jobs[0].output_sandbox == ("out_a.txt", "std.out", "t1.log")


def test_non_parametric_strings_are_not_substituted() -> None:
    job = one('Executable = "date"; Arguments = "+%s 100%%";')
    assert job.arguments == "+%s 100%%"


def test_unknown_named_placeholder_is_an_error() -> None:
    error = error_of('Executable = "x";\nArguments = "%(nope)s";\nParameters = 2;')
    assert (error.attribute, error.line) == ("Arguments", 2)
    assert "%(nope)s" in str(error)


def test_unnamed_placeholder_without_unnamed_parameters_is_an_error() -> None:
    error = error_of('Executable = "x";\nJobName = "%s";\nParameters.A = 2;')
    assert (error.attribute, error.line) == ("JobName", 2)


def test_sites_are_checked_per_job_when_they_vary() -> None:
    text = 'Executable = "x";\nSite = "%s";\nBannedSites = "B";\nParameters = { "A", "B" };'
    error = error_of(text)
    assert (error.attribute, error.line) == ("Site", 2)
    jobs = parse_descriptions(text.replace('"B" }', '"C" }'))
    assert [job.sites for job in jobs] == [("A",), ("C",)]


def test_executable_empty_after_substitution_is_an_error() -> None:
    error = error_of('Parameters = { "a", "" };\nExecutable = "%s";')
    assert (error.attribute, error.line) == ("Executable", 2)


@pytest.mark.parametrize(
    "text, attribute, line, expected",
    [
        ("Parameters = 0;", "Parameters", 2, "at least one value"),
        ("Parameters = {};", "Parameters", 2, "at least one value"),
        ("Parameters = 1.5;", "Parameters", 2, "a count or a list"),
        ("Parameters = { {1} };", "Parameters", 2, "strings or numbers"),
        ('Parameters = 3;\nParameterStart = "a";', "ParameterStart", 3, "must be a number"),
        ("ParameterStep.A = 2;", "ParameterStep.A", 2, "without Parameters.A"),
        ("Parameters = {1};\nParameterStep = 2;", "ParameterStep", 3, "only applies when"),
        ("Parameters = 100; ParameterStart = 2; ParameterFactor = 10;", "Parameters", 2, "grow"),
        ("Parameters.a-b = 2;", None, 2, "expected"),
    ],
)
def test_parameter_errors(text: str, attribute: str | None, line: int, expected: str) -> None:
    error = error_of('Executable = "x";\n' + text)
    assert expected in str(error)
    assert (error.attribute, error.line) == (attribute, line)


def test_parameter_name_is_checked_in_mappings() -> None:
    error = error_of({"Executable": "x", "Parameters.a b": 2})
    assert error.attribute == "Parameters.a b" and "invalid parameter name" in str(error)


def test_too_many_parametric_jobs() -> None:
    limits = DescriptionLimits(max_parametric_jobs=5)
    assert len(parse_descriptions('Executable = "x"; Parameters = 5;', limits)) == 5
    error = error_of('Executable = "x";\nParameters = 6;', limits)
    assert (error.attribute, error.line) == ("Parameters", 2) and "limit of 5" in str(error)
    error = error_of('Executable = "x";\nParameters = { 1, 2, 3, 4, 5, 6 };', limits)
    assert error.attribute == "Parameters"
    error = error_of('Executable = "x";\nParameters = 1000000000000;')
    assert "more than the limit" in str(error)


def test_expanded_jobs_share_requirements_and_keep_other_fields() -> None:
    jobs = parse_descriptions(
        FULL_JDL.replace("]", 'Parameters = 3;\nJobName = "n%n";\n]').replace(
            '    JobName = "analysis";\n', ""
        )
    )
    assert [job.job_name for job in jobs] == ["n0", "n1", "n2"]
    assert {job.requirements() for job in jobs} == {one(FULL_JDL).requirements()}
    assert all(job.cpu_time == 3600 and job.priority == 7 for job in jobs)


def test_stored_attributes_rebuild_the_same_job() -> None:
    jobs = parse_descriptions('Executable = "x"; Arguments = "%s"; Site = "A"; Parameters = 2;')
    for job in jobs:
        stored = dict(job.attributes, Owner="alice", OwnerGroup="users", JobID=12, Status="Waiting")
        rebuilt = description_from_stored(stored)
        assert rebuilt.arguments == job.arguments and rebuilt.sites == job.sites
        assert rebuilt.requirements() == job.requirements()
        assert rebuilt.attributes["ParameterIndex"] == job.attributes["ParameterIndex"]
        assert rebuilt.attributes["Owner"] == "alice"


def test_stored_attributes_are_not_held_to_submission_limits_but_refuse_templates() -> None:
    stored = {"Executable": "x", "CPUTime": 10**9, "NumberOfProcessors": 5000}
    assert description_from_stored(stored).cpu_time == 10**9
    with pytest.raises(InvalidJobDescription) as caught:
        description_from_stored({"Executable": "x", "Parameters": 3})
    assert caught.value.attribute == "Parameters"


def test_hundred_thousand_jobs_expand_with_their_own_values() -> None:
    # The speed is measured in scripts/benchmarks/bench_match.py, not here.
    text = """
    Executable = "run.sh";
    Arguments = "--seed %s --index %n";
    JobName = "job_%n";
    OutputSandbox = { "out_%n.txt", "std.out" };
    Site = { "A", "B" };
    Parameters = 100000;
    """
    jobs = parse_descriptions(text)
    assert len(jobs) == 100_000 and jobs[-1].job_name == "job_99999"
    assert jobs[-1].arguments == "--seed 99999 --index 99999"
    assert jobs[-1].output_sandbox == ("out_99999.txt", "std.out")


# --- properties -----------------------------------------------------------------------------------


@given(
    count=st.integers(min_value=1, max_value=200),
    start=st.none() | st.integers(-1000, 1000),
    step=st.none() | st.integers(-50, 50),
    factor=st.none() | st.integers(-3, 3),
)
def test_count_expansion_and_index_substitution(
    count: int, start: int | None, step: int | None, factor: int | None
) -> None:
    attributes: dict[str, Any] = {
        "Executable": "x",
        "JobName": "job-%n",
        "Arguments": "%s",
        "Parameters": count,
    }
    for name, value in (
        ("ParameterStart", start),
        ("ParameterStep", step),
        ("ParameterFactor", factor),
    ):
        if value is not None:
            attributes[name] = value
    try:
        jobs = parse_descriptions(attributes)
    except InvalidJobDescription as error:
        assert "grow beyond" in str(error)  # only a runaway factor may fail
        return
    assert len(jobs) == count
    assert [job.job_name for job in jobs] == [f"job-{i}" for i in range(count)]
    expected = start or 0
    step_value = step if step is not None else (0 if factor is not None else 1)
    for job in jobs:
        assert job.attributes["Parameter"] == expected
        assert job.arguments == str(expected)
        expected = expected * (factor if factor is not None else 1) + step_value


@given(st.lists(st.text(alphabet="abc%sn()", max_size=8), min_size=1, max_size=20))
def test_listed_values_expand_one_job_each(values: list[str]) -> None:
    jobs = parse_descriptions({"Executable": "x", "Arguments": "[%s]", "Parameters": values})
    assert [job.arguments for job in jobs] == [f"[{value}]" for value in values]


attribute_names = st.sampled_from(
    [
        "Executable", "Arguments", "JobName", "Priority", "CPUTime", "Site", "BannedSites",
        "Tags", "NumberOfProcessors", "MaxRAM", "InputSandbox", "Parameters", "ParameterStart",
        "ParameterStep", "ParameterFactor", "Parameters.A", "ParameterStart.A", "Owner", "Foo",
    ]
)  # fmt: skip
any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats()
    | st.text(alphabet="%sn()A ab1", max_size=6),
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
