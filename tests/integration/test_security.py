"""Authentication over real CurveZMQ: unknown keys, revokes, pilot tokens, the principal from the
transport; ``init`` and the identity commands; ``--insecure``."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dirac_like import cli, testing
from dirac_like.agents.director import PILOT_TOKEN_FILE, Director
from dirac_like.agents.fabrics import LocalFabric
from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import Forbidden, JobNotFound, ServiceUnavailable
from dirac_like.identity import Identity, Keypair, load_identity, save_identity
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import PilotResources
from dirac_like.sites import load_site

FAST = RetryPolicy(timeout=3.0, retries=1, backoff=0.05, max_backoff=0.1)
SHORT = RetryPolicy(timeout=0.5, retries=1, backoff=0.05, max_backoff=0.1)  # when no answer is due
HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'
SITE_A, SITE_B = "Site.A.org", "Site.B.org"


@pytest.fixture
def admin(central: ServiceProcess) -> Iterator[Client]:
    with Client(central.endpoint, FAST, identity=central.identity) as connected:
        yield connected


@pytest.fixture
def connect(central: ServiceProcess) -> Iterator[Callable[..., Client]]:
    """Clients of the test's service with a given identity; closed at the end."""
    opened: list[Client] = []

    def open_client(identity: Identity | None, policy: RetryPolicy = FAST) -> Client:
        client = Client(central.endpoint, policy, identity=identity, insecure=identity is None)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def stranger(service_key: str) -> Identity:
    """A well-formed identity the service never issued."""
    keypair = Keypair.generate()
    return Identity("mallory", "admin", keypair.public, keypair.secret, service_key)


# -- authentication ----------------------------------------------------------------------------


def test_a_client_with_an_unknown_key_gets_no_answer(
    central: ServiceProcess, admin: Client, connect: Callable[..., Client]
) -> None:
    assert central.identity is not None
    unknown = connect(stranger(central.identity.service_key), SHORT)
    with pytest.raises(ServiceUnavailable, match="authentication may have failed"):
        unknown.ping()
    assert admin.ping().service == "central"  # and the service goes on serving the others
    assert "handshake refused" in central.stderr_text()


def test_a_plaintext_client_gets_no_answer(admin: Client, connect: Callable[..., Client]) -> None:
    with pytest.raises(ServiceUnavailable, match="no identity"):
        connect(None, SHORT).ping()
    assert admin.ping().service == "central"


def test_a_key_for_another_service_gets_no_answer(
    central: ServiceProcess, connect: Callable[..., Client]
) -> None:
    assert central.identity is not None
    wrong_server = Identity(
        **{**central.identity.to_wire(), "groups": (), "service_key": Keypair.generate().public}
    )
    with pytest.raises(ServiceUnavailable):
        connect(wrong_server, SHORT).ping()


def test_a_revoked_identity_is_refused_at_once_on_an_open_connection(
    central: ServiceProcess, admin: Client, connect: Callable[..., Client]
) -> None:
    alice = admin.identity_add("alice", "user", ["physics"])
    as_alice = connect(alice)
    assert as_alice.submit([HELLO], owner="alice")  # the connection is open and admitted
    admin.identity_revoke("alice")
    with pytest.raises(Forbidden, match="alice was revoked"):
        as_alice.list_jobs()  # same socket, no new handshake
    with pytest.raises(ServiceUnavailable):
        connect(alice, SHORT).ping()  # a new connection is not even admitted
    rows = {row.name: row for row in admin.identity_list()}
    assert rows["alice"].state == "revoked"
    audit = (central.home / "logs" / "audit.log").read_text()
    assert '"op": "identity_add"' in audit and '"op": "identity_revoke"' in audit
    assert "alice was revoked" in audit  # the refusal
    assert alice.secret_key not in audit


def test_a_revoke_holds_after_a_restart(start_central: Callable[..., ServiceProcess]) -> None:
    service = start_central()
    with Client(service.endpoint, FAST, identity=service.identity) as admin:
        bob = admin.identity_add("bob", "user", ["g"])
        admin.identity_revoke("bob")
    service.stop()
    service = start_central()
    with Client(service.endpoint, FAST, identity=service.identity) as admin:
        assert {r.name: r.state for r in admin.identity_list()}["bob"] == "revoked"
    with Client(service.endpoint, SHORT, identity=bob) as as_bob, pytest.raises(ServiceUnavailable):
        as_bob.ping()


def test_the_owner_comes_from_the_transport(admin: Client, connect: Callable[..., Client]) -> None:
    alice = connect(admin.identity_add("alice", "user", ["physics"]))
    [job_id] = alice.submit([HELLO], owner="bob", group="")  # claims to be bob
    [row] = admin.status([job_id])
    assert (row.owner, row.group) == ("alice", "physics")


# -- pilot tokens ------------------------------------------------------------------------------


def director_of(admin: Client, connect: Callable[..., Client], site: str) -> Client:
    return connect(admin.identity_add(f"director@{site}", "director", site=site))


def test_a_director_gets_pilot_tokens_for_its_own_site_only(
    admin: Client, connect: Callable[..., Client]
) -> None:
    director = director_of(admin, connect, SITE_A)
    [mine] = director.add_pilots(SITE_A, "ce", 1)
    token = director.pilot_token(SITE_A, mine)
    assert token.is_pilot_token() and (token.site, token.pilot_id) == (SITE_A, mine)
    with pytest.raises(Forbidden):
        director.pilot_token(SITE_B)
    [theirs] = admin.add_pilots(SITE_B, "ce", 1)
    with pytest.raises(Forbidden):
        director.pilot_token(SITE_A, theirs)  # a pilot of site B, under site A's name


def test_a_pilot_token_of_site_a_cannot_request_jobs_for_site_b(
    admin: Client, connect: Callable[..., Client]
) -> None:
    [pilot_id] = admin.add_pilots(SITE_A, "ce", 1)
    pilot = connect(admin.pilot_token(SITE_A, pilot_id))
    admin.submit([HELLO + f' Site = "{SITE_B}";'], owner="alice")
    with pytest.raises(Forbidden, match="site"):
        pilot.request_job(pilot_id, PilotResources(site=SITE_B))
    with pytest.raises(Forbidden):
        pilot.submit([HELLO], owner="mallory")
    with pytest.raises(Forbidden):
        pilot.request_job(f"{SITE_A}.ce.999", PilotResources(site=SITE_A))  # another pilot id
    assert pilot.request_job(pilot_id, PilotResources(site=SITE_A)).job is None


def test_an_expired_pilot_token_is_refused(start_central: Callable[..., ServiceProcess]) -> None:
    service = start_central("[security]\npilot_token_lifetime = 2.0\n")
    with Client(service.endpoint, FAST, identity=service.identity) as admin:
        [pilot_id] = admin.add_pilots(SITE_A, "ce", 1)
        token = admin.pilot_token(SITE_A, pilot_id)
    resources = PilotResources(site=SITE_A)
    with Client(service.endpoint, SHORT, identity=token) as pilot:
        assert pilot.request_job(pilot_id, resources).job is None  # valid for now

        def refused() -> str:
            try:
                pilot.request_job(pilot_id, resources)
            except Forbidden as exc:
                return exc.message
            return ""

        assert "expired" in testing.wait_for(refused, "the token to expire", timeout=30)
    assert token.expires <= time.time()
    with (
        Client(service.endpoint, SHORT, identity=token) as again,
        pytest.raises(ServiceUnavailable),
    ):
        again.ping()  # a new connection with it is not admitted either


def test_the_director_hands_each_pilot_a_private_token(
    central: ServiceProcess, admin: Client, connect: Callable[..., Client], tmp_path: Path
) -> None:
    director_client = director_of(admin, connect, SITE_A)
    site_file = tmp_path / f"{SITE_A}.toml"
    site_file.write_text('[ce.ce1]\nfabric = "local"\ncores_per_slot = 1\nmax_wall_time = 3600\n')
    fabric = LocalFabric(tmp_path / "fabric")
    director = Director(load_site(site_file), director_client, {"local": fabric}, tmp_path)
    try:
        [pilot_id] = director_client.add_pilots(SITE_A, "ce1", 1)
        request = director.pilot_request(load_site(site_file).ce("ce1"), pilot_id)
    finally:
        fabric.close()
    path = Path(request.command[request.command.index("--identity") + 1])
    assert path == request.workdir / PILOT_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = load_identity(path)
    assert (token.role, token.site, token.pilot_id) == ("pilot", SITE_A, pilot_id)
    assert token.expires > time.time()


def test_a_pilot_runs_on_its_token_removes_it_and_keeps_it_from_payloads(
    admin: Client, tmp_path: Path
) -> None:
    [pilot_id] = admin.add_pilots(SITE_A, "ce", 1)
    token_file = tmp_path / "pilot" / PILOT_TOKEN_FILE
    save_identity(token_file, admin.pilot_token(SITE_A, pilot_id))
    [job_id] = admin.submit(
        [f'Executable = "/usr/bin/env"; CPUTime = 600; Site = "{SITE_A}";'], owner="alice"
    )
    workdir = tmp_path / "pilot"
    command = [
        sys.executable,
        "-m",
        "dirac_like",
        "pilot",
        "--server",
        admin.server,
        "--site",
        SITE_A,
        "--ce",
        "ce",
        "--pilot-id",
        pilot_id,
        "--cores",
        "1",
        "--workdir",
        str(workdir),
        "--identity",
        str(token_file),
        "--max-jobs",
        "1",
        "--idle-timeout",
        "30",
        "--request-interval",
        "0.2",
        "--heartbeat",
        "1",
    ]
    with open(tmp_path / "pilot.log", "wb") as log_file:
        pilot = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    try:
        testing.wait_for(
            lambda: admin.status([job_id])[0].status == "Done", f"job {job_id} Done", timeout=60
        )
        assert pilot.wait(30) == 0
    finally:
        if pilot.poll() is None:
            pilot.kill()
            pilot.wait(10)
    assert not token_file.exists()  # read, then removed: no payload finds it on disk
    printed = testing.job_output_text(admin, job_id)
    assert "DIRAC_LIKE_IDENTITY" not in printed and "DIRAC_LIKE_PILOT_ID" in printed


# -- the commands ------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    return cli.main(list(argv))


def test_init_writes_private_files_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert run_cli("init", "--home", str(home)) == 0
    assert "admin identity" in capsys.readouterr().out
    private = [
        home / "keys" / "service.key",
        home / "identities.json",
        home / "identities" / "admin.identity",
        home / "default-identity",
    ]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in private)
    assert run_cli("init", "--home", str(home)) == 0
    assert "initialized already" in capsys.readouterr().out


def test_identity_commands(
    central: ServiceProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--server", central.endpoint]
    out = tmp_path / "carol.identity"
    assert (
        run_cli(
            "admin",
            "identity",
            "add",
            "carol",
            "--role",
            "user",
            "--group",
            "physics",
            "--out",
            str(out),
            *server,
        )
        == 0
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_identity(out).server == central.endpoint
    assert (
        run_cli("admin", "identity", "add", "carol", "--role", "user", "--out", str(out), *server)
        == 2
    )  # never overwrites a file
    capsys.readouterr()
    job = tmp_path / "hello.jdl"
    job.write_text(HELLO)
    assert run_cli("job", "submit", str(job), "--identity", str(out), "--json", *server) == 0
    assert run_cli("job", "list", "--identity", str(out), "--json", *server) == 0
    listed = capsys.readouterr().out
    assert '"owner": "carol"' in listed
    assert run_cli("admin", "identity", "list", "--json", *server) == 0
    names = capsys.readouterr().out
    assert '"carol"' in names and '"admin"' in names
    assert run_cli("admin", "identity", "list", "--identity", str(out), *server) == 1  # a user
    assert "may not" in capsys.readouterr().err
    assert run_cli("admin", "identity", "revoke", "carol", *server) == 0
    with (
        Client(central.endpoint, SHORT, identity=load_identity(out)) as carol,
        pytest.raises(ServiceUnavailable),
    ):
        carol.ping()


def test_an_insecure_service_answers_plaintext_and_warns(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = start_central(insecure=True)
    assert service.identity_path is None
    with Client(service.endpoint, FAST, insecure=True) as client:
        assert client.submit([HELLO], owner="anyone")
        assert client.list_jobs()[0].owner == "anyone"  # it believes what it is told
    assert "INSECURE" in service.stderr_text()
    assert not (service.home / "keys").exists()


# -- authorization over the wire -------------------------------------------------------------


def test_user_a_can_neither_see_nor_kill_nor_reschedule_user_bs_jobs(
    admin: Client, connect: Callable[..., Client]
) -> None:
    alice = connect(admin.identity_add("alice", "user", ["physics"]))
    bob = connect(admin.identity_add("bob", "user", ["physics"]))
    [bobs] = bob.submit([HELLO], owner="", group="")
    [alices] = alice.submit([HELLO], owner="", group="")
    for attempt in (
        lambda: alice.status([bobs]),
        lambda: alice.kill([bobs]),
        lambda: alice.reschedule([bobs]),
        lambda: alice.history(bobs),
    ):
        with pytest.raises(JobNotFound, match=f"^job {bobs} not found$"):
            attempt()
    assert {row.job_id for row in alice.list_jobs()} == {alices}
    [row] = admin.status([bobs])
    assert row.status != "Killed"  # the refused kill changed nothing
    assert alice.kill([alices])  # her own job she may kill


def test_another_users_job_gets_exactly_the_job_not_found_answer(
    admin: Client, connect: Callable[..., Client]
) -> None:
    """Issue 11, defect 11: the reply to a question about bob's job is byte for byte the reply
    about a job that does not exist (same code, same message), for every job operation."""
    alice = connect(admin.identity_add("alice", "user", ["physics"]))
    bob = connect(admin.identity_add("bob", "user", ["physics"]))
    [bobs] = bob.submit([HELLO], owner="", group="")
    missing = bobs + 1000

    def answer(job_id: int, op: str) -> tuple[str, str]:
        calls = {
            "status": lambda: alice.status([job_id]),
            "kill": lambda: alice.kill([job_id]),
            "history": lambda: alice.history(job_id),
            "peek": lambda: alice.peek(job_id),
            "output": lambda: alice.job_output(job_id),
        }
        with pytest.raises(JobNotFound) as caught:
            calls[op]()
        return caught.value.code, caught.value.message.replace(str(job_id), "N")

    for op in ("status", "kill", "history", "peek", "output"):
        assert answer(bobs, op) == answer(missing, op) == ("job_not_found", "job N not found")
    assert admin.status([bobs])[0].status == "Waiting"


def test_a_pilot_cannot_touch_a_job_matched_to_another_pilot(
    admin: Client, connect: Callable[..., Client]
) -> None:
    first, second = admin.add_pilots(SITE_A, "ce", 2)
    holder = connect(admin.pilot_token(SITE_A, first))
    intruder = connect(admin.pilot_token(SITE_A, second))
    admin.submit([HELLO + f' Site = "{SITE_A}";'], owner="alice")
    match = holder.request_job(first, PilotResources(site=SITE_A)).job
    assert match is not None
    with pytest.raises(Forbidden):
        intruder.update_status(match.job_id, match.attempt, second, "Running")
    with pytest.raises(Forbidden):  # nor under the holder's pilot id
        intruder.update_status(match.job_id, match.attempt, first, "Running")
    [row] = admin.status([match.job_id])
    assert row.status == "Matched"


def test_user_a_can_neither_peek_at_nor_read_nor_delete_user_bs_jobs(
    admin: Client, connect: Callable[..., Client]
) -> None:
    alice = connect(admin.identity_add("alice", "user", ["physics"]))
    bob = connect(admin.identity_add("bob", "user", ["physics"]))
    operator = connect(admin.identity_add("olga", "operator"))
    [bobs] = bob.submit([HELLO], owner="", group="")
    for attempt in (
        lambda: alice.peek(bobs),
        lambda: alice.job_description(bobs),
        lambda: alice.delete([bobs]),
    ):
        with pytest.raises(JobNotFound, match=f"^job {bobs} not found$"):
            attempt()
    with pytest.raises(Forbidden, match="may not delete jobs"):
        operator.delete([bobs])
    assert operator.peek(bobs).tail == "" and bob.peek(bobs).status == "Waiting"
    assert operator.job_description(bobs)["Executable"] == "/bin/echo"
    [row] = admin.status([bobs])
    assert row.status == "Waiting"  # the refused delete changed nothing
    assert bob.delete([bobs]).deleted == [bobs]


def test_a_pilot_reports_only_its_own_end(admin: Client, connect: Callable[..., Client]) -> None:
    first, second = admin.add_pilots(SITE_A, "ce", 2, fabric="slurm")
    intruder = connect(admin.pilot_token(SITE_A, second))
    with pytest.raises(Forbidden):
        intruder.pilot_stopped(first, 0)
    assert intruder.pilot_stopped(second, 0) is False  # its director reports its end
    states = {row.pilot_id: row.state for row in admin.pilots(site=SITE_A)}
    assert states == {first: "Submitted", second: "Submitted"}
