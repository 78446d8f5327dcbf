"""Logical file names: the grid-wide names of files, checked before anything uses them.

An LFN is an absolute path whose first folder is the VO: ``/lhcb/user/alice/run1/hits.root``.
It may not hold empty segments (``//``, a trailing ``/``), ``.`` or ``..`` segments, control
characters or backslashes, and is at most :data:`MAX_LFN_LENGTH` characters. A user's own folder
is ``/<vo>/user/<name>``: users write there only, admins anywhere.

Pure: no I/O.
"""

from __future__ import annotations

import re

from dirac_like.errors import InvalidLfn

MAX_LFN_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
_SEGMENT = re.compile(r"^[A-Za-z0-9_.+=@%,:~-]+$")


def check_lfn(lfn: str, vos: tuple[str, ...] = ()) -> str:
    """``lfn`` if it is valid (and its first folder one of ``vos``, when any are given)."""
    if not isinstance(lfn, str) or not lfn.startswith("/"):
        raise InvalidLfn(f"LFN {str(lfn)[:80]!r} must be an absolute path: /<vo>/...")
    if len(lfn) > MAX_LFN_LENGTH:
        raise InvalidLfn(f"LFN of {len(lfn)} characters (at most {MAX_LFN_LENGTH})")
    segments = lfn[1:].split("/")
    for segment in segments:
        _check_segment(lfn, segment)
    if len(segments) < 2:
        raise InvalidLfn(f"LFN {lfn!r} names no file under its VO folder: /<vo>/.../<file>")
    if vos and segments[0] not in vos:
        raise InvalidLfn(
            f"LFN {lfn!r}: first folder {segments[0]!r} is not a VO of this grid ({', '.join(vos)})"
        )
    return lfn


def check_folder(folder: str, vos: tuple[str, ...] = ()) -> str:
    """A catalog folder (``/`` or an LFN-like path without trailing slash)."""
    if folder == "/":
        return folder
    if len(folder[1:].split("/")) == 1:  # a VO folder: /lhcb
        check_lfn(folder + "/x", vos)
        return folder
    return check_lfn(folder, vos)


def _check_segment(lfn: str, segment: str) -> None:
    if segment == "":
        raise InvalidLfn(f"LFN {lfn[:120]!r} has an empty segment ('//' or a trailing '/')")
    if segment in (".", ".."):
        raise InvalidLfn(f"LFN {lfn[:120]!r} has a {segment!r} segment: give the path itself")
    if len(segment) > MAX_SEGMENT_LENGTH:
        raise InvalidLfn(f"LFN {lfn[:120]!r}: a segment is over {MAX_SEGMENT_LENGTH} characters")
    if not _SEGMENT.match(segment):
        raise InvalidLfn(
            f"LFN {lfn[:120]!r}: segment {segment[:60]!r} may hold only letters, "
            "digits and _ . + = @ % , : ~ -"
        )


def vo_of(lfn: str) -> str:
    return lfn[1:].split("/", 1)[0]


def user_folder(vo: str, user: str) -> str:
    """Where user ``user`` of ``vo`` writes: ``/<vo>/user/<user>``."""
    return f"/{vo}/user/{user}"


def is_under(lfn: str, folder: str) -> bool:
    return folder == "/" or lfn == folder or lfn.startswith(folder.rstrip("/") + "/")


def parent_of(lfn: str) -> str:
    parent = lfn.rsplit("/", 1)[0]
    return parent or "/"
