"""Parametric jobs with DIRAC's semantics (cases from DIRAC's own Test_ParametricJob first)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.description import (
    DescriptionLimits,
    JobDescription,
    parse_descriptions,
    parse_job_descriptions,
)
from dirac_like.errors import InvalidJobDescription


def jobs_of(source: str | dict[str, Any]) -> list[JobDescription]:
    return parse_descriptions(source)


def error_of(source: str | dict[str, Any]) -> InvalidJobDescription:
    with pytest.raises(InvalidJobDescription) as caught:
        parse_descriptions(source)
    return caught.value


HEAD = 'Executable = "my_executable";\nJobName = "Test_%n";\n'


# --- DIRAC's Test_ParametricJob.py, case for case -------------------------------------------------


@pytest.mark.parametrize(
    "body, arguments",
    [
        ('Arguments = "%s";\nParameters = { "a", "b", "c" }', ["a", "b", "c"]),
        ('Arguments = "%s";\nParameters = 3;\nParameterStart = 5;', ["5", "5", "5"]),
        (
            'Arguments = "%s";\nParameters = 3;\nParameterStart = 1;\nParameterStep = 1;\n'
            "ParameterFactor = 2;",
            ["1", "3", "7"],
        ),
        (
            'Arguments = "%(A)s %(B)s";\nParameters = 3;\nParameterStart.A = 1;\n'
            'ParameterStep.A = 1;\nParameterFactor.A = 2;\nParameters.B = { "a","b","c" };',
            ["1 a", "3 b", "7 c"],
        ),
    ],
)
def test_dirac_parametric_cases(body: str, arguments: list[str]) -> None:
    jobs = jobs_of(f"[\n{HEAD}{body}\n]")
    assert [job.arguments for job in jobs] == arguments
    assert [job.job_name for job in jobs] == [f"Test_{i}" for i in range(len(arguments))]


def test_dirac_refuses_vectors_of_different_length() -> None:
    error = error_of(
        f'[\n{HEAD}Arguments = "%(A)s %(B)s";\nParameters = 3;\nParameterStart.A = 1;\n'
        'Parameters.B = { "a","b","c","d" };\n]'
    )
    assert (error.attribute, error.line) == ("Parameters.B", 7)
    assert "has 4 values but Parameters gives 3 jobs" in str(error)


def test_without_parameters_nothing_is_substituted() -> None:
    (job,) = jobs_of(f'[\n{HEAD}Arguments = "%s";\n]')
    assert (job.arguments, job.job_name) == ("%s", "Test_%n")


# --- defaults, vectors, attributes of each job ----------------------------------------------------


def test_count_alone_gives_dirac_defaults_start_1_step_0() -> None:
    jobs = jobs_of('Executable = "x"; Arguments = "%s"; Parameters = 3;')
    assert [job.arguments for job in jobs] == ["1", "1", "1"]
    assert [job.attributes["ParameterNumber"] for job in jobs] == [0, 1, 2]
    assert [job.attributes["Parameter"] for job in jobs] == ["1", "1", "1"]
    assert "Parameters" not in jobs[0].attributes


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("ParameterStep = 2;", ["1", "3", "5", "7"]),
        ("ParameterStart = 0.; ParameterStep = 0.1;", ["0.0", "0.1", "0.2", "0.30000000000000004"]),
        ("ParameterFactor = 1.5;", ["1.0", "1.5", "2.25", "3.375"]),
        ('ParameterStart = "2"; ParameterFactor = "3";', ["2", "6", "18", "54"]),
    ],
)
def test_sequences_follow_dirac_types_and_formula(extra: str, expected: list[str]) -> None:
    jobs = jobs_of(f'Executable = "x"; Arguments = "%s"; Parameters = 4; {extra}')
    assert [job.arguments for job in jobs] == expected


def test_named_sequence_without_its_parameters_list_has_the_length_of_parameters() -> None:
    jobs = jobs_of(
        'Executable = "x"; Arguments = "%(seed)s"; Parameters = 3; ParameterStart.seed = 10; '
        "ParameterStep.seed = 5;"
    )
    assert [job.arguments for job in jobs] == ["10", "15", "20"]
    assert [job.attributes["Parameter.seed"] for job in jobs] == ["10", "15", "20"]


def test_number_is_zero_padded_to_the_width_of_the_last() -> None:
    jobs = jobs_of('Executable = "x"; JobName = "j%n"; Parameters = 11;')
    assert [job.job_name for job in jobs][:2] == ["j00", "j01"] and jobs[-1].job_name == "j10"
    assert jobs_of('Executable = "x"; JobName = "j%n"; Parameters = 10;')[-1].job_name == "j9"


def test_placeholders_reach_every_string_known_or_not() -> None:
    jobs = jobs_of(
        'Executable = "run_%s.sh"; OutputSandbox = { "out_%n.txt", "std.out" }; '
        'Site = %s; Custom = "c-%s"; Nested = [ Deep = { "d-%n" } ]; '
        'Parameters = { "LCG.A.ch", "LCG.B.fr" };'
    )
    assert jobs[1].executable == "run_LCG.B.fr.sh"
    assert jobs[1].output_sandbox == ("out_1.txt", "std.out")
    assert jobs[1].sites == ("LCG.B.fr",)
    assert jobs[1].attributes["Custom"] == "c-LCG.B.fr"
    assert jobs[1].attributes["Nested"] == {"Deep": ["d-1"]}


def test_bare_placeholder_takes_the_value_itself_lists_included() -> None:
    # DIRAC's testWF.jdl (src/DIRAC/Interfaces/API/test/testWF.jdl), the _toJDL of a Job with
    # setParameterSequence("InputData", [...], addToWorkflow=True).
    text = """[
    Executable = "dirac-jobexec";
    Arguments = "jobDescription.xml -p JOB_ID=%(JOB_ID)s -p InputData=%(InputData)s";
    InputData = %(InputData)s;
    JOB_ID = %(JOB_ID)s;
    Parameters = 3;
    Parameters.InputData = { {/lhcb/data/data1, /lhcb/data/data2}, {/lhcb/data/data3,
        /lhcb/data/data4}, {/lhcb/data/data5, /lhcb/data/data6} };
    Parameters.JOB_ID = { 1, 2, 3 };
]"""
    jobs = jobs_of(text)
    assert jobs[2].input_data == ("LFN:/lhcb/data/data5", "LFN:/lhcb/data/data6")
    assert jobs[2].attributes["JOB_ID"] == 3
    assert jobs[0].arguments == (
        "jobDescription.xml -p JOB_ID=1 -p InputData={/lhcb/data/data1,/lhcb/data/data2}"
    )
    assert jobs[0].attributes["Parameter.InputData"] == ["/lhcb/data/data1", "/lhcb/data/data2"]


def test_list_item_placeholder_is_replaced_by_the_items() -> None:
    jobs = jobs_of(
        'Executable = "x"; InputSandbox = { "a.sh", %s }; '
        'Parameters = { { "f1", "f2" }, { "f3" } };'
    )
    assert [job.input_sandbox for job in jobs] == [("a.sh", "f1", "f2"), ("a.sh", "f3")]


def test_json_string_that_is_one_placeholder_is_in_value_position() -> None:
    jobs = jobs_of(
        {
            "Executable": "x",
            "CPUTime": "%s",
            "InputData": "%(files)s",
            "Parameters": [100, 200],
            "Parameters.files": [["/vo/a"], ["/vo/b"]],
        }
    )
    assert [(job.cpu_time, job.input_data) for job in jobs] == [
        (100, ("LFN:/vo/a",)), (200, ("LFN:/vo/b",))]  # fmt: skip


def test_unknown_placeholders_and_other_percents_stay_as_written() -> None:
    result = parse_job_descriptions(
        'Executable = "x";\nArguments = "%(nope)s 100%% %j %d %s";\nParameters = { "v" };'
    )
    (job,) = result.descriptions
    assert job.arguments == "%(nope)s 100%% %j %d v"
    assert [(w.attribute, w.line) for w in result.warnings] == [("Arguments", 2)]
    assert "no Parameters.nope" in str(result.warnings[0])


def test_start_step_factor_are_ignored_with_a_warning_when_values_are_listed() -> None:
    result = parse_job_descriptions(
        'Executable = "x"; Arguments = "%s";\nParameters = { 7, 8 };\nParameterStep = 2;'
    )
    assert [job.arguments for job in result.descriptions] == ["7", "8"]
    assert [(w.attribute, w.line) for w in result.warnings] == [("ParameterStep", 3)]


def test_parameter_attributes_without_parameters_are_kept_as_they_are() -> None:
    result = parse_job_descriptions(
        'Executable = "x"; Arguments = "%(A)s";\nParameters.A = {1, 2};'
    )
    (job,) = result.descriptions
    assert job.arguments == "%(A)s" and job.attributes["Parameters.A"] == [1, 2]
    assert [(w.attribute, w.line) for w in result.warnings] == [("Parameters.A", 2)]


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, attribute, line, expected",
    [
        ("Parameters = 0;", "Parameters", 2, "at least one job"),
        ("Parameters = {};", "Parameters", 2, "at least one job"),
        ("Parameters = -3;", "Parameters", 2, "at least one job"),
        ('Parameters = "many";', "Parameters", 2, "a count or a list"),
        ("Parameters = 2;\nParameters.A = 2;", "Parameters.A", 3, "must be a list"),
        ('Parameters = 2;\nParameterStart = "x";', "ParameterStart", 3, "must be a number"),
        ("Parameters = 2;\nParameterFactor.A = {1};", "ParameterFactor.A", 3, "must be a number"),
        ("Parameters = 100;\nParameterStart = 2;\nParameterFactor = 10;", "ParameterStart", 3,
         "grow beyond 64 bits"),
    ],
)  # fmt: skip
def test_parameter_errors(text: str, attribute: str, line: int, expected: str) -> None:
    error = error_of(f'Executable = "x";\n{text}')
    assert expected in str(error)
    assert (error.attribute, error.line) == (attribute, line)


def test_too_many_parametric_jobs() -> None:
    limits = DescriptionLimits(max_parametric_jobs=5)
    assert len(parse_descriptions('Executable = "x"; Parameters = 5;', limits)) == 5
    with pytest.raises(InvalidJobDescription, match="limit of 5"):
        parse_descriptions('Executable = "x";\nParameters = { 1, 2, 3, 4, 5, 6 };', limits)
    assert "more than the limit" in str(error_of('Executable = "x";\nParameters = 10000000000;'))


def test_a_value_invalid_for_one_job_names_that_job() -> None:
    error = error_of('Executable = "x";\nCPUTime = %s;\nParameters = { 60, "soon" };')
    assert (error.attribute, error.line) == ("CPUTime", 2)
    assert "ParameterNumber 1" in str(error)
    error = error_of('Executable = "%s";\nParameters = { "a", " " };')
    assert error.attribute == "Executable" and "ParameterNumber 1" in str(error)


def test_sites_are_checked_per_job_when_they_vary() -> None:
    jobs = jobs_of('Executable = "x"; Site = %s; BannedSites = "B"; Parameters = { "A", "C" };')
    assert [job.sites for job in jobs] == [("A",), ("C",)]
    error = error_of('Executable = "x";\nSite = %s;\nBannedSites = "B";\nParameters = {"A","B"};')
    assert error.attribute == "Site" and "ParameterNumber 1" in str(error)


def test_processor_range_may_vary_per_job() -> None:
    jobs = jobs_of(
        'Executable = "x"; MinNumberOfProcessors = %s; MaxNumberOfProcessors = 8; '
        "Parameters = { 2, 4 };"
    )
    assert [(job.number_of_processors, job.max_processors) for job in jobs] == [(2, 8), (4, 8)]


def test_hundred_thousand_jobs_expand_with_their_own_values() -> None:
    # The speed is measured in scripts/benchmarks/bench_match.py, not here.
    text = """
    Executable = "run.sh";
    Arguments = "--seed %(seed)s --index %n";
    JobName = "job_%n";
    OutputSandbox = { "out_%n.txt", "std.out" };
    Site = { "A", "B" };
    Parameters = 100000;
    ParameterStart.seed = 0;
    ParameterStep.seed = 1;
    """
    jobs = parse_descriptions(text)
    assert len(jobs) == 100_000 and jobs[-1].job_name == "job_99999"
    assert jobs[-1].arguments == "--seed 99999 --index 99999"
    assert jobs[-1].output_sandbox == ("out_99999.txt", "std.out")
    assert len({job.requirements() for job in jobs}) == 1


# --- properties -----------------------------------------------------------------------------------


@given(
    count=st.integers(min_value=1, max_value=200),
    start=st.none() | st.integers(-1000, 1000),
    step=st.none() | st.integers(-50, 50),
    factor=st.none() | st.integers(-3, 3),
)
def test_count_expansion_is_dirac_formula(
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
    width = len(str(count - 1))
    assert [job.job_name for job in jobs] == [f"job-{i:0{width}d}" for i in range(count)]
    expected = 1 if start is None else start
    for job in jobs:
        assert job.arguments == job.attributes["Parameter"] == str(expected)
        expected = expected * (1 if factor is None else factor) + (step or 0)


@given(st.lists(st.text(alphabet="abc%sn()", max_size=8), min_size=1, max_size=20))
def test_listed_values_expand_one_job_each(values: list[str]) -> None:
    jobs = parse_descriptions({"Executable": "x", "Arguments": "[%s]", "Parameters": values})
    assert [job.arguments for job in jobs] == [f"[{value}]" for value in values]
