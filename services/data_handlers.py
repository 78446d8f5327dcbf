"""Handlers of the data operations: storage elements, the replica catalog, transfer requests.

Who may call which is decided before (dirac_like/authz.py): a user registers, removes and
replicates under its own folder only (``/<vo>/user/<name>``; the owner of what it registers is
forced to its name), reads everything; transfer agents lease and report transfers; operators
set SE status. Each handler checks its whole input before it changes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dirac_like.errors import InvalidArgument
from dirac_like.model import FileEntry, RuleRecord
from dirac_like.protocol import (
    CatalogFilesReply,
    FileRow,
    FolderArgs,
    FolderReply,
    LfnsArgs,
    ListTransfersArgs,
    NoArgs,
    Op,
    RegisterArgs,
    RegisterReply,
    RemoveArgs,
    RemoveReply,
    ReplicaRow,
    ReplicaStatusArgs,
    RuleAddArgs,
    RuleIdArgs,
    RuleRow,
    SERow,
    SEStatusArgs,
    TransferRequestArgs,
    TransferSubmitArgs,
    TransferSubmitReply,
    TransferTask,
    TransferUpdateArgs,
    TransferView,
    build_trusted,
)

from .limits import check_listing_limit
from .state import CentralState, check_name
from .transfer_book import ACTIVE, DONE, FAILED

MAX_LISTED = 100_000


def se_list(state: CentralState, args: NoArgs, now: float) -> list[SERow]:
    return [_se_row(state, name) for name in sorted(state.storage.elements)]


def _se_row(state: CentralState, name: str) -> SERow:
    element = state.storage.element(name)
    status = state.storage.status(name)
    return SERow(
        name=name,
        site=element.site,
        protocol=element.protocol,
        endpoint=element.endpoint,
        base_path=element.base_path,
        read=element.read,
        write=element.write,
        delete=element.delete,
        total_space=element.total_space,
        tags=list(element.tags),
        rules=dict(element.rules),
        status=status.status,
        reason=status.reason,
        used_space=state.storage.used.get(name, 0),
    )


def se_set_status(state: CentralState, args: SEStatusArgs, now: float) -> SERow:
    state.storage.set_status(args.se, args.status, args.reason, now)
    state.rules.touched_all(now)
    return _se_row(state, args.se)


def _owner(state: CentralState, owner: str, job_id: int) -> str:
    """Who owns what is registered: as given (authz forced it), else the job's owner (output
    data), else the admin."""
    return owner or (state.book.job(job_id).owner if job_id else "admin")


def _touched(state: CentralState, lfns: list[str], now: float) -> None:
    """The rules over these LFNs look at them again (once per folder: bulk calls are cheap)."""
    if state.rules.rules:
        for folder in {lfn.rsplit("/", 1)[0] + "/x" for lfn in lfns}:
            state.rules.touched(folder, now)


def catalog_register(state: CentralState, args: RegisterArgs, now: float) -> RegisterReply:
    owner = _owner(state, args.owner, args.job_id)
    check_name("owner", owner)
    group = args.group or state.config.jobs.default_group
    registered = state.catalog.register(args.files, owner, group, now)
    _touched(state, [item.lfn for item in args.files], now)
    return RegisterReply(registered.new_files, registered.new_replicas)


def _file_rows(state: CentralState, entries: list[FileEntry]) -> list[FileRow]:
    """Wire rows of catalog entries with their replicas (read in one go)."""
    replicas = state.catalog.replicas_of([entry.lfn for entry in entries])
    return [
        build_trusted(
            FileRow,
            {
                "lfn": entry.lfn,
                "size": entry.size,
                "adler32": entry.adler32,
                "guid": entry.guid,
                "owner": entry.owner,
                "group": entry.group,
                "created": entry.created,
                "replicas": [
                    build_trusted(ReplicaRow, {"se": se, "status": status})
                    for se, status in sorted(replicas[entry.lfn].items())
                ],
            },
        )
        for entry in entries
    ]


def catalog_files(state: CentralState, args: LfnsArgs, now: float) -> CatalogFilesReply:
    if not args.lfns:
        raise InvalidArgument("no LFN given")
    if len(args.lfns) > state.catalog.max_bulk:
        raise InvalidArgument(
            f"{len(args.lfns)} LFNs in one request (at most {state.catalog.max_bulk})"
        )
    if not state.catalog.journal.catalog_pending():
        return _looked_up(state, args.lfns)
    found = state.catalog.files(args.lfns)
    return CatalogFilesReply(
        files=_file_rows(state, [found[lfn] for lfn in args.lfns if lfn in found]),
        missing=[lfn for lfn in args.lfns if lfn not in found],
    )


def _looked_up(state: CentralState, lfns: list[str]) -> CatalogFilesReply:
    """catalog_files when nothing about the catalog is uncommitted: one joined query for the
    files and their replicas, rows built straight from it (the bulk lookup's fast path)."""
    rows: dict[str, FileRow] = {}
    for (
        lfn,
        size,
        adler32,
        guid,
        owner,
        group,
        created,
        se,
        status,
    ) in state.catalog.stored.catalog_lookup(lfns):
        row = rows.get(lfn)
        if row is None:
            row = rows[lfn] = build_trusted(
                FileRow,
                {
                    "lfn": lfn,
                    "size": size,
                    "adler32": adler32,
                    "guid": guid,
                    "owner": owner,
                    "group": group,
                    "created": created,
                    "replicas": [],
                },
            )
        if se is not None:
            row.replicas.append(build_trusted(ReplicaRow, {"se": se, "status": status}))
    files = [rows[lfn] for lfn in lfns if lfn in rows]
    return CatalogFilesReply(files=files, missing=[lfn for lfn in lfns if lfn not in rows])


def catalog_list(state: CentralState, args: FolderArgs, now: float) -> FolderReply:
    if not 1 <= args.limit <= MAX_LISTED:
        raise InvalidArgument(f"limit must be 1 to {MAX_LISTED}")
    folders, files = state.catalog.folder(args.folder, args.limit)
    return FolderReply(folder=args.folder, folders=folders, files=_file_rows(state, files))


def catalog_remove(state: CentralState, args: RemoveArgs, now: float) -> RemoveReply:
    removed, gone, missing = state.catalog.remove(args.lfns, args.se)
    _touched(state, args.lfns, now)
    return RemoveReply(removed_replicas=removed, removed_files=gone, missing=missing)


def catalog_replica_status(state: CentralState, args: ReplicaStatusArgs, now: float) -> ReplicaRow:
    state.catalog.set_replica_status(args.lfn, args.se, args.status)
    if args.status == "Bad":
        state.rules.touched(args.lfn, now)  # its rules make it again at the next timer
    return ReplicaRow(args.se, args.status)


def transfer_submit(
    state: CentralState, args: TransferSubmitArgs, now: float
) -> TransferSubmitReply:
    owner = _owner(state, args.owner, args.job_id)
    check_name("owner", owner)
    return TransferSubmitReply(
        state.transfers.submit(args.lfns, args.destination, args.priority, owner, now)
    )


def transfer_request(
    state: CentralState, args: TransferRequestArgs, now: float
) -> list[TransferTask]:
    check_name("agent", args.agent)
    lease = state.config.data.transfers.lease
    return [
        TransferTask(
            transfer_id=a.transfer.transfer_id,
            attempt=a.transfer.attempt,
            lfn=a.file.lfn,
            size=a.file.size,
            adler32=a.file.adler32,
            source=a.transfer.source,
            destination=a.transfer.destination,
            lease=lease,
        )
        for a in state.transfers.assign(args.agent, args.max_count, now)
    ]


def transfer_update(state: CentralState, args: TransferUpdateArgs, now: float) -> TransferView:
    book = state.transfers
    record = book.held(args.transfer_id, args.attempt, args.agent)
    if args.status == ACTIVE:
        book.renew(record, now)
    elif args.status == DONE:
        book.done(record, args.size, args.adler32, now)
    elif args.status == FAILED:
        if not args.reason.strip():
            raise InvalidArgument("a failed transfer needs a reason")
        book.failed(record, args.reason, now)
    else:
        raise InvalidArgument(f"an agent reports Active, Done or Failed, not {args.status[:20]!r}")
    return build_trusted(TransferView, record.view())


def transfers(state: CentralState, args: ListTransfersArgs, now: float) -> list[TransferView]:
    check_listing_limit(args.limit)
    records = (
        [state.transfers.get(i) for i in args.transfer_ids]
        if args.transfer_ids
        else state.transfers.records.values()
    )
    found = []
    for record in records:
        if (args.status is None or record.status == args.status) and (
            args.owner is None or record.owner == args.owner
        ):
            found.append(build_trusted(TransferView, record.view()))
            if len(found) >= args.limit:
                break
    return found


def _rule_row(state: CentralState, rule: RuleRecord) -> RuleRow:
    known = state.rules.states.get(rule.rule_id)
    return RuleRow(
        rule_id=rule.rule_id,
        folder=rule.folder,
        copies=rule.copies,
        se_tags=sorted(rule.tag_set),
        owner=rule.owner,
        created=rule.created,
        expires=rule.expires,
        ses=state.rules.matching_ses(rule),
        state=known.state if known else "",
        files=known.files if known else 0,
        satisfied=known.satisfied if known else 0,
        replicating=known.replicating if known else 0,
        missing=known.missing if known else 0,
    )


def rule_add(state: CentralState, args: RuleAddArgs, now: float) -> RuleRow:
    owner = args.owner or "admin"
    check_name("owner", owner)
    rule = state.rules.add(args.folder, args.copies, args.se_tags, args.lifetime, owner, now)
    return _rule_row(state, rule)


def rules(state: CentralState, args: NoArgs, now: float) -> list[RuleRow]:
    return [_rule_row(state, rule) for rule in state.rules.rules.values()]


def rule_remove(state: CentralState, args: RuleIdArgs, now: float) -> RuleRow:
    return _rule_row(state, state.rules.remove(args.rule_id))


DATA_HANDLERS: dict[str, Callable[[CentralState, Any, float], Any]] = {
    Op.SE_LIST: se_list,
    Op.SE_SET_STATUS: se_set_status,
    Op.CATALOG_REGISTER: catalog_register,
    Op.CATALOG_FILES: catalog_files,
    Op.CATALOG_LIST: catalog_list,
    Op.CATALOG_REMOVE: catalog_remove,
    Op.CATALOG_REPLICA_STATUS: catalog_replica_status,
    Op.TRANSFER_SUBMIT: transfer_submit,
    Op.TRANSFER_REQUEST: transfer_request,
    Op.TRANSFER_UPDATE: transfer_update,
    Op.TRANSFERS: transfers,
    Op.RULE_ADD: rule_add,
    Op.RULES: rules,
    Op.RULE_REMOVE: rule_remove,
}
