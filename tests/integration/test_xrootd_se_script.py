"""scripts/xrootd-se.sh: real XRootD SEs on loopback, checksums, third-party copy, stop by PID."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from xrootd_ses import XrootdSEs

from dirac_like.checksums import adler32_of_file


def _port(url: str) -> int:
    port = urlparse(url).port
    assert port is not None
    return port


def _running(pid: int) -> bool:
    """Alive and not a zombie (a daemonized xrootd's parent may be slow to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _xrd(*argv: str) -> str:
    return subprocess.run(
        list(argv), capture_output=True, text=True, check=True, timeout=60, stdin=subprocess.DEVNULL
    ).stdout


def test_two_ses_hold_a_file_with_its_adler32_and_copy_it_third_party(
    xrootd_ses: XrootdSEs, tmp_path: Path
) -> None:
    local = tmp_path / "f"
    local.write_bytes(bytes(range(256)) * 4000)
    a, b = xrootd_ses.urls["XRD-A"], xrootd_ses.urls["XRD-B"]
    _xrd("xrdcp", "-f", "--cksum", "adler32", str(local), f"{a}//script-test/f")
    _xrd(
        "xrdcp",
        "-f",
        "--tpc",
        "only",
        "--cksum",
        "adler32",
        f"{a}//script-test/f",
        f"{b}//script-test/f",
    )
    host_b = urlparse(b).netloc
    answer = _xrd("xrdfs", host_b, "query", "checksum", "/script-test/f").split()
    assert answer == ["adler32", adler32_of_file(local)]
    assert (xrootd_ses.data("XRD-B") / "script-test" / "f").read_bytes() == local.read_bytes()


def test_stop_ends_the_daemon_by_its_pid_and_frees_its_port(
    start_xrootd_se: Callable[[], tuple[str, XrootdSEs]],
) -> None:
    name, ses = start_xrootd_se()
    port = _port(ses.urls[name])
    recorded = (ses.base / "run" / "ses.pids").read_text().split()
    pid = int(recorded[2])
    assert _running(pid)
    ses.stop(name)
    assert not _running(pid)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
