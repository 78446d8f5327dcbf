"""The client side of a submission: every description and sandbox file checked before any upload,
base names in the sandbox, and the SB: entry written into JDL text without moving a line."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dirac_like.description import parse_descriptions
from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import parse_jdl
from dirac_like.sandbox import pack_named
from dirac_like.submission import prepare_submission, sandbox_name, with_sandbox_entry


@pytest.mark.parametrize(
    "value, expected",
    [
        ('{ "a.sh",\n  "b.sh" }', ["a.sh", "b.sh", "SB:abc"]),
        ("{}", ["SB:abc"]),
        ('"a.sh, b.sh"', ["a.sh", "b.sh", "SB:abc"]),
        ("a.sh", ["a.sh", "SB:abc"]),
    ],
)
def test_sandbox_entry_is_written_in_place_keeping_every_line(
    value: str, expected: list[str]
) -> None:
    text = f'[\n  Executable = "x";\n  InputSandbox = {value};\n  Priority = 3;\n  Foo = 1\n]\n'
    changed = with_sandbox_entry(text, "SB:abc")
    before, after = parse_jdl(text), parse_jdl(changed)
    assert after.lines == before.lines
    assert after.attributes["InputSandbox"] == expected
    assert {k: v for k, v in after.attributes.items() if k != "InputSandbox"} == {
        k: v for k, v in before.attributes.items() if k != "InputSandbox"
    }


def test_sandbox_entry_keeps_a_parametric_placeholder() -> None:
    text = 'Executable = "x"; InputSandbox = %s;\nParameters = { { "f1" }, { "f2" } };'
    jobs = parse_descriptions(with_sandbox_entry(text, "SB:abc"))
    assert [job.input_sandbox for job in jobs] == [("f1", "SB:abc"), ("f2", "SB:abc")]


def test_sandbox_entry_in_a_mapping() -> None:
    assert with_sandbox_entry({"Executable": "x", "inputsandbox": "a"}, "SB:1") == {
        "Executable": "x", "inputsandbox": ["a", "SB:1"]}  # fmt: skip
    assert with_sandbox_entry({"Executable": "x"}, "SB:1")["InputSandbox"] == ["SB:1"]


def test_sandbox_names_are_base_names() -> None:
    assert [sandbox_name(p) for p in ("../x.sh", "/abs/dir/", "a/b/c.txt", "run.sh")] == [
        "x.sh", "dir", "c.txt", "run.sh"]  # fmt: skip


def test_prepare_finds_files_anywhere_for_every_expanded_job(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "tools").mkdir()
    for name in ("tools/run.sh", "jobs/in_a.txt", "jobs/in_b.txt"):
        (tmp_path / name).write_text(name)
    absolute = tmp_path / "tools" / "abs.cfg"
    absolute.write_text("cfg")
    text = (
        f'Executable = "x";\nInputSandbox = {{ "../tools/run.sh", "{absolute}", "in_%s.txt",'
        ' "LFN:/vo/grid.tgz" };\nParameters = { "a", "b" };\nOwner = "x";\n'
    )
    [job] = prepare_submission([(tmp_path / "jobs" / "j.jdl", text)])
    assert job.jobs == 2
    assert job.files == {
        "run.sh": tmp_path / "jobs" / "../tools/run.sh",
        "abs.cfg": absolute,
        "in_a.txt": tmp_path / "jobs" / "in_a.txt",
        "in_b.txt": tmp_path / "jobs" / "in_b.txt",
    }
    assert [(w.attribute, w.line) for w in job.warnings] == [("Owner", 4)]


@pytest.mark.parametrize(
    "entries, message",
    [
        ('"a/run.sh", "b/run.sh"', "'a/run.sh' and 'b/run.sh' have the same name 'run.sh'"),
        ('"missing.txt"', "'missing.txt' not found"),
        ('".."', "names no file"),
    ],
)
def test_prepare_refuses_naming_the_file_attribute_and_line(
    tmp_path: Path, entries: str, message: str
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "run.sh").write_text("x")
    path = tmp_path / "job.jdl"
    with pytest.raises(InvalidJobDescription) as caught:
        prepare_submission([(path, f'Executable = "x";\n\nInputSandbox = {{ {entries} }};')])
    error = caught.value
    assert message in str(error) and str(error).startswith(f"{path}: ")
    assert (error.attribute, error.line, error.file) == ("InputSandbox", 3, str(path))


def test_prepare_refuses_an_invalid_description_naming_its_file(tmp_path: Path) -> None:
    (tmp_path / "ok.sh").write_text("x")
    good = (tmp_path / "good.jdl", 'Executable = "x"; InputSandbox = { "ok.sh" };')
    bad = (tmp_path / "bad.jdl", 'Executable = "x";\nMaxRAM = "lots";')
    with pytest.raises(InvalidJobDescription) as caught:
        prepare_submission([good, bad])
    assert caught.value.file == str(tmp_path / "bad.jdl") and caught.value.line == 2


def test_pack_named_stores_each_path_under_its_name(tmp_path: Path) -> None:
    (tmp_path / "deep" / "dir").mkdir(parents=True)
    (tmp_path / "deep" / "dir" / "f.txt").write_text("f")
    (tmp_path / "x.sh").write_text("x")
    data = pack_named({"dir": tmp_path / "deep" / "dir", "run.sh": tmp_path / "x.sh"})
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["dir", "dir/f.txt", "run.sh"]
