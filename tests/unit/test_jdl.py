"""The JDL parser and writer: syntax, comments, errors with attribute and line, round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import (
    MAX_DEPTH,
    MAX_DESCRIPTION_CHARS,
    Expression,
    Placeholder,
    format_jdl,
    parse_jdl,
    tokenize,
)


def attributes(text: str) -> dict[str, Any]:
    return parse_jdl(text).attributes


def error_of(text: str) -> InvalidJobDescription:
    with pytest.raises(InvalidJobDescription) as caught:
        parse_jdl(text)
    return caught.value


# --- values ---------------------------------------------------------------------------------------


def test_strings_with_escapes() -> None:
    parsed = attributes(r'A = "say \"hi\" \\ done"; B = "tab\there\nnext"; C = "C:\data";')
    assert parsed == {"A": 'say "hi" \\ done', "B": "tab\there\nnext", "C": "C:\\data"}


def test_integers_and_floats() -> None:
    parsed = attributes("A = 42; B = -7; C = +3; D = 1.5; E = -2e3; F = .5; G = 1.; H = 1E-2;")
    assert parsed == {"A": 42, "B": -7, "C": 3, "D": 1.5, "E": -2000.0, "F": 0.5, "G": 1.0,
                      "H": 0.01}  # fmt: skip
    assert isinstance(parsed["A"], int) and isinstance(parsed["G"], float)


@pytest.mark.parametrize("word, value", [("true", True), ("FALSE", False), ("True", True)])
def test_booleans_in_any_case(word: str, value: bool) -> None:
    assert attributes(f"A = {word};") == {"A": value}


def test_bare_words_are_strings() -> None:
    parsed = attributes("Site = LCG.CERN.cern; Platform = x86_64-el9; V = 1.2.3; P = /cvmfs/a/b;")
    assert parsed == {
        "Site": "LCG.CERN.cern",
        "Platform": "x86_64-el9",
        "V": "1.2.3",
        "P": "/cvmfs/a/b",
    }


def test_lists_including_empty_mixed_and_nested() -> None:
    parsed = attributes('A = { "a", "b", 3 }; B = {}; C = { 1, { 2, "x" }, [ K = 1 ] };')
    assert parsed == {"A": ["a", "b", 3], "B": [], "C": [1, [2, "x"], {"K": 1}]}


def test_nested_sections_become_dicts() -> None:
    parsed = attributes('Options = [ A = 1; B = "x"; Inner = [ C = { 1 } ] ]; D = [];')
    assert parsed == {"Options": {"A": 1, "B": "x", "Inner": {"C": [1]}}, "D": {}}


def test_dotted_attribute_names() -> None:
    parsed = attributes("Parameters.B = 3; ParameterStart.B = 10;")
    assert parsed == {"Parameters.B": 3, "ParameterStart.B": 10}


# --- statements, wrapper, comments ----------------------------------------------------------------


def test_wrapper_is_optional() -> None:
    assert attributes('[ A = 1; B = "x"; ]') == attributes('A = 1; B = "x";') == {"A": 1, "B": "x"}


def test_final_semicolon_may_be_omitted_before_end_and_bracket() -> None:
    assert attributes("A = 1; B = 2") == {"A": 1, "B": 2}
    assert attributes("[ A = 1; B = 2 ]") == {"A": 1, "B": 2}
    assert attributes("A = [ X = 1 ]") == {"A": {"X": 1}}


def test_comments_of_every_kind_are_skipped() -> None:
    text = """
    # hash comment
    A = 1; // line comment
    /* block
       comment */ B = 2; /* inline */ C = /* inside */ 3;
    """
    assert attributes(text) == {"A": 1, "B": 2, "C": 3}


def test_comment_markers_inside_strings_are_text() -> None:
    parsed = attributes('A = "x # y // z /* w */";')
    assert parsed == {"A": "x # y // z /* w */"}


def test_lines_say_where_each_attribute_starts() -> None:
    text = '[\n  A = 1;\n  /* two\n lines */\n  B = {\n "x",\n "y" };\n  C = "z"\n]'
    assert parse_jdl(text).lines == {"A": 2, "B": 5, "C": 8}


def test_attribute_names_keep_their_spelling() -> None:
    assert list(attributes("cpuTIME = 5; SITE = x;")) == ["cpuTIME", "SITE"]


def test_tokenize_ends_with_end_token() -> None:
    tokens = tokenize('A = { "x" };')
    assert [token.kind for token in tokens][-1] == "end"
    assert [token.text for token in tokens[:-1]] == ["A", "=", "{", "x", "}", ";"]


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n", "[]", "[ ]", "# only a comment\n", "/* x */"])
def test_empty_document_is_an_error(text: str) -> None:
    error = error_of(text)
    assert "no attributes" in str(error)


def test_duplicate_attribute_last_wins_with_a_warning_naming_both_lines() -> None:
    document = parse_jdl("A = 1;\nB = 2;\nb = 3;")
    assert document.attributes == {"A": 1, "b": 3} and document.lines == {"A": 1, "b": 3}
    (warning,) = document.warnings
    assert (warning.attribute, warning.line) == ("b", 3)
    assert "b is given twice (first as B on line 2): the last value is used" in str(warning)


def test_duplicate_inside_a_section_warns_with_the_top_attribute() -> None:
    document = parse_jdl("S = [ X = 1;\n x = 2 ];")
    assert document.attributes == {"S": {"x": 2}}
    assert [(w.attribute, w.line) for w in document.warnings] == [("S", 2)]


def test_unterminated_string_reports_its_start_line() -> None:
    error = error_of('A = 1;\nB = "abc\n;\nC = 2;')
    assert (error.attribute, error.line) == ("B", 2)
    assert "unterminated string" in str(error)


def test_unterminated_list_reports_its_start_line() -> None:
    error = error_of('A = 1;\nB = { "x",\n "y",\n')
    assert (error.attribute, error.line) == ("B", 2)
    assert "unterminated list" in str(error)


def test_unterminated_block_comment_reports_its_start_line() -> None:
    error = error_of("A = 1;\n/* never\nclosed\n")
    assert error.line == 2
    assert "unterminated comment" in str(error)


def test_unterminated_wrapper_and_section() -> None:
    error = error_of("[\nA = 1;\n")
    assert error.line == 1 and "expected ']'" in str(error)
    error = error_of("A = 1;\nS = [ X = 1;\n")
    assert (error.attribute, error.line) == ("S", 2)


@pytest.mark.parametrize(
    "text, attribute, line, expected",
    [
        ("A = 1\nB = 2;", "A", 2, "expected ';' after the value of A, found 'B'"),
        ("A = 1;\nB 2;", "B", 2, "expected '=' after the attribute name B"),
        ("A = ;", "A", 1, "expected a value, found ';'"),
        ("A = 1;\n= 2;", None, 2, "expected an attribute name, found '='"),
        ("A = { 1, };", "A", 1, "expected a value, found '}'"),
        ("A = { 1 2 };", "A", 1, "expected ',' or '}' in the list, found '2'"),
        ("A = 1;\n B = 2 ^\n 3;", "B", 2, "unexpected character '^'"),
        ('A = "x" y\nB = 1;', "A", 1, "expected ';' after the value of A, found 'y'"),
        ("[ A = 1; ] B = 2;", None, 1, "expected end of input, found 'B'"),
        ('"A" = 1;', None, 1, "expected an attribute name, found string"),
        ("A = 1; ]", None, 1, "expected an attribute name, found ']'"),
    ],
)
def test_syntax_errors_say_what_was_expected_and_where(
    text: str, attribute: str | None, line: int, expected: str
) -> None:
    error = error_of(text)
    assert expected in str(error)
    assert (error.attribute, error.line) == (attribute, line)


def test_nesting_too_deep_is_refused_not_a_recursion_error() -> None:
    error = error_of("A = " + "{" * (MAX_DEPTH + 5) + "}" * (MAX_DEPTH + 5) + ";")
    assert error.attribute == "A" and "nested deeper" in str(error)
    assert attributes("A = " + "{" * 10 + "}" * 10) == {"A": [[[[[[[[[[]]]]]]]]]]}


def test_huge_numbers_are_refused() -> None:
    assert error_of("A = 1;\nB = 1e999;").line == 2
    assert "too long" in str(error_of("A = " + "9" * 5000))


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 2**64])
def test_integers_beyond_64_bits_are_refused_with_attribute_and_line(number: int) -> None:
    error = error_of(f"A = 1;\nParameters = {{ 1, {number} }};")
    assert (error.attribute, error.line) == ("Parameters", 2)
    assert "out of range" in str(error) and "64 bits" in str(error)


def test_64_bit_limits_themselves_are_accepted() -> None:
    assert attributes(f"A = {2**63 - 1}; B = {-(2**63)};") == {"A": 2**63 - 1, "B": -(2**63)}


def test_text_longer_than_the_cap_is_refused() -> None:
    assert parse_jdl("A = 1;", max_chars=6).attributes == {"A": 1}
    with pytest.raises(InvalidJobDescription, match="longer than the limit of 6"):
        parse_jdl("A = 12;", max_chars=6)
    assert MAX_DESCRIPTION_CHARS == 256 * 1024


def test_placeholders_in_value_position_are_kept_as_placeholders() -> None:
    parsed = attributes('A = %(InputData)s; B = %s; C = file_%n.txt; D = { %(x)s, y }; E = "%s";')
    assert parsed == {
        "A": Placeholder("%(InputData)s"),
        "B": Placeholder("%s"),
        "C": Placeholder("file_%n.txt"),
        "D": [Placeholder("%(x)s"), "y"],
        "E": "%s",
    }


def test_lists_of_lists_of_bare_words() -> None:
    parsed = attributes(
        "Parameters.InputData = {\n {/lhcb/data/data1,\n /lhcb/data/data2},\n {/d3} };"
    )
    assert parsed == {"Parameters.InputData": [["/lhcb/data/data1", "/lhcb/data/data2"], ["/d3"]]}


def test_values_dirac_keeps_as_text_become_expressions() -> None:
    document = parse_jdl(
        'Executable = "x";\nRequirements = other.GlueCEPolicyMaxCPUTime > 1000 && '
        'Member("VO-lhcb", other.Tags);\nRank = (-other.EstimatedWaitTime);'
    )
    assert document.attributes["Requirements"] == Expression(
        'other.GlueCEPolicyMaxCPUTime > 1000 && Member("VO-lhcb", other.Tags)'
    )
    assert document.attributes["Rank"] == Expression("(-other.EstimatedWaitTime)")
    assert document.lines == {"Executable": 1, "Requirements": 2, "Rank": 3}
    assert parse_jdl(format_jdl(document.attributes)).attributes == document.attributes


def test_dirac_class_ad_output_parses() -> None:
    # The layout of DIRAC's ClassAd.asJDL() (Job._toJDL): lists on several lines, bare words.
    text = (
        '[ \n    Arguments = "jobDescription.xml -o LogLevel=INFO";\n'
        '    Executable = "dirac-jobexec";\n    JobName = jobName;\n    LogLevel = INFO;\n'
        "    OutputSandbox = \n        {\n            Script1_CodeOutput.log,\n"
        "            std.err,\n            std.out\n        };\n    Priority = 1;\n"
        "    StdOutput = std.out;\n]"
    )
    parsed = attributes(text)
    assert parsed["OutputSandbox"] == ["Script1_CodeOutput.log", "std.err", "std.out"]
    assert parsed["JobName"] == "jobName" and parsed["Priority"] == 1


def test_non_text_is_refused() -> None:
    with pytest.raises(InvalidJobDescription):
        parse_jdl(b"A = 1;")  # type: ignore[arg-type]


# --- format_jdl -----------------------------------------------------------------------------------


def test_format_writes_a_wrapped_document() -> None:
    text = format_jdl({"Executable": "run.sh", "Site": ["A", "B"], "N": 3, "Ok": True})
    assert text.startswith("[\n") and text.endswith("]\n")
    assert 'Site = { "A", "B" };' in text and "Ok = true;" in text


def test_format_escapes_strings() -> None:
    value = 'q"b\\s\nn\tt\rr'
    assert attributes(format_jdl({"A": value})) == {"A": value}


def test_format_refuses_what_jdl_cannot_express() -> None:
    with pytest.raises(ValueError):
        format_jdl({"not a name": 1})
    with pytest.raises(ValueError):
        format_jdl({"A": float("inf")})
    with pytest.raises(TypeError):
        format_jdl({"A": None})


# --- properties -----------------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}(\.[A-Za-z0-9_]{1,5})?", fullmatch=True)
scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


def unique_names(value: dict[str, Any]) -> bool:
    return len({name.lower() for name in value}) == len(value)


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(names, inner, max_size=3).filter(unique_names),
    ),
    max_leaves=12,
)
documents = st.dictionaries(names, values, min_size=1, max_size=6).filter(unique_names)


@given(documents)
def test_format_then_parse_round_trips(document: dict[str, Any]) -> None:
    assert parse_jdl(format_jdl(document)).attributes == document


jdl_alphabet = st.sampled_from([*list('AB=;,{}[]"\\/*#\n \t.-1e+xTrue'), "//", "/*", "*/"])


@given(st.one_of(st.text(), st.lists(jdl_alphabet, max_size=40).map("".join)))
def test_arbitrary_text_parses_or_raises_invalid_job_description(text: str) -> None:
    try:
        document = parse_jdl(text)
    except InvalidJobDescription as error:
        assert error.line is None or error.line >= 1
    else:
        assert document.attributes
        assert set(document.lines) == set(document.attributes)
