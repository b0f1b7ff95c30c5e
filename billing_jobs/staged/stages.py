"""One billing run in separate stages, each able to run in its own process or on its own machine.

The Airflow DAG ``package_billing`` runs each function here in its own task; this module knows
nothing about Airflow's scheduling (plain values and paths in, paths out). Every stage calls the
matching stage of ``billing_jobs.run.stages`` (the same functions ``billing-jobs run`` uses) and
hands its dataframes to the next one as Parquet folders (``billing_jobs.staged.handoff``).

    extract ──> compute_shard[0..n-1] ──> gate ──> settle ──> report
                                    (any stage failing for good) ──> record_failure

An *attempt* of a run (the first run, or each clear / reprocess of it) has its own report folder
(``run_folder``) and its own billing run record with its true mode: a cleared or reprocessed run
never overwrites the report of an earlier attempt. Its hand-offs live in its work folder
(``work_dir``): ``<run folder>/snapshots`` by default, or under ``$BILLING_HANDOFF_URL`` (for
example ``s3://bucket/prefix``, opened with Airflow's ``ObjectStoragePath`` and the connection
``$BILLING_HANDOFF_CONN_ID``) so that workers on several machines share them. The work folder
holds ``run.json`` (the manifest: the billing run record's id, the report folder and what every
stage needs to rebuild the ``RunRequest``), the inputs and results, ``timings/`` (each stage's
timings, one file each because the shards run in parallel) and ``workers/`` (which worker
computed each shard).

Airflow's own imports (object storage) happen inside the one function that needs them, so
that this module also runs without Airflow (the tests drive the stages directly).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from billing_jobs.core import settings
from billing_jobs.core.frames import BillingResult, empty_frame
from billing_jobs.core.vocab import RunMode, RunStatus
from billing_jobs.run import lifecycle
from billing_jobs.run import stages as run_stages  # called as run_stages.X: tests swap one
from billing_jobs.run.lifecycle import Attempt, ReportPlace
from billing_jobs.run.request import RunRequest, Timings
from billing_jobs.staged import handoff as snapshots
from billing_jobs.store import runs
from billing_jobs.store.db import make_engine, read_connection, upgrade
from billing_jobs.store.tables import runs as runs_t

log = logging.getLogger(__name__)

MANIFEST = "run.json"  # in the work folder: what every stage needs to rebuild the request
UNPOSTED = "unposted.json"  # in the work folder: settle's view of the unposted dates
# shards (settings.shards, default 4) only above settings.shard_min_assignments (default 2M):
# below it one shard computes faster than several (each mapped task costs seconds of start-up);
# see docs/benchmarks.md.


# -- settings --------------------------------------------------------------------------------


def connection_db_url(conn_type: str | None, *, host: str | None = None, port: int | None = None,
                      login: str | None = None, password: str | None = None,
                      schema: str | None = None, extra: dict | None = None) -> str | None:
    """The SQLAlchemy URL of a connection given by its fields: ``extra["sqlalchemy_url"]`` when
    set, else built for a ``postgres``/``postgresql`` or ``sqlite`` connection; None for any
    other type (the caller then uses the connection's own URI)."""
    extra = extra or {}
    if extra.get("sqlalchemy_url"):
        return extra["sqlalchemy_url"]
    if conn_type in ("postgres", "postgresql"):

        return sa.URL.create("postgresql+psycopg", username=login, password=password,
                             host=host, port=port, database=schema
                             ).render_as_string(hide_password=False)
    if conn_type == "sqlite":
        return f"sqlite:///{host}"
    return None


def shards_for(n_assignments: int) -> int:
    """How many shards a run with ``n_assignments`` gets: ``settings.shards()`` when it is
    large enough to gain from it, else 1."""
    return settings.shards() if n_assignments >= settings.shard_min_assignments() else 1


def billing_date(chosen: str | None, when: datetime | None, tz: str) -> date:
    """The billing date: ``chosen`` (``YYYY-MM-DD``) if given, else the calendar date of ``when``
    in the billing time zone ``tz`` (a naive ``when`` is taken as UTC)."""
    if chosen:
        return date.fromisoformat(chosen)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    local = when.astimezone(ZoneInfo(tz))
    return date(local.year, local.month, local.day)


# -- the run folder and the work folder -----------------------------------------------------


def run_folder(run_date: date, run_id: str, attempt: int = 0) -> Path:
    """``$BILLING_REPORT_DIR/airflow/<run_date>/<run_id>`` for a run's first attempt,
    ``.../<run_id>.attempt-<n>`` (n = 2, 3 ...) for each clear or reprocess of it (``:`` and
    other unsafe characters of the run id become ``_``)."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", run_id)
    if attempt:
        name += f".attempt-{int(attempt) + 1}"
    return settings.report_dir().resolve() / "airflow" / run_date.isoformat() / name


def storage_path(location: str | os.PathLike):
    """A hand-off location as a path object: a local ``Path``, or an ``ObjectStoragePath`` for
    a URL (its credentials from the Airflow connection $BILLING_HANDOFF_CONN_ID, when set)."""
    text = str(location)
    if "://" not in text or text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    from airflow.sdk import ObjectStoragePath  # Airflow only for a URL: the tests run without it

    return ObjectStoragePath(text, conn_id=settings.handoff_conn_id())


def work_dir(run_dir: str | Path):
    """The hand-offs of the attempt whose report goes to ``run_dir``: ``<run_dir>/snapshots``,
    or the same relative folder under $BILLING_HANDOFF_URL."""
    url = settings.handoff_url()
    if url is None:
        return Path(run_dir) / "snapshots"
    try:
        rel = Path(run_dir).resolve().relative_to(settings.report_dir().resolve())
    except ValueError:
        rel = Path(*Path(run_dir).resolve().parts[-3:])
    return storage_path(url.rstrip("/") + "/" + rel.as_posix() + "/snapshots")


def work_of(path: str | os.PathLike):
    """The work folder (``.../snapshots``) holding a hand-off path."""
    path = storage_path(path)
    for parent in path.parents:
        if parent.name == "snapshots":
            return parent
    raise ValueError(f"{path} is not inside a run's snapshots/ folder")


def _manifest_at(work) -> dict:
    return json.loads((work / MANIFEST).read_text())


def _write_manifest(work, manifest: dict) -> None:
    if isinstance(work, Path):
        work.mkdir(parents=True, exist_ok=True)
    (work / MANIFEST).write_text(json.dumps(manifest, indent=1))


def has_started(run_dir: str | Path) -> bool:
    """True once the attempt has a manifest (so a run record exists)."""
    return (work_dir(run_dir) / MANIFEST).exists()


def new_request(run_date: date, run_dir: str | Path, *, simulate, customer_ids, strict,
                started_by: str, tz: str, allow_future: bool = False) -> RunRequest:
    """The request of a new run whose report goes to ``run_dir`` (no customers: all)."""
    return RunRequest(run_date=run_date, simulate=bool(simulate),
                      customer_ids=customer_ids or None, strict=bool(strict),
                      out_dir=Path(run_dir), started_by=started_by, tz=tz,
                      allow_future=bool(allow_future))


def _request(m: dict) -> RunRequest:
    """The run's request, rebuilt from its manifest."""
    return RunRequest(run_date=date.fromisoformat(m["run_date"]), simulate=m["simulate"],
                      customer_ids=m["customer_ids"], strict=m["strict"],
                      out_dir=Path(m["run_dir"]), started_by=m["started_by"], tz=m["tz"],
                      allow_future=bool(m.get("allow_future", False)))


def _put_json(folder, name: str, value) -> None:
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(value))


def save_timings(work, name: str, timings: dict) -> None:
    """One stage's timings in ``timings/<name>.json`` (shards run in parallel: one file each)."""
    _put_json(work / "timings", f"{name}.json", dict(timings))


def load_timings(work) -> dict:
    """Every stage's timings so far, summed per stage."""
    out: dict[str, float] = {}
    folder = work / "timings"
    if not folder.exists():
        return out
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.endswith(".json"):
            for stage, seconds in json.loads(path.read_text()).items():
                out[stage] = round(out.get(stage, 0.0) + seconds, 4)
    return out


def shard_workers(run_dir: str | Path) -> dict[int, str]:
    """Which worker computed each shard of the attempt (``$BILLING_WORKER_NAME``, else the
    host name, with the process id)."""
    folder = work_dir(run_dir) / "workers"
    if not folder.exists():
        return {}
    out = {}
    for path in folder.iterdir():
        rec = json.loads(path.read_text())
        out[int(rec["shard"])] = rec["worker"]
    return dict(sorted(out.items()))


def _run_info(m: dict, req: RunRequest, status: str, message: str, unposted: list[str],
              posting_now: list[str] | None = None) -> dict:
    """``lifecycle.run_info`` of the attempt, with the Airflow ids and the attempt's number."""
    return lifecycle.run_info(
        req, m["billing_run_id"], status, message, unposted, m["started_at"],
        airflow_dag_id=m["airflow_dag_id"], airflow_run_id=m["airflow_run_id"],
        airflow_attempt=m.get("attempt", 0) + 1, posting_now_dates=list(posting_now or []))


@contextlib.contextmanager
def database(db_url: str | None) -> Iterator:
    """An engine for one stage, disposed at the end (no pooled connections left behind)."""
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


# -- the stages ------------------------------------------------------------------------------


def _reusable(engine, manifest: dict, req: RunRequest) -> bool:
    """A retried ``extract`` keeps its attempt's run record while that record is still open
    and of the same mode; anything else is a new attempt with a record of its own."""
    rec = runs.get_run(engine, manifest.get("billing_run_id", ""))
    return bool(rec) and rec["status"] == RunStatus.RUNNING and rec["mode"] == req.mode


def extract(db_url: str | None, req: RunRequest, run_dir: str | Path, *,
            airflow_dag_id: str, airflow_run_id: str, shards: int | None = None,
            attempt: int = 0) -> list[str]:
    """Start the attempt (its run record, with the mode it really runs in, and its manifest),
    load and validate the inputs (``run.stages.load_stage``), write them as a snapshot and split
    the customers into ``shards`` (default: ``shards_for`` the number of assignments). Returns
    one shard file per shard."""
    req.refuse_future_post()  # a mistyped run_date never posts: refused before anything is written
    work = work_dir(run_dir)
    timings = Timings()
    with database(db_url) as engine:
        upgrade(engine)
        manifest = (_manifest_at(work) if (work / MANIFEST).exists() else None)
        if manifest is None or not _reusable(engine, manifest, req):
            manifest = {
                "billing_run_id": lifecycle.begin_run(engine, req),
                "started_at": datetime.now(timezone.utc).isoformat(),
                "airflow_dag_id": airflow_dag_id, "airflow_run_id": airflow_run_id,
                "attempt": int(attempt or 0),
            }
        manifest.update(run_date=req.run_date.isoformat(), simulate=req.simulate,
                        customer_ids=(None if req.customer_ids is None
                                      else list(req.customer_ids)), strict=req.strict, tz=req.tz,
                        started_by=req.started_by, run_dir=str(Path(run_dir)),
                        allow_future=req.allow_future,
                        inputs=str(work / "inputs"))
        _write_manifest(work, manifest)
        with run_stages.rule_evaluator(req.customer_ids):
            inputs, rejected = run_stages.load_stage(engine, req, timings)
    snapshots.save_inputs(inputs, rejected, work / "inputs")
    n = shards if shards is not None else shards_for(len(inputs.assignments))
    links = snapshots.transfer_links(inputs)  # a moved assignment's customers share a shard
    groups = [s for s in snapshots.shard_customers(inputs.customers["customer_id"], n, links)
              if s] or [[]]
    shard_files = []
    for i, customer_ids in enumerate(groups):
        _put_json(work / "shards", f"shard-{i}.json", {"index": i, "customer_ids": customer_ids})
        shard_files.append(str(work / "shards" / f"shard-{i}.json"))
    save_timings(work, "extract", timings)
    return shard_files


def shard_label(shard: str | Path) -> str:
    """``shard <i> (<n> customers)``, of a shard file."""
    spec = json.loads(storage_path(shard).read_text())
    return f"shard {spec['index']} ({len(spec['customer_ids'])} customers)"


def compute_shard(shard: str | Path) -> str:
    """``run.stages.compute_stage`` on one shard's customers; returns its result folder."""
    spec = json.loads(storage_path(shard).read_text())
    work = work_of(shard)
    m = _manifest_at(work)
    timings = Timings()
    with timings.stage("compute"):
        inputs, _ = snapshots.load_inputs(storage_path(m["inputs"]))
        result = run_stages.compute_stage(
            snapshots.filter_inputs(inputs, spec["customer_ids"]), _request(m))
        out = snapshots.save_result(result, work / "computed" / f"shard-{spec['index']}")
    # the shard's index is its position in extract's list, so the index of its mapped task
    save_timings(work, f"compute-{spec['index']}", timings)
    _put_json(work / "workers", f"shard-{spec['index']}.json",
              {"shard": spec["index"], "worker": settings.worker_name()})
    return str(out)


def gate(shard_results: Iterable[str | Path]) -> str:
    """The shards' results joined, ``run.stages.gate_stage`` on the whole run; returns the gated
    result's folder."""
    shard_results = list(shard_results)
    work = work_of(shard_results[0])
    m = _manifest_at(work)
    timings = Timings()
    with timings.stage("gate"):
        result = snapshots.concat_results(
            [snapshots.load_result(storage_path(p)) for p in shard_results])
        inputs, _ = snapshots.load_inputs(storage_path(m["inputs"]))
        with run_stages.rule_evaluator(m["customer_ids"]):
            run_stages.gate_stage(result, inputs)
        out = snapshots.save_result(result, work / "gated")
    save_timings(work, "gate", timings)
    return str(out)


def _attempt_work(db_url: str | None, handed: str | Path, run_dir: str | Path | None):
    """The work folder of the current attempt for a stage handed ``handed``. When only part of
    a run was cleared (e.g. ``settle`` and ``report``), the stage runs in a new attempt: its
    own report folder ``run_dir`` and a new run record, reading the earlier attempt's inputs."""
    source = work_of(handed)
    if run_dir is None:
        return source
    work = work_dir(run_dir)
    if str(work) == str(source) or (work / MANIFEST).exists():
        return work
    m = dict(_manifest_at(source))
    with database(db_url) as engine:
        m.update(billing_run_id=lifecycle.begin_run(engine, _request(m)),
                 started_at=datetime.now(timezone.utc).isoformat(),
                 run_dir=str(Path(run_dir)), follows=m["billing_run_id"])
    _write_manifest(work, m)
    return work


def _posting_now(engine, dates: list[date], own_run_id: str) -> set[date]:
    """Of ``dates``, those a full post run other than ours is posting right now (its record
    ``running``): a backfill posting them, not a gap."""
    if not dates:
        return set()
    with read_connection(engine) as conn:
        found = conn.execute(sa.select(runs_t.c.run_date).where(
            runs_t.c.mode == RunMode.POST, runs_t.c.status == RunStatus.RUNNING,
            runs_t.c.customer_filter.is_(None), runs_t.c.run_id != own_run_id,
            runs_t.c.run_date.in_(dates))).scalars()
        return set(found)


def settle(db_url: str | None, gated: str | Path, run_dir: str | Path | None = None) -> str:
    """``run.stages.settle_stage``: simulate, or post exactly once; returns the settled result's
    folder. A post then takes the dates never posted before it, still inside the posting slot
    (pool ``billing_posting``), so that a night another run is posting at the same time is
    named as being posted (``posting_now_dates``), not as never posted."""
    work = _attempt_work(db_url, gated, run_dir)
    m = _manifest_at(work)
    req = _request(m)
    timings = Timings()
    with timings.stage(req.mode), database(db_url) as engine:
        result = run_stages.settle_stage(engine, snapshots.load_result(storage_path(gated)), req,
                                       m["billing_run_id"])
        out = snapshots.save_result(result, work / "settled")
        if not req.simulate:
            unposted = runs.unposted_dates(engine, req.run_date)
            now = _posting_now(engine, unposted, m["billing_run_id"])
            _put_json(work, UNPOSTED, {
                "unposted": [d.isoformat() for d in unposted if d not in now],
                "posting_now": sorted(d.isoformat() for d in now)})
    save_timings(work, "settle", timings)
    return str(out)


def report(db_url: str | None, settled: str | Path, run_dir: str | Path | None = None) -> str:
    """The run lifecycle's end (``lifecycle.close_attempt``, as ``billing-jobs run``): the
    report into the attempt's report folder (file by file, ``summary.json`` last: the folder
    also holds the hand-offs), then its run record says ``succeeded``; returns the report
    folder."""
    work = _attempt_work(db_url, settled, run_dir)
    m = _manifest_at(work)
    req = _request(m)
    inputs, rejected = snapshots.load_inputs(storage_path(m["inputs"]))
    timings = Timings(load_timings(work))
    timings["total_before_report"] = round(sum(timings.values()), 4)
    with database(db_url) as engine:
        unposted, posting_now = [], []
        if not req.simulate:
            seen = (json.loads((work / UNPOSTED).read_text())
                    if (work / UNPOSTED).exists() else None)
            if seen is None:  # settled in an earlier attempt: look again now
                seen = {"unposted": [d.isoformat()
                                     for d in runs.unposted_dates(engine, req.run_date)]}
            unposted, posting_now = seen["unposted"], seen.get("posting_now", [])
        attempt = Attempt(req, m["billing_run_id"], snapshots.load_result(storage_path(settled)),
                          rejected, _run_info(m, req, RunStatus.SUCCEEDED, "", unposted,
                                              posting_now), timings,
                          context=run_stages.currency_context(inputs))
        with timings.stage("report"):
            closed = lifecycle.close_attempt(engine, attempt, ReportPlace(
                Path(m["run_dir"]), into_existing=True, raise_report_error=True))
        if closed.closing_error:  # the report stands; the task fails so that it is retried
            raise RuntimeError(closed.closing_error)
    return str(closed.report_dir)


def record_failure(db_url: str | None, run_dir: str | Path, message: str) -> None:
    """A stage failed for good: the attempt's report and run record say ``failed`` with
    ``message``, through the same ``lifecycle.close_attempt`` as the command line: the
    lines computed so far (if the gate passed) with what the database holds for this run
    (a post that failed after batch 1 committed shows those lines posted, the rest
    ``not_posted``). Nothing to do if the attempt never started."""
    if not has_started(run_dir):
        log.warning("no run record to mark failed (the attempt failed before it started)")
        return
    work = work_dir(run_dir)
    m = _manifest_at(work)
    req = _request(m)
    inputs = None
    try:
        inputs, rejected = snapshots.load_inputs(storage_path(m["inputs"]))
    except FileNotFoundError:
        rejected = empty_frame(snapshots.REJECTED_COLUMNS)
    try:
        computed = snapshots.load_result(work / "gated")
    except FileNotFoundError:
        computed = lifecycle.empty_result()
    # lines without a status: a post that failed is asked what it wrote (posted_by_run)
    result = BillingResult(computed.due_lines.drop(columns="status", errors="ignore"),
                                     computed.grants.drop(columns="status", errors="ignore"),
                                     computed.utilisation, computed.extended_ends)
    with database(db_url) as engine:
        attempt = Attempt(req, m["billing_run_id"], result, rejected,
                          _run_info(m, req, RunStatus.FAILED, message, []), load_timings(work),
                          context=run_stages.currency_context(inputs), post_attempted=True)
        closed = lifecycle.close_attempt(engine, attempt, ReportPlace(Path(m["run_dir"]),
                                                                      into_existing=True))
    for problem in (closed.report_error, closed.closing_error):
        if problem:
            log.error("%s", problem)
