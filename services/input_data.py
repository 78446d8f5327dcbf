"""Input data at submission, as DIRAC's InputData optimizer does it.

A job's ``InputData`` LFNs (``LFN:`` prefix optional) are looked up in the replica catalog when it
is submitted. An LFN not in the catalog (or with no Good replica on a readable SE) fails the job
at once, with a reason naming it. Otherwise, unless ``data.input_data_anywhere`` is set, the job
may only run at the sites whose SEs hold a Good replica of every one of its files: those sites
become its Site requirement (intersected with the Site it asked for), so the matcher itself does
no extra work per match. A replica on an SE that belongs to no site can be read from anywhere.

Reads the catalog only; changes nothing.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from dirac_like.description import JobDescription

from .catalog import GOOD, Catalog, StorageBoard

LFN_PREFIX = "LFN:"


class Resolved(NamedTuple):  # a tuple: made for each job of a bulk submission
    description: JobDescription  # with the sites its data allows
    failure: str  # why the job must fail at once ('' if it may run)


def input_lfns(description: JobDescription) -> list[str]:
    return [lfn.removeprefix(LFN_PREFIX) for lfn in description.input_data]


def resolve_input_data(
    catalog: Catalog, board: StorageBoard, description: JobDescription, anywhere: bool
) -> Resolved:
    lfns = input_lfns(description)
    if not lfns:
        return Resolved(description, "")
    known = catalog.files(lfns)
    missing = [lfn for lfn in lfns if lfn not in known]
    if missing:
        return Resolved(description, f"Input data not in the catalog: {', '.join(missing[:5])}")
    allowed: set[str] | None = None  # None: any site
    for lfn in lfns:
        sites = _sites_holding(catalog, board, lfn)
        if not sites:
            return Resolved(description, f"Input data has no Good replica on a readable SE: {lfn}")
        if "" not in sites:
            allowed = sites if allowed is None else allowed & sites
    if anywhere or allowed is None:
        return Resolved(description, "")
    if description.sites:
        allowed &= set(description.sites)
    if not allowed:
        return Resolved(
            description,
            "Input data: no single site (of those allowed) holds a replica of every input file",
        )
    return Resolved(dataclasses.replace(description, sites=tuple(sorted(allowed))), "")


def _sites_holding(catalog: Catalog, board: StorageBoard, lfn: str) -> set[str]:
    return {
        board.elements[se].site
        for se, status in catalog.replicas(lfn).items()
        if status == GOOD and board.readable(se)
    }


def data_not_at_eligible_sites(
    catalog: Catalog,
    board: StorageBoard,
    lfns: list[str],
    sites: tuple[str, ...],
    incoming: dict[str, list[str]],
) -> list[str]:
    """Why a waiting job's input data is not, now, at any site it may run at ([] if one site
    (of ``sites``; none: any) holds a Good, readable replica of every file): one line per file
    at fault, with the transfers on their way (``incoming``: lfn -> destination SEs of open
    transfers). Replicas change after submission: an SE banned, a replica lost or not yet
    copied."""
    eligible = set(sites)
    lines, common = [], None
    for lfn in lfns:
        holding = _sites_holding(catalog, board, lfn)
        if "" in holding:  # on an SE of no site: readable from anywhere
            continue
        usable = holding & eligible if eligible else holding
        if not usable:
            where = f" at {', '.join(sorted(eligible))}" if eligible else ""
            coming = incoming.get(lfn, [])
            note = f" (a transfer to {', '.join(sorted(coming))} is on its way)" if coming else ""
            lines.append(f"{lfn}: no Good replica on a readable SE{where} now{note}")
        common = usable if common is None else common & usable
    if not lines and common is not None and not common:
        lines.append("no single site holds a readable replica of every input file now")
    return lines
