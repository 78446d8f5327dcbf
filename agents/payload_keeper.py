"""Payload keeping: nothing a payload starts outlives its pilot, its job or its lease (issue 11,
defect 8), at the cost of a bare spawn per job (issue 15).

**The exec helper** (what a pilot uses; :class:`dirac_like.agents.spawner.Spawner` starts it,
``python3 -I -S payload_keeper.py serve CHANNEL_FD``, one per pilot process) is two processes:

- the **watchdog** (:func:`serve`), a child subreaper that forks the helper proper and waits for
  it; if the helper dies (``kill -9`` included), everything it had is re-parented to the
  watchdog, which kills it all (SIGTERM, SIGKILL ``GRACE`` seconds later) and exits: the pilot
  sees the helper lost;
- the **helper proper** (:class:`ExecHelper`), in a session of its own, a child subreaper too,
  with SIGUSR1 as its parent-death signal (the watchdog's death: it then ends every payload as
  below and exits). It starts each payload itself, with ``posix_spawn`` through ctypes
  (:class:`Launcher`: no fork of Python; the payload in its own session and process group, in
  its job folder, every signal's disposition back to the default, glibc's 32 and 33 included,
  and an empty mask), and does in its one loop what a keeper process per job did before:

  - the payload exits: its end is written in its folder first (``payload_ended``, ``exit N`` or
    ``signal N``, fsync'd: a pilot killed a moment later leaves it for its successor, which
    reports the job from it); then what it left running is killed (SIGTERM, SIGKILL ``GRACE``
    seconds later; looked for only when the helper has children other than payloads); then
    the end goes to the pilot: the payload's wait status and the CPU seconds of the payload and
    of every process of it the helper reaped;
  - the lease runs out: ``lease_file`` (the pilot touches it each time the service acknowledges
    a heartbeat) is older than ``lease`` seconds (looked at every ``POLL`` seconds) — the pilot
    lost the service or was frozen (SIGSTOP). The service reschedules such a job only
    ``stalled_to_reschedule`` seconds later than that (the margin), so the old attempt is gone
    before a new one can start. The helper writes ``lease_expired`` in the job folder, kills
    the tree, and reports exit ``LEASE_EXIT``. A lease of 0 means no lease;
  - the pilot dies (its end of the channel closes: ``kill -9`` included): payloads that end by
    themselves within ``ORPHAN_GRACE`` seconds have their end noted; every process below the
    helper is killed and it exits (and the watchdog after it);
  - SIGTERM to the payload's group (the wrapper kills a job so) is the payload's: its end is
    noted and reported as any other end.

  What a payload abandons (a background child, a double-forked daemon) is re-parented to the
  helper, which tells whose it is by its session (the payload's, unless it called setsid) or
  else by ``TAG_VARIABLE`` in its environment (one value per job). The helper tells the pilot
  of each such orphan (``adopted``), so that the watchdog samples it with the payload's tree.

Weaker than a keeper per job in two cases, both needing a deliberate act: a process that left
the payload's session *and* exec'd with an environment without the tag (or one that cannot be
read) cannot be told apart: it is killed with the next payload that ends, whichever (it cannot
outlive its own job, but may die before it); and if the pilot, the helper and its watchdog are
all killed with ``kill -9`` at the same instant, the running payloads are left (with a keeper
per job, each payload died with its keeper by its parent-death signal, its own children did
not). Either of the three alone is covered: the watchdog for the helper, the helper for the
watchdog or the pilot, and, when the helper and the watchdog are both gone, the pilot's wrapper,
which kills what is left of a payload the helper was lost under (agents/wrapper.py).

**The keeper by itself** (a process per payload, as pilots used before issue 15; kept to run one
payload under a keeper by hand and for the tests):

    python3 -I -S payload_keeper.py PILOT_PID LEASE_FILE LEASE_SECONDS EXECUTABLE [ARGUMENT ...]

It makes itself a child subreaper, starts the payload (argv from EXECUTABLE on; SIGKILL as the
payload's parent-death signal, so it dies with its keeper) and waits. It kills every descendant
(SIGTERM, then SIGKILL after ``GRACE`` seconds) and exits when the payload exits (its end noted
as above first; the keeper exits with the payload's status), when its parent (PILOT_PID) dies
(SIGUSR1, its parent-death signal; a payload on its way out gets ``ORPHAN_GRACE`` seconds), or
when the lease runs out (``lease_expired``, exit ``LEASE_EXIT``). SIGTERM is ignored: the
payload gets it too, and the keeper waits for it. Only the standard library, and no import of
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
    for pid, (parent, _session) in process_table().items():
        children.setdefault(parent, []).append(pid)
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


def note_end(status: int, folder: str = "") -> None:
    """``payload_ended`` in ``folder`` (default: here): how the payload ended, durable before
    anything else happens."""
    text = (
        f"signal {os.WTERMSIG(status)}\n"
        if os.WIFSIGNALED(status)
        else f"exit {os.waitstatus_to_exitcode(status)}\n"
    )
    try:
        descriptor = os.open(
            os.path.join(folder, ENDED_MARK), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
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
# The exec helper: one per pilot, two processes (a watchdog and the helper proper, its child);
# the helper starts each payload itself with posix_spawn and keeps them all in one loop.

TAG_VARIABLE = "DIRAC_LIKE_PAYLOAD_TAG"  # in each payload's environment: finds its orphans
KILL_POLL = 0.02  # seconds between two looks at a tree being killed
MAX_BATCH = 32  # payloads one request may start (3 descriptors each: SCM_RIGHTS takes 253)
MAX_REPLIES = 256  # messages to the pilot packed in one packet (ends of one loop turn)
MARK_WRITERS = 8  # threads writing end marks (each fsync waits on the disk, not on the CPU)
# posix_spawn flags (glibc, <spawn.h>)
POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08
POSIX_SPAWN_SETSID = 0x80
SIGSET_BYTES = 128  # sizeof(sigset_t) in glibc: 1024 bits
SPAWN_FUNCTIONS = (
    "posix_spawn",
    "posix_spawnattr_init",
    "posix_spawnattr_setflags",
    "posix_spawnattr_setsigdefault",
    "posix_spawnattr_setsigmask",
    "posix_spawn_file_actions_init",
    "posix_spawn_file_actions_destroy",
    "posix_spawn_file_actions_adddup2",
    "posix_spawn_file_actions_addchdir_np",  # glibc 2.29
    "posix_spawn_file_actions_addclosefrom_np",  # glibc 2.34
)
SPAWN_STRUCT_BYTES = 1024  # more than sizeof(posix_spawnattr_t) or of its file actions (336, 80)
RT_SIGACTION = {"x86_64": 13, "aarch64": 134}  # the rt_sigaction system call's number
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class Launcher:
    """``posix_spawn`` through ctypes: the payload in its own session (so its own process group),
    in its folder, with its stdin, stdout and stderr, every signal's disposition set back to the
    default and an empty signal mask.

    Not ``os.posix_spawn``: its ``setsigdef`` is built with ``sigaddset``, which refuses glibc's
    internal signals 32 and 33, and glibc's child then leaves those two *ignored* (ignored
    signals stay ignored across exec). The default set here is raw bytes, every bit set, which
    ``posix_spawnattr_setsigdefault`` copies as they are. Only the bytes: no fork of Python,
    no Python in the child (glibc's clone with ``CLONE_VM | CLONE_VFORK``).

    A C library without the file actions used here (glibc before 2.34, musl): the helper forks
    each payload instead (:func:`fork_exec`, the same process state; slower)."""

    def __init__(self) -> None:
        libc = _LIBC
        self.forks = not all(hasattr(libc, name) for name in SPAWN_FUNCTIONS)
        if self.forks:
            return
        self.attributes = ctypes.create_string_buffer(SPAWN_STRUCT_BYTES)
        flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID
        every_signal = ctypes.create_string_buffer(b"\xff" * SIGSET_BYTES, SIGSET_BYTES)
        no_signal = ctypes.create_string_buffer(SIGSET_BYTES)
        for call, argument in (
            (libc.posix_spawnattr_init, None),
            (libc.posix_spawnattr_setflags, ctypes.c_short(flags)),
            (libc.posix_spawnattr_setsigdefault, every_signal),
            (libc.posix_spawnattr_setsigmask, no_signal),
        ):
            _check(call(self.attributes) if argument is None else call(self.attributes, argument))
        self.spawn_call = libc.posix_spawn
        self.init_actions = libc.posix_spawn_file_actions_init
        self.destroy_actions = libc.posix_spawn_file_actions_destroy
        self.dup2 = libc.posix_spawn_file_actions_adddup2
        self.chdir = libc.posix_spawn_file_actions_addchdir_np  # glibc 2.29
        self.closefrom = libc.posix_spawn_file_actions_addclosefrom_np  # glibc 2.34

    def spawn(
        self, path: bytes, argv: list[bytes], env: list[bytes], stdio: list[int], cwd: bytes
    ) -> int:
        if self.forks:
            return fork_exec(path, argv, env, stdio, cwd)
        actions = ctypes.create_string_buffer(SPAWN_STRUCT_BYTES)
        _check(self.init_actions(actions))
        try:
            for target, descriptor in enumerate(stdio):
                _check(self.dup2(actions, descriptor, target))
            _check(self.chdir(actions, cwd))
            _check(self.closefrom(actions, 3))  # nothing of the helper's leaks in
            pid = ctypes.c_int()
            arguments = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
            environment = (ctypes.c_char_p * (len(env) + 1))(*env, None)
            _check(
                self.spawn_call(
                    ctypes.byref(pid), path, actions, self.attributes, arguments, environment
                )
            )
            return pid.value
        finally:
            self.destroy_actions(actions)


def fork_exec(
    path: bytes, argv: list[bytes], env: list[bytes], stdio: list[int], cwd: bytes
) -> int:
    """What :class:`Launcher` does, with a fork of this (single-threaded) process: a failed exec
    is the child's exit 127, with the reason on its stderr."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        for target, descriptor in enumerate(stdio):
            os.dup2(descriptor, target)
        os.chdir(cwd)
        for signum in range(1, signal.NSIG):
            if signum not in (signal.SIGKILL, signal.SIGSTOP):
                try:  # noqa: SIM105
                    signal.signal(signum, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass  # glibc's own (32, 33): sigaction refuses them
        default_internal_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.closerange(3, 1 << 16)
        os.execve(path, argv, dict(item.split(b"=", 1) for item in env))
    except OSError as exc:
        os.write(2, f"cannot start {os.fsdecode(argv[0])}: {exc.strerror}\n".encode())
    os._exit(127)


def default_internal_signals() -> None:
    """Set glibc's own signals (32, 33) back to the default in this process: a process started
    by glibc's ``posix_spawn`` (``os.posix_spawn``: the pilot starts the exec helper so) has them
    ignored, and ``sigaction`` refuses to touch them; the system call does not. (Only where its
    number is known here: x86-64 and arm64.)"""
    number = RT_SIGACTION.get(os.uname().machine)
    if number is None:
        return
    action = ctypes.create_string_buffer(64)  # zeros: SIG_DFL, no flags, an empty mask
    for signum in (32, 33):
        _LIBC.syscall(ctypes.c_long(number), ctypes.c_int(signum), action, None, ctypes.c_size_t(8))


def _check(error: int) -> None:
    """posix_spawn* return an error number (0: success), not -1 and errno."""
    if error:
        raise OSError(error, os.strerror(error))


def find_program(name: str, env: "dict[str, str]", cwd: str) -> str:
    """Where exec would find ``name``: itself if it has a slash, else the first executable file
    of that name in the payload's ``PATH`` (as ``os.execvpe`` with that environment)."""
    if "/" in name:
        return name
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(cwd, folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(2, os.strerror(2))


def process_table() -> "dict[int, tuple[int, int]]":
    """Every live (not zombie) process: its parent's PID and its session id, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            table[int(entry)] = (int(fields[1]), int(fields[4]))
    return table


def session_of(pid: int) -> int:
    """A process's session id (zombies too: their stat stays until reaped); 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[4])
    except (OSError, IndexError, ValueError):
        return 0


def tag_of(pid: int) -> bytes:
    """The value of TAG_VARIABLE in a process's environment as it was started (b"" if none)."""
    name = TAG_VARIABLE.encode() + b"="
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            for item in environ.read().split(b"\0"):
                if item.startswith(name):
                    return item[len(name) :]
    except OSError:
        pass
    return b""


def _noop(signum: int, frame: object) -> None:
    """The signals the helper waits for (SIGCHLD; SIGUSR1, its watchdog's death) wake its poll
    through the wakeup descriptor; nothing to do in the handler."""


class MarkWriters:
    """Threads that write and fsync the payloads' end marks (``note_end``), so that the helper's
    loop goes on while each waits on the disk (an fsync here is ~4 ms; one at a time, they
    would cap a pilot at ~250 job ends a second): the loop learns of each mark written through a
    pipe it polls. None (``count`` 0) where payloads are forked (:func:`fork_exec`): a fork of a
    process with threads is not safe, the marks are then written in the loop."""

    def __init__(self, count: int) -> None:
        import queue
        import threading

        self.empty = queue.Empty
        self.todo: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.read, self.write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pending = 0  # jobs submitted, not taken back yet
        self.threaded = count > 0
        for _ in range(count):
            threading.Thread(target=self._work, name="marks", daemon=True).start()

    def submit(self, job: "Job") -> None:
        self.pending += 1
        if self.threaded:
            self.todo.put(job)
        else:
            self._write(job)

    def take(self) -> "list[Job]":
        """The jobs whose mark is written (durable) since the last call."""
        try:
            while os.read(self.read, 4096):
                pass
        except BlockingIOError:
            pass
        written = []
        while True:
            try:
                written.append(self.done.get_nowait())
            except self.empty:
                break
        self.pending -= len(written)
        return written

    def _work(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())  # the loop's to take
        while True:
            self._write(self.todo.get())

    def _write(self, job: "Job") -> None:
        note_end(job.status or 0, job.folder)
        self.done.put(job)
        try:  # noqa: SIM105
            os.write(self.write, b".")
        except BlockingIOError:
            pass  # the pipe is full: the loop has a wake-up to come already


class Job:
    """One payload the helper started, until its end is sent to the pilot."""

    __slots__ = (
        "adopted",
        "cpu",
        "deadline",
        "folder",
        "hard",
        "lease",
        "lease_ended",
        "lease_file",
        "pid",
        "status",
        "tag",
    )

    def __init__(self, pid: int, folder: str, lease_file: str, lease: float, tag: bytes) -> None:
        self.pid = pid  # also its session and process group id
        self.folder = folder
        self.lease_file = lease_file
        self.lease = lease
        self.tag = tag
        self.cpu = 0.0  # seconds: the payload and each process of it the helper reaped
        self.status: int | None = None  # the payload's wait status, once reaped
        self.lease_ended = False  # killed at the end of its lease
        self.deadline = 0.0  # being killed (monotonic): SIGKILL then, or give up
        self.hard = False  # SIGKILL sent
        self.adopted: list[int] = []  # its orphans the pilot was told of


class ExecHelper:
    """The helper proper: the child subreaper of every payload, one loop for all of them.

    It does for each payload what a keeper did (see the module's docstring): the fsync'd end
    mark, then the kill of what the payload left (SIGTERM, SIGKILL ``GRACE`` seconds later), the
    lease, and the end (wait status, CPU) sent to the pilot. What the payload abandons is
    re-parented to this process; it is told apart by its session (the payload's, unless it
    called setsid) or else by ``TAG_VARIABLE`` in its environment (one per job). A process that
    has neither (it left the session *and* exec'd with another environment) cannot be told
    apart: it is killed with the next payload that ends, whichever it is. The loop waits in
    ``poll`` on the channel and on the wakeup descriptor of SIGCHLD; a timer only while some
    payload has a lease (every ``POLL`` seconds) or a tree is being killed."""

    def __init__(self, channel: int, watchdog: int) -> None:
        import json
        import select
        import socket

        self.json, self.socket = json, socket
        self.me = os.getpid()
        self.watchdog = watchdog
        self.jobs: dict[int, Job] = {}  # payload PID -> job, until its end is sent
        self.tags: dict[bytes, Job] = {}
        self.owners: dict[int, Job] = {}  # an orphan's PID -> its job, once told
        self.dying: list[Job] = []  # trees being killed
        self.serial = 0
        self.outgoing: list[bytes] = []  # packets the pilot has not taken yet
        self.replies: list[dict] = []  # type: ignore[type-arg, unused-ignore]  # this turn's
        self.launcher = Launcher()
        self.marks = MarkWriters(0 if self.launcher.forks else MARK_WRITERS)
        os.set_inheritable(channel, False)
        self.link = socket.socket(fileno=channel)
        self.link.setblocking(False)  # a frozen pilot must not stop the loop (leases)
        self.wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        for signum in (signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(signum, _noop)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        self.poller = select.poll()
        self.poller.register(self.link, select.POLLIN)
        self.poller.register(self.wake_read, select.POLLIN)
        self.poller.register(self.marks.read, select.POLLIN)
        self.sleeper = select.poll()  # the wakeup descriptor alone: a child's end cuts it short
        self.sleeper.register(self.wake_read, select.POLLIN)
        self.pollin, self.pollout = select.POLLIN, select.POLLOUT
        self.children_file = f"/proc/self/task/{self.me}/children"

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        next_lease_check = time.monotonic() + POLL
        while True:
            for descriptor, events in self.poller.poll(self._timeout(next_lease_check)):
                if descriptor == self.wake_read:
                    self._drain_wakeups()
                elif descriptor == self.marks.read:
                    self._marked(self.marks.take())
                elif events & self.pollout:
                    self._flush()
                else:
                    self._receive()
            self._reap()
            if os.getppid() != self.watchdog:
                self.shutdown()  # the watchdog died (SIGUSR1): end every payload, then this
            now = time.monotonic()
            if now >= next_lease_check:
                self._check_leases()
                self._adopt()
                next_lease_check = now + POLL
            if self.dying:
                self._kill_step()
            if self.replies:
                self._pack()

    def _drain_wakeups(self) -> None:
        while True:
            try:
                if not os.read(self.wake_read, 512):
                    return
            except BlockingIOError:
                return

    def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, less if a child ends meanwhile."""
        if self.sleeper.poll(int(seconds * 1000)):
            self._drain_wakeups()

    def _timeout(self, next_lease_check: float) -> "int | None":
        if self.dying:
            return int(KILL_POLL * 1000)
        if self.jobs:  # leases, and orphans to tell the pilot of
            return max(0, int((next_lease_check - time.monotonic()) * 1000) + 1)
        return None

    # -- the pilot's requests ----------------------------------------------------------------

    def _receive(self) -> None:
        import array

        socket = self.socket
        while True:
            try:
                message, ancillary, _, _ = self.link.recvmsg(
                    1 << 20, socket.CMSG_SPACE(MAX_BATCH * 3 * 4), socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return
            except OSError:
                message, ancillary = b"", []
            if not message:
                self.shutdown()  # the pilot is gone (it exited, or died)
            descriptors = array.array("i")
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    descriptors.frombytes(data[: len(data) - len(data) % descriptors.itemsize])
            try:
                self._start_all(message, list(descriptors))
            finally:
                for descriptor in descriptors:
                    os.close(descriptor)

    def _start_all(self, message: bytes, descriptors: "list[int]") -> None:
        """One request (an object, three descriptors) or a batch of them (a list, three
        descriptors each, in order: a pilot's turn starts its jobs together, issue 15)."""
        requests = self.json.loads(message)  # (unreadable: the helper dies, the pilot sees it)
        if not isinstance(requests, list):
            requests = [requests]
        elif len(descriptors) != 3 * len(requests):
            descriptors = []  # which are whose cannot be told: each request is refused
        for index, request in enumerate(requests):
            self._start(request, descriptors[3 * index : 3 * index + 3])

    def _start(self, request: dict, stdio: list[int]) -> None:  # type: ignore[type-arg, unused-ignore]
        self.serial += 1
        tag = f"{self.me}.{self.serial}".encode()
        try:
            env = request["env"]
            env[TAG_VARIABLE] = tag.decode()
            if len(stdio) != 3:
                raise OSError(0, "the payload's stdin, stdout and stderr did not come")
            argv = request["argv"]
            pid = self.launcher.spawn(
                os.fsencode(find_program(argv[0], env, request["cwd"])),
                [os.fsencode(argument) for argument in argv],
                [os.fsencode(f"{name}={value}") for name, value in env.items()],
                stdio,
                os.fsencode(request["cwd"]),
            )
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            # the payload's, or a request this cannot read: refused, the loop goes on
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            error = f"cannot start {(request.get('argv') or ['?'])[0]}: {reason}"
            self._send({"id": request.get("id"), "error": error})
            return
        job = Job(pid, request["cwd"], request["lease_file"], float(request["lease"]), tag)
        self.jobs[pid] = job
        self.tags[tag] = job
        self._send({"id": request["id"], "pid": pid})

    def _send(self, message: dict) -> None:  # type: ignore[type-arg, unused-ignore]
        """Sent at the end of this loop turn, with the others of the turn (:meth:`_pack`)."""
        self.replies.append(message)

    def _pack(self) -> None:
        """This turn's messages to the pilot: one packet (a list; one message alone as it is),
        so the ends of a turn's payloads and the replies to a batch cost one send and one
        wake-up of the pilot's reader."""
        replies, self.replies = self.replies, []
        for first in range(0, len(replies), MAX_REPLIES):
            some = replies[first : first + MAX_REPLIES]
            self.outgoing.append(self.json.dumps(some[0] if len(some) == 1 else some).encode())
        self._flush()

    def _flush(self) -> None:
        sent = 0
        try:
            for message in self.outgoing:
                self.link.send(message)
                sent += 1
        except BlockingIOError:
            pass  # the pilot's queue is full: sent when it can take more (POLLOUT)
        except OSError:
            self.shutdown()  # the pilot is gone
        del self.outgoing[:sent]
        self.poller.modify(self.link, self.pollin | (self.pollout if self.outgoing else 0))

    # -- ends --------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Reap every child that ended; a payload's end goes to be noted (fsync'd, by the mark
        writers), and only then (:meth:`_marked`) is what it left looked for and killed, and
        the end sent to the pilot."""
        while True:
            try:
                waitable = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if waitable is None:
                break
            pid = waitable.si_pid
            job = self.jobs.get(pid)
            owner = job or self.owners.pop(pid, None) or self.jobs.get(session_of(pid))
            _, status, usage = os.wait4(pid, 0)
            if owner is not None:
                owner.cpu += usage.ru_utime + usage.ru_stime
            if job is not None and job.status is None:
                job.status = status
                if not job.lease_ended:
                    self.marks.submit(job)

    def _marked(self, ended: "list[Job]") -> None:
        """These payloads' ends are durable: kill what they left (looked for only when this
        process has children other than payloads), or send their ends at once."""
        if not ended:
            return
        if not self._strays():
            for job in ended:
                self._ended(job)  # the common case: nothing left (no /proc scan)
            return
        members = self._members()
        for job in ended:
            if members.get(job) or members.get(None):
                self._kill(job, members, signal.SIGTERM, GRACE)
            else:
                self._ended(job)  # the strays are other payloads' processes

    def _strays(self) -> bool:
        """Whether this process has children that are not payloads still running."""
        try:
            with open(self.children_file, "rb") as children:
                pids = children.read().split()
        except OSError:
            return True
        return any(int(pid) not in self.jobs for pid in pids)

    def _ended(self, job: Job) -> None:
        status = (LEASE_EXIT << 8) if job.lease_ended else job.status
        self.jobs.pop(job.pid, None)
        self.tags.pop(job.tag, None)
        self._send({"ended": job.pid, "status": status, "cpu": job.cpu})

    def _adopt(self) -> None:
        """Tell the pilot of each new orphan (this process's child, not a payload) of a job:
        its watchdog samples them with the payload's tree."""
        try:
            with open(self.children_file, "rb") as children:
                pids = [int(pid) for pid in children.read().split()]
        except OSError:
            return
        for pid in pids:
            if pid in self.jobs or pid in self.owners:
                continue
            job = self._owner(pid, session_of(pid))
            if job is not None and pid not in job.adopted:
                job.adopted.append(pid)
                self._send({"adopted": job.pid, "pid": pid, "parent": self.me})

    def _check_leases(self) -> None:
        expired: dict[tuple[str, float], bool] = {}
        members: dict[Job | None, list[int]] | None = None
        for job in list(self.jobs.values()):
            if job.lease <= 0 or job.lease_ended or job.status is not None:
                continue
            key = (job.lease_file, job.lease)
            if key not in expired:
                expired[key] = lease_expired(job.lease_file, job.lease)
            if not expired[key]:
                continue
            job.lease_ended = True
            try:
                with open(os.path.join(job.folder, LEASE_MARK), "w") as mark:
                    mark.write(f"payload killed: no heartbeat acknowledged for {job.lease:g} s\n")
            except OSError:
                pass
            if members is None:
                members = self._members()
            self._kill(job, members, signal.SIGTERM, GRACE)

    # -- killing trees -----------------------------------------------------------------------

    def _members(self) -> "dict[Job | None, list[int]]":
        """Every live process under this one, by job (None: the ones no job can be told for)."""
        table = process_table()
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in table.items():
            children.setdefault(parent, []).append(pid)
        found: dict[Job | None, list[int]] = {}
        for root in children.get(self.me, []):
            job = self.jobs.get(root) or self._owner(root, table[root][1])
            tree, stack = [root], [root]
            while stack:
                below = children.get(stack.pop(), [])
                tree += below
                stack += below
            found.setdefault(job, []).extend(tree)
        return found

    def _owner(self, orphan: int, session: int) -> "Job | None":
        """The job an orphan (now this process's child) came from: its session's, else its
        tag's."""
        job = self.owners.get(orphan)
        if job is None or self.jobs.get(job.pid) is not job:  # not told yet, or its job ended
            job = self.jobs.get(session) or self.tags.get(tag_of(orphan))
        if job is not None:
            self.owners[orphan] = job
        return job

    def _kill(
        self, job: Job, members: "dict[Job | None, list[int]]", signum: int, wait: float
    ) -> None:
        """Signal the job's processes (and those of no known job); its end is sent once none
        is left (looked at every KILL_POLL seconds), or given up after SIGKILL."""
        for pid in members.get(job, []) + members.get(None, []):
            try:  # noqa: SIM105
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        job.deadline = time.monotonic() + wait
        if job not in self.dying:
            self.dying.append(job)

    def _kill_step(self) -> None:
        members = self._members()
        now = time.monotonic()
        for job in list(self.dying):
            left = members.get(job, []) + members.get(None, [])
            if not left and job.status is not None:
                self.dying.remove(job)
                self._ended(job)
            elif now >= job.deadline and not job.hard:
                job.hard = True
                self._kill(job, members, signal.SIGKILL, 5.0)
            elif now >= job.deadline:
                os.write(
                    2, f"exec helper: processes of payload {job.pid} survived SIGKILL\n".encode()
                )
                self.dying.remove(job)
                if job.status is None:
                    job.status = signal.SIGKILL
                self._ended(job)

    def shutdown(self) -> None:
        """The pilot (or the watchdog) is gone: payloads that end by themselves within
        ORPHAN_GRACE have their end noted (for the pilot's successor); then every process below
        this one is killed (SIGTERM, SIGKILL GRACE seconds later) and this exits."""
        deadline = time.monotonic() + 10.0  # marks on their way to the disk are finished first
        while self.marks.pending and time.monotonic() < deadline:
            self._nap(KILL_POLL)
            self.marks.take()
        deadline = time.monotonic() + ORPHAN_GRACE
        while any(job.status is None for job in self.jobs.values()) and time.monotonic() < deadline:
            self._nap(KILL_POLL)
            self._reap_quietly()
        for signum, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 5.0)):
            for pid in descendants(self.me):
                try:  # noqa: SIM105
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._reap_quietly()
                if not descendants(self.me):
                    os._exit(0)
                self._nap(KILL_POLL)
        os._exit(1)

    def _reap_quietly(self) -> None:
        """Reap what ended; a payload that exited by itself has its end noted."""
        for pid, status in reap().items():
            job = self.jobs.get(pid)
            if job is not None and job.status is None and not job.lease_ended:
                job.status = status
                if os.WIFEXITED(status):
                    note_end(status, job.folder)


def serve(channel: int) -> None:
    """The exec helper, as the pilot starts it: this process is the **watchdog**, a child
    subreaper that forks the helper proper (:class:`ExecHelper`, on the SOCK_SEQPACKET socket
    ``channel``) and waits for it. If the helper dies (``kill -9`` included), every payload and
    every process they left is re-parented here: the watchdog kills them all (SIGTERM, SIGKILL
    ``GRACE`` seconds later) and exits, which the pilot sees as the helper lost. If the watchdog
    dies, the helper gets SIGUSR1 (its parent-death signal) and does the same. The helper lives
    until the pilot closes its end of the channel (the pilot exited or died: then it kills its
    payloads and exits, and the watchdog after it), in a session of its own (a signal to the
    watchdog's group does not reach it).

    A request is a JSON object ``{"id", "argv", "cwd", "env", "lease_file", "lease"}`` with three
    file descriptors (the payload's stdin, stdout, stderr), or a list of up to ``MAX_BATCH`` such
    objects with three descriptors each, in order; the reply ``{"id", "pid"}`` (or
    ``{"id", "error"}``), and when that payload has ended ``{"ended", "status", "cpu"}``: its PID,
    wait status, and the CPU seconds of the payload and everything of it that was reaped. The
    messages of one turn of the helper's loop go in one packet, as a list (one alone: as it is)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)  # the pilot decides; its exit ends this
    # The pilot started this with them blocked (one sent before now is pending: ignored, it is
    # dropped).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])  # taken with sigtimedwait
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    watchdog = os.getpid()
    helper = os.fork()
    if helper == 0:
        try:
            os.setsid()
            prctl(PR_SET_CHILD_SUBREAPER, 1)  # not inherited from the watchdog
            prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
            signal.signal(signal.SIGUSR1, _noop)  # before the check: a death now is seen
            if os.getppid() != watchdog:
                os._exit(1)
            ExecHelper(channel, watchdog).run()
        except BaseException as exc:
            os.write(2, f"exec helper: {exc!r}\n".encode())
        os._exit(1)
    # The watchdog keeps its copy of the channel: the pilot sees the helper lost once what it
    # left has been killed.
    os.waitpid(helper, 0)
    kill_tree()  # what the helper left (nothing, unless it died): re-parented here
    os._exit(0)


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
