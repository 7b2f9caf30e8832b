"""``pacs-node jobs ...`` and ``pacs-node tokens ...``: the admin API's data and actions in a shell.

``--json`` prints exactly what the API returns for the same request (the same dataclasses,
serialised by pydantic). Actions are audited with the actor ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from pydantic import TypeAdapter
from sqlalchemy.orm import Session, sessionmaker

from pacs_node import admin
from pacs_node.api.tokens import Role, create_token, list_tokens, revoke_token
from pacs_node.config import Settings
from pacs_node.db import admin_actions, queries
from pacs_node.db.session import make_engine, make_session_factory
from pacs_node.domain import JobState

COMMANDS = ("jobs", "tokens")
CLI_ADDRESS = "local"


def add_parsers(commands: Any) -> None:
    """Add the ``jobs`` and ``tokens`` sub-commands to the ``pacs-node`` parser's subparsers."""
    jobs = commands.add_parser("jobs", help="job history, detail, retry, replay, statistics")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--state", action="append", type=JobState, default=[], help="repeatable")
    listing.add_argument("--from", dest="created_from", type=datetime.fromisoformat)
    listing.add_argument("--to", dest="created_to", type=datetime.fromisoformat)
    listing.add_argument("--patient-id")
    listing.add_argument("--accession", dest="accession_number")
    listing.add_argument("--study-uid", dest="study_instance_uid")
    listing.add_argument("--calling-ae")
    listing.add_argument("--model", dest="model_name")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="next_cursor of the previous page")
    show = actions.add_parser("show", help="a job with its timeline, results and deliveries")
    show.add_argument("job_id", type=int)
    retry = actions.add_parser("retry", help="put a failed job back in the queue")
    retry.add_argument("job_id", type=int)
    replay = actions.add_parser("replay", help="send a job's results to a destination again")
    replay.add_argument("job_id", type=int)
    replay.add_argument("destination", help="the destination's name, as in the deliveries")
    stats = actions.add_parser("stats", help="counts by state, queue depth, turnaround per day")
    stats.add_argument("--days", type=int, default=14)
    for sub in (listing, show, retry, replay, stats):
        sub.add_argument("--json", action="store_true", help="print JSON (as the API returns)")

    tokens = commands.add_parser("tokens", help="API tokens (stored hashed)")
    token_actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_actions.add_parser("create", help="create a token; its secret is shown once")
    create.add_argument("name")
    create.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default=Role.VIEWER.value,
        help="viewer: read; sender: store by STOW-RS only; admin: everything",
    )
    token_list = token_actions.add_parser("list", help="tokens (never their secrets)")
    token_list.add_argument("--json", action="store_true")
    revoke = token_actions.add_parser("revoke", help="revoke a token now")
    revoke.add_argument("name")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _print_json(value: object, out: TextIO) -> None:
    out.write(TypeAdapter(type(value)).dump_json(value, indent=2).decode() + "\n")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _quality(job: queries.JobSummary) -> str:
    """The model's quality check in a word: ``review``, ``passed``, or ``-`` (no model ran)."""
    if job.needs_review is None:
        return "-"
    return "review" if job.needs_review else "passed"


def _print_page(page: queries.JobPage, out: TextIO) -> None:
    out.write(
        f"{'job':>8}  {'state':<13}  {'created (UTC)':<19}  {'AE':<16}  {'check':<6}  model\n"
    )
    for job in page.items:
        out.write(
            f"{job.id:>8}  {job.state:<13}  {_when(job.created_at):<19}  "
            f"{job.calling_ae or '-':<16}  {_quality(job):<6}  {job.model_name or '-'}\n"
        )
        if job.review_reasons:
            out.write(f"{'':>10}low confidence: review: {'; '.join(job.review_reasons)}\n")
    if page.next_cursor:
        out.write(f"more: --cursor {page.next_cursor}\n")


def _print_detail(detail: queries.JobDetail, out: TextIO) -> None:
    job = detail.job
    out.write(f"job {job.id} version {job.version}: {job.state}")
    out.write(f" ({job.reason})\n" if job.reason else "\n")
    out.write(f"  study {job.study_instance_uid}  accession {job.accession_number or '-'}\n")
    if job.needs_review is not None:
        out.write(f"quality check: {'low confidence: review' if job.needs_review else 'passed'}\n")
    for reason in job.review_reasons:
        out.write(f"  - {reason}\n")
    out.write("timeline:\n")
    for event in detail.events:
        out.write(f"  {_when(event.at)}  {event.state:<13}  {event.message}\n")
    out.write("results:\n")
    for result in detail.results:
        out.write(f"  {result.kind:<9} {result.sop_instance_uid or result.control_id}\n")
        for d in result.deliveries:
            out.write(
                f"    -> {d.destination}: {d.state} ({d.attempts} attempts, {d.last_status})\n"
            )
    for error in detail.errors:
        out.write(f"error: {error.source}: {error.message}\n")


def _print_stats(stats: queries.Stats, out: TextIO) -> None:
    out.write("  ".join(f"{k}={v}" for k, v in stats.counts_by_state.items()) + "\n")
    out.write("  ".join(f"{k}={v}" for k, v in stats.queue_depth.items()) + "\n")
    out.write(f"{'day':<10}  {'received':>8}  {'done':>6}  {'failed':>6}  p50 s  p95 s\n")
    for day in stats.days:
        p50, p95 = day.turnaround_p50_seconds, day.turnaround_p95_seconds
        out.write(
            f"{day.day.isoformat():<10}  {day.received:>8}  {day.done:>6}  {day.failed:>6}  "
            f"{'-' if p50 is None else f'{p50:.0f}'}  {'-' if p95 is None else f'{p95:.0f}'}\n"
        )


def _jobs(args: argparse.Namespace, settings: Settings, sessions: sessionmaker[Session]) -> Any:
    """Run a ``jobs`` action; return what to print."""
    if args.action == "list":
        filters = queries.JobFilters(
            states=tuple(args.state),
            created_from=args.created_from,
            created_to=args.created_to,
            patient_id=args.patient_id,
            accession_number=args.accession_number,
            study_instance_uid=args.study_instance_uid,
            calling_ae=args.calling_ae,
            model_name=args.model_name,
        )
        with sessions() as session:
            return queries.list_jobs(session, filters, limit=args.limit, cursor=args.cursor)
    if args.action == "show":
        with sessions() as session:
            detail = queries.job_detail(session, args.job_id)
        if detail is None:
            raise admin_actions.JobNotFoundError(f"no job {args.job_id}")
        return detail
    if args.action == "stats":
        with sessions() as session:
            return queries.stats(session, days=args.days)
    from pacs_node.service import make_queue

    queue = make_queue(settings)
    try:
        if args.action == "retry":
            admin.retry_and_enqueue(
                sessions, queue, args.job_id, actor=_actor(), remote_address=CLI_ADDRESS
            )
            return {"action": "retry", "target": f"job:{args.job_id}", "detail": "queued"}
        count = admin.replay_and_wake(
            sessions,
            queue,
            args.job_id,
            args.destination,
            actor=_actor(),
            remote_address=CLI_ADDRESS,
        )
        return {
            "action": "replay",
            "target": f"job:{args.job_id}",
            "detail": f"{count} deliveries pending",
        }
    finally:
        queue.stop()


def _tokens(args: argparse.Namespace, sessions: sessionmaker[Session], out: TextIO) -> None:
    with sessions.begin() as session:
        if args.action == "create":
            info, secret = create_token(session, args.name, args.role)
            out.write(f"token {info.name} ({info.role}); shown once, store it now:\n{secret}\n")
        elif args.action == "revoke":
            revoke_token(session, args.name)
            out.write(f"token {args.name} revoked\n")
        elif args.json:
            _print_json(list_tokens(session), out)
            return
        else:
            for t in list_tokens(session):
                status = f"revoked {_when(t.revoked_at)}" if t.revoked_at else "active"
                out.write(f"{t.name:<24} {t.role:<7} {status:<28} used {_when(t.last_used_at)}\n")
            return
        admin_actions.record_audit(
            session,
            actor=_actor(),
            action=f"token.{args.action}",
            target=f"token:{args.name}",
            remote_address=CLI_ADDRESS,
        )


_PRINTERS: dict[str, Callable[[Any, TextIO], None]] = {
    "list": _print_page,
    "show": _print_detail,
    "stats": _print_stats,
}


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Run ``pacs-node jobs|tokens ACTION``; 0 on success, 2 on bad input or unknown objects.

    Output goes to ``out`` (standard output by default).

    Raises:
        NodeError: if an action is rejected (e.g. retrying a job that has not failed).
    """
    out = out or sys.stdout
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        if args.command == "tokens":
            _tokens(args, sessions, out)
            return 0
        value = _jobs(args, settings, sessions)
        if args.json:
            _print_json(value, out)
        elif args.action in _PRINTERS:
            _PRINTERS[args.action](value, out)
        else:
            out.write(f"{value['action']} {value['target']}: {value['detail']}\n")
        return 0
    except (ValueError, LookupError) as exc:
        print(f"pacs-node: error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
