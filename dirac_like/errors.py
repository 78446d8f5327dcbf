"""One exception hierarchy for the whole tree.

Every error has a stable wire code (sent in error replies) and a CLI exit code. The client turns a
wire error back into the same class with :func:`error_from_wire`, so callers catch
``JobNotFound`` whether the failure happened locally or in the central service.
"""

from __future__ import annotations

# CLI exit codes (documented in the README).
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_SCHEMA_TOO_NEW = 4  # a central service refused a store written by a newer release


class DiracLikeError(Exception):
    """Base of every error dirac-like raises on purpose."""

    code = "internal"
    exit_code = EXIT_REFUSED
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InternalError(DiracLikeError):
    """A bug or an unexpected failure inside the service; the request had no effect."""

    code = "internal"


class ProtocolError(DiracLikeError):
    """A frame that is not a valid request or reply (garbage, wrong envelope, wrong types)."""

    code = "bad_request"


class UnsupportedVersion(ProtocolError):
    code = "bad_version"


class UnknownOperation(ProtocolError):
    code = "unknown_op"


class MessageTooLarge(ProtocolError):
    code = "too_large"


class InvalidArgument(DiracLikeError):
    """Well-formed request whose arguments are not acceptable."""

    code = "invalid_argument"


class InvalidJobDescription(InvalidArgument):
    """A JDL/JSON job description that cannot be parsed or does not validate.

    ``attribute`` and ``line`` say where the problem is, when known.
    """

    code = "invalid_jdl"

    def __init__(
        self,
        message: str,
        *,
        attribute: str | None = None,
        line: int | None = None,
        file: str | None = None,
    ):
        where = []
        if attribute is not None:
            where.append(f"attribute {attribute}")
        if line is not None:
            where.append(f"line {line}")
        full = f"{message} ({', '.join(where)})" if where else message
        super().__init__(f"{file}: {full}" if file else full)
        self.detail = message
        self.attribute = attribute
        self.line = line
        self.file = file

    def in_file(self, file: str) -> InvalidJobDescription:
        """The same error, naming the job file it comes from."""
        return InvalidJobDescription(
            self.detail, attribute=self.attribute, line=self.line, file=file
        )


class NotFound(DiracLikeError):
    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class JobNotVisible(JobNotFound):
    """Another owner's job, refused with exactly the answer a job that does not exist gets
    (same code, same message), so that nobody learns whether a job exists or whose it is. The
    service audits it as a refusal; on the wire it is a plain job_not_found."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_not_found_message(job_id))


def job_not_found_message(job_id: int) -> str:
    """The one message of a job_not_found answer."""
    return f"job {job_id} not found"


class PilotNotFound(NotFound):
    code = "pilot_not_found"


class LimitExceeded(InvalidArgument):
    """A request over one of the service's per-identity limits (jobs per request, waiting jobs
    per user, bytes per job description): nothing of it was done."""

    code = "limit_exceeded"


class IllegalTransition(DiracLikeError):
    """A status change the job state machine does not allow."""

    code = "illegal_transition"


class StaleAttempt(IllegalTransition):
    """An update for an earlier attempt of a job that has since been rescheduled."""

    code = "stale_attempt"


class ConfigError(DiracLikeError):
    """A configuration file or value that is wrong; the message names the key."""

    code = "config_error"
    exit_code = EXIT_USAGE


class AlreadyRunning(DiracLikeError):
    """Another daemon of the same kind holds this home (or store); the message names its PID."""

    code = "already_running"


class StoreError(DiracLikeError):
    """The durable store failed; nothing was acknowledged."""

    code = "store_error"
    retryable = True


class SchemaTooNew(StoreError):
    """A store whose schema is newer than this code knows: it is refused, never guessed at
    (upgrade dirac-like). Retrying cannot help."""

    code = "schema_too_new"
    retryable = False
    exit_code = EXIT_SCHEMA_TOO_NEW

    @classmethod
    def of(cls, store: object, stored: int, known: int) -> SchemaTooNew:
        return cls(
            f"store {store} has schema version {stored}, newer than this code knows ({known}): "
            "upgrade dirac-like to open it"
        )


class UnstorableValue(StoreError):
    """A change the store refuses for what it holds (a value out of its range, a broken
    record), not because the store is down: the request that made it is at fault, and it alone
    is undone (retrying it cannot help)."""

    code = "internal"
    retryable = False


class Forbidden(DiracLikeError):
    """The authenticated principal may not do this (its role, or the object is not its own)."""

    code = "forbidden"


class RateLimited(DiracLikeError):
    """Too many requests from one identity; try again later."""

    code = "rate_limited"
    retryable = True


class ServiceUnavailable(DiracLikeError):
    """The central service did not answer within the client's retries."""

    code = "unavailable"
    exit_code = EXIT_UNREACHABLE
    retryable = True


class InvalidLfn(InvalidArgument):
    """A logical file name that breaks the namespace rules (see dirac_like/lfns.py)."""

    code = "invalid_lfn"


class LfnNotFound(NotFound):
    """No such logical file in the replica catalog."""

    code = "lfn_not_found"


class UnknownStorageElement(NotFound):
    code = "unknown_se"


class StorageError(DiracLikeError):
    """A storage element failed an operation (down, full, refused); another try may work."""

    code = "storage_error"
    retryable = True


class StorageUnavailable(StorageError):
    """The storage element does not answer, or is Banned or not allowed for this operation."""

    code = "se_unavailable"


class StorageFull(StorageError):
    """The storage element has no room for the file (its configured total space is used up)."""

    code = "se_full"
    retryable = False  # the same request would be refused again; another SE may take it


class FileMissing(StorageError):
    """The storage element does not hold the file (a lost replica, or never written)."""

    code = "file_missing"


class ChecksumMismatch(StorageError):
    """A file's size or adler32 is not what the catalog says: it is not a good copy."""

    code = "checksum_mismatch"


def _all_subclasses(cls: type[DiracLikeError]) -> list[type[DiracLikeError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def error_from_wire(code: str, message: str) -> DiracLikeError:
    """Rebuild the exception a service error reply stands for."""
    classes: list[type[DiracLikeError]] = [*_all_subclasses(DiracLikeError), DiracLikeError]
    for cls in classes:
        if cls.code == code:
            return cls(message)
    return InternalError(f"[{code}] {message}")
