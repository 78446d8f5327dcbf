"""The payload keeper: a tiny process between the pilot and the payload, so that no process of
a payload outlives its pilot or its lease (issue 11, defect 8).

A pilot starts one **exec helper** (``python3 -I -S payload_keeper.py serve CHANNEL_FD``, from
:class:`dirac_like.agents.spawner.Spawner`), and the helper forks one keeper per job: a fork of a
small process that has already started, not a Python start-up per job (issue 15: that cost
~20 ms of CPU per job). The helper lives until the pilot closes its end of the channel, which
happens when the pilot process ends, ``kill -9`` included: not when the thread that asked for a
payload ends (a parent-death signal follows the parent *thread*, so a keeper forked by a pilot
worker thread that exits would be told its pilot died). The keeper can also be run by itself:

    python3 -I -S payload_keeper.py PILOT_PID LEASE_FILE LEASE_SECONDS EXECUTABLE [ARGUMENT ...]

It makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``): every process the payload
starts and abandons (a background child, a double-forked daemon) is re-parented to the keeper,
not to init, so the keeper sees the whole tree and reaps it. Then it starts the payload (argv
from EXECUTABLE on; SIGKILL as the payload's parent-death signal, so it dies with its keeper) and
waits. It kills every descendant (SIGTERM, then SIGKILL after ``GRACE`` seconds) and exits when:

- the payload exits: the keeper first writes ``payload_ended`` in its working folder (``exit N``
  or ``signal N``, fsync'd: a pilot killed a moment later leaves it for its successor, which
  reports the job from it), then kills what the payload left running and exits with the
  payload's status (the same exit code, or dies of the same signal);
- its parent dies (the exec helper, or the pilot for a keeper run by itself; ``kill -9``
  included): the kernel sends the keeper SIGUSR1 (``PR_SET_PDEATHSIG``); the keeper gives a
  payload already on its way out ``ORPHAN_GRACE`` seconds to exit by itself (then its end is
  noted as above), kills the tree and exits. (A parent that died while the keeper was starting
  is seen too: its parent is no longer the one it was given.)
- the lease runs out: ``LEASE_FILE`` (the pilot touches it each time the service acknowledges a
  heartbeat) is older than ``LEASE_SECONDS`` — the pilot lost the service or was frozen
  (SIGSTOP). The service reschedules such a job only ``stalled_to_reschedule`` seconds later
  than that (the margin), so the old attempt is gone before a new one can start. The keeper
  writes ``lease_expired`` in its working folder and exits with ``LEASE_EXIT``. A lease of 0
  means no lease.

SIGTERM is ignored: the wrapper signals the whole process group, payload included, and the
keeper goes on reaping until the payload exits. Only the standard library, and no import of
dirac-like: it starts in milliseconds (``-I -S``, and few imports).
"""

# Each import costs start-up time on every job: _signal, not signal (which imports enum); no
# contextlib; no __future__.
import _signal as signal  # type: ignore[import-not-found, unused-ignore]
import ctypes
import os
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEASE_EXIT = 197  # the keeper killed the payload at the end of its lease
LEASE_MARK = "lease_expired"  # written in the working folder when it did
ENDED_MARK = "payload_ended"  # written in the working folder when the payload ended
POLL = 0.2  # seconds between two looks at the lease (a child's end or the pilot's death wakes it)
WAKE = (signal.SIGCHLD, signal.SIGUSR1)
# Set back to the default in the payload (ignored ones stay ignored across exec; Python ignores
# SIGPIPE and SIGXFSZ, the exec helper SIGINT and SIGHUP), as subprocess does.
RESET = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ)
GRACE = 2.0  # SIGTERM -> SIGKILL of what is left
ORPHAN_GRACE = 0.5  # seconds a payload whose pilot died may take to finish exiting by itself


_LIBC = ctypes.CDLL(None, use_errno=True)  # once: a keeper forked from the helper inherits it
_PRCTL = _LIBC.prctl


def prctl(option: int, value: int) -> None:
    if _PRCTL(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def descendants(root: int) -> list[int]:
    """Every live process under ``root`` (from /proc: parent links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found


def reap() -> dict[int, int]:
    """Reap every child that has ended; their wait statuses by PID."""
    ended: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = status


def has_children() -> bool:
    """Whether any process is our child (every descendant left has one above it that is)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def kill_tree() -> None:
    """SIGTERM to every descendant, then SIGKILL to what is left after GRACE seconds."""
    if not has_children():
        return  # the common case: the payload left nothing (no /proc scan)
    me = os.getpid()
    for signum, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 5.0)):
        for pid in descendants(me):
            try:  # noqa: SIM105 (contextlib costs start-up time)
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while descendants(me) and time.monotonic() < deadline:
            reap()
            signal.sigtimedwait([signal.SIGCHLD], 0.02)
        reap()
        if not descendants(me):
            return


def lease_expired(lease_file: str, lease: float) -> bool:
    if lease <= 0:
        return False
    try:
        renewed = os.stat(lease_file).st_mtime
    except OSError:
        return True  # the pilot's folder is gone
    return time.time() - renewed > lease


def exit_like(status: int) -> None:
    """Exit with the payload's wait status: its exit code, or death by its signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        time.sleep(1)  # a signal that does not kill (none of those that end a process)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def note_end(status: int) -> None:
    """``payload_ended``: how the payload ended, durable before anything else happens."""
    text = (
        f"signal {os.WTERMSIG(status)}\n"
        if os.WIFSIGNALED(status)
        else f"exit {os.waitstatus_to_exitcode(status)}\n"
    )
    try:
        descriptor = os.open(ENDED_MARK, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, text.encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass


def start(argv: list[str], env: "dict[str, str] | None" = None) -> int:
    """Fork the payload: it dies with the keeper (SIGKILL as its parent-death signal: the
    keeper is single-threaded, so this follows the keeper itself), with the signal
    dispositions a fresh process has, then exec it."""
    keeper = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            for signum in RESET:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WAKE)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != keeper:  # the keeper died before the signal was armed
                os._exit(1)
            if env is None:
                os.execvp(argv[0], argv)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"cannot start {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    return pid


def orphaned(payload: int) -> None:
    """The pilot died: kill the tree and exit. A payload that was already on its way out (it
    exits by itself within ORPHAN_GRACE) has its end noted, for the pilot's successor to report;
    one killed here is not (its job is rescheduled)."""
    deadline = time.monotonic() + ORPHAN_GRACE
    ended = reap()
    while payload not in ended and time.monotonic() < deadline:
        signal.sigtimedwait([signal.SIGCHLD], max(0.0, deadline - time.monotonic()))
        ended.update(reap())
    if payload in ended and os.WIFEXITED(ended[payload]):
        note_end(ended[payload])
    kill_tree()
    os._exit(1)


def keep(
    parent: int, lease_file: str, lease: float, argv: list[str], env: "dict[str, str] | None" = None
) -> None:
    """Be the keeper of the payload ``argv`` (never returns): ``parent`` is the process whose
    death ends the payload (the pilot, or the pilot's exec helper); ``env`` is the payload's
    environment (None: this process's; the helper passes it here rather than rewriting its
    keeper's ``os.environ``, issue 15)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the payload got it too: wait for it
    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE)  # taken with sigtimedwait below
    prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    payload = start(argv, env)
    pilot_gone = False
    while True:
        ended = reap()
        if payload in ended:
            note_end(ended[payload])
            kill_tree()
            exit_like(ended[payload])
        if pilot_gone or os.getppid() != parent:
            orphaned(payload)
        if lease_expired(lease_file, lease):
            kill_tree()
            try:
                with open(LEASE_MARK, "w") as mark:
                    mark.write(f"payload killed: no heartbeat acknowledged for {lease:g} s\n")
            except OSError:
                pass
            os._exit(LEASE_EXIT)
        woken = signal.sigtimedwait(WAKE, POLL)
        pilot_gone = woken is not None and woken.si_signo == signal.SIGUSR1


# --------------------------------------------------------------------------------------------
# The exec helper: one per pilot, forks a keeper per job (no Python start-up per job).


def serve(channel: int) -> None:
    """Serve spawn requests on the SOCK_SEQPACKET socket ``channel`` until the pilot closes its
    end (it exited or died: then this exits and every keeper gets its parent-death signal).

    A request is a JSON object ``{"id", "argv", "cwd", "env", "lease_file", "lease"}`` with three
    file descriptors (the payload's stdin, stdout, stderr); the reply ``{"id", "pid"}`` (or
    ``{"id", "error"}``), and when that keeper has ended ``{"ended", "status", "cpu"}``: its PID,
    wait status, and the CPU seconds of the keeper and everything it waited for."""
    import json
    import select
    import socket

    stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
    for signum in stop_signals:
        signal.signal(signum, signal.SIG_IGN)  # the pilot decides; its exit ends this
    # The pilot started this with them blocked (one sent before now is pending: ignored, it is
    # dropped); the keepers forked from here start with them unblocked.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    link = socket.socket(fileno=channel)
    poller = select.poll()
    poller.register(link, select.POLLIN)
    keepers: dict[int, int] = {}  # pidfd -> keeper PID
    while True:
        for descriptor, _ in poller.poll():
            if descriptor != link.fileno():
                pid = keepers.pop(descriptor)
                poller.unregister(descriptor)
                os.close(descriptor)
                _, status, usage = os.wait4(pid, 0)
                cpu = usage.ru_utime + usage.ru_stime
                link.send(json.dumps({"ended": pid, "status": status, "cpu": cpu}).encode())
                continue
            message, descriptors, _, _ = socket.recv_fds(link, 1 << 20, 3)
            if not message:
                os._exit(0)  # the pilot is gone
            request = json.loads(message)
            try:
                pid = fork_keeper(request, descriptors, [link.fileno(), *keepers])
                pidfd = os.pidfd_open(pid)
            except OSError as exc:
                link.send(json.dumps({"id": request["id"], "error": str(exc)}).encode())
                continue
            finally:
                for descriptor in descriptors:
                    os.close(descriptor)
            keepers[pidfd] = pid
            poller.register(pidfd, select.POLLIN)
            link.send(json.dumps({"id": request["id"], "pid": pid}).encode())


def fork_keeper(request: dict, descriptors: list[int], close: list[int]) -> int:  # type: ignore[type-arg, unused-ignore]
    """Fork a keeper for one payload, in its own session, its working folder and environment,
    with ``descriptors`` as its stdin, stdout and stderr."""
    helper = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        for descriptor in close:
            os.close(descriptor)
        os.setsid()
        for target, descriptor in enumerate(descriptors):
            os.dup2(descriptor, target)
        for descriptor in descriptors:
            if descriptor > 2:
                os.close(descriptor)
        os.chdir(request["cwd"])
        keep(
            helper, request["lease_file"], float(request["lease"]), request["argv"], request["env"]
        )
    except BaseException as exc:
        os.write(2, f"payload keeper: {exc}\n".encode())
    os._exit(127)


def main(args: list[str]) -> None:
    if len(args) == 2 and args[0] == "serve":
        serve(int(args[1]))
    if len(args) < 4:
        os.write(
            2,
            b"usage: payload_keeper.py PILOT_PID LEASE_FILE LEASE_SECONDS EXECUTABLE [ARG...]\n"
            b"       payload_keeper.py serve CHANNEL_FD\n",
        )
        os._exit(2)
    keep(int(args[0]), args[1], float(args[2]), args[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
