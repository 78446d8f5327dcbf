"""``dirac-like data ...``, ``dirac-like agent transfer`` and the DIRAC-named data commands, as a
user runs them, against a real central service and real XRootD SEs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from xrootd_ses import XrootdSEs, storage_config

from dirac_like.processes import ServiceProcess
from dirac_like.testing import wait_for

BIN = Path(sys.executable).parent
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(start_central: Callable[..., ServiceProcess], xrootd_ses: XrootdSEs, tmp_path: Path) -> Run:
    """``cli("data", "ls", "/vo")`` or ``cli("dirac-dms-get-file", ...)``: a command as a user
    types it (the DIRAC names are the installed entry points)."""
    service = start_central(storage_config(xrootd_ses, tmp_path / "file-se"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        if args[0].startswith("dirac-"):
            command = [str(BIN / args[0]), *args[1:]]
        else:
            command = [sys.executable, "-m", "dirac_like", *args]
        return subprocess.run(
            [*command, "--server", service.endpoint],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_put_ls_replicate_get_rm_from_the_command_line(cli: Run, tmp_path: Path) -> None:
    folder = "/vo/user/tests/cli"
    local = tmp_path / "hits.dat"
    local.write_bytes(b"x" * 300_000)
    put = json.loads(
        ok(cli("data", "put", str(local), f"{folder}/hits.dat", "--se", "XRD-A", "--json"))
    )
    assert put["done"][0]["size"] == 300_000
    assert ok(cli("data", "ls", folder)).split() == ["hits.dat"]
    assert "XRD-A" in ok(cli("data", "ls", "-l", folder))
    ok(cli("data", "replicate", f"{folder}/hits.dat", "--se", "FILE-C"))
    ok(cli("agent", "transfer", "--once", "--name", "cli-agent"))
    transfers = json.loads(ok(cli("data", "transfers", "--json")))
    assert [t["status"] for t in transfers] == ["Done"]
    replicas = ok(cli("dirac-dms-lfn-replicas", f"{folder}/hits.dat"))
    assert "XRD-A" in replicas and "FILE-C" in replicas
    (tmp_path / "lfns.txt").write_text(f"{folder}/hits.dat\n")
    got = json.loads(
        ok(
            cli(
                "data",
                "get",
                "--from-file",
                "lfns.txt",
                "--dir",
                "out",
                "--site",
                "SITE-C",
                "--json",
            )
        )
    )
    assert got["done"][0]["se"] == "FILE-C"
    assert (tmp_path / "out" / "hits.dat").read_bytes() == local.read_bytes()
    ok(cli("dirac-dms-remove-files", f"{folder}/hits.dat"))
    missing = cli("data", "stat", f"{folder}/hits.dat")
    assert missing.returncode == 1 and "not in the catalog" in missing.stderr
    assert not (tmp_path / "file-se" / folder.lstrip("/") / "hits.dat").exists()


def test_dirac_add_file_and_get_file_and_a_clear_error_for_a_bad_lfn(
    cli: Run, tmp_path: Path
) -> None:
    local = tmp_path / "a.txt"
    local.write_text("hello")
    ok(cli("dirac-dms-add-file", "/vo/user/tests/dirac/a.txt", str(local), "XRD-B"))
    ok(cli("dirac-dms-get-file", "/vo/user/tests/dirac/a.txt", "-D", "got"))
    assert (tmp_path / "got" / "a.txt").read_text() == "hello"
    bad = cli("data", "put", str(local), "/vo/user/tests/../a.txt", "--se", "XRD-A")
    assert bad.returncode == 1 and "'..' segment" in bad.stderr
    unknown = cli("data", "put", str(local), "/vo/user/tests/b.txt", "--se", "NOWHERE")
    assert unknown.returncode == 1 and "unknown SE 'NOWHERE'" in unknown.stderr
    listing = json.loads(ok(cli("data", "ses", "--json")))
    assert {row["name"] for row in listing} == {"XRD-A", "XRD-B", "FILE-C"}


def test_a_replication_rule_from_the_command_line(cli: Run, tmp_path: Path) -> None:
    local = tmp_path / "r.dat"
    local.write_bytes(b"r" * 1000)
    ok(cli("data", "put", str(local), "/vo/user/tests/ruled/r.dat", "--se", "XRD-A"))
    added = json.loads(
        ok(
            cli(
                "data",
                "rule",
                "add",
                "/vo/user/tests/ruled",
                "--copies",
                "2",
                "--se-tags",
                "disk",
                "--json",
            )
        )
    )
    assert added["ses"] == ["XRD-A", "XRD-B"]
    wait_for(
        lambda: json.loads(ok(cli("data", "rules", "--json")))[0]["state"] == "Replicating",
        "the rule's first pass",
    )
    ok(cli("agent", "transfer", "--once", "--name", "rule-agent"))
    replicas = json.loads(ok(cli("data", "replicas", "/vo/user/tests/ruled/r.dat", "--json")))
    assert {r["se"] for r in replicas["files"][0]["replicas"]} == {"XRD-A", "XRD-B"}
    assert "removed" in ok(cli("data", "rule", "rm", str(added["rule_id"])))
