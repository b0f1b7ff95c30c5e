"""`billing-jobs change | cancel | history`: terms that change over time (SPEC 10, #27), wiring
only (corrections/changes.py, corrections/void.py).

A preview by default; `--post` records, exactly once (a retried command prints the same and
writes nothing). Exit 0 on success, 1 when the database or the posting gate refused, 2 for a
refused change (one line naming the rule) or bad arguments.
"""

from typing import Annotated, Optional

import typer

from billing_jobs.cli.options import (DbOption, JsonOption, SimulateOption, TzOption, out,
                                      parse_date, upgraded_engine, zone)
from billing_jobs.core.errors import UsageError

AssignmentOption = Annotated[str, typer.Option("--assignment", metavar="ID",
                                               help="assignment_id")]
FromOption = Annotated[Optional[str], typer.Option(
    "--from", metavar="D", help="the first day the change is in force, YYYY-MM-DD")]


def change_cmd(
    assignment: AssignmentOption,
    from_: FromOption = None,
    quantity: Annotated[Optional[int], typer.Option("--quantity", metavar="N",
                                                    help="new quantity (>= 1)")] = None,
    package: Annotated[Optional[str], typer.Option(
        "--package", metavar="ID", help="new package (same currency, frequency, frequency "
                                        "match, type and minimum spend)")] = None,
    free_minutes: Annotated[Optional[int], typer.Option(
        "--free-minutes", metavar="N", help="new free-minute total per period")] = None,
    customer: Annotated[Optional[str], typer.Option(
        "--customer", metavar="ID", help="move the assignment to this customer (same "
                                         "currency)")] = None,
    simulate: SimulateOption = True,
    tz: TzOption = None,
    db: DbOption = None,
) -> None:
    """Change an assignment from a date: quantity, package, free minutes or customer."""
    from billing_jobs.corrections.changes import change  # heavy: pandas; keeps --version fast

    if from_ is None:
        raise UsageError("change: give --from D (the first day the change is in force)")
    day = parse_date(from_, "--from")
    if quantity is None and package is None and free_minutes is None and customer is None:
        raise UsageError("change: no field to change (give --quantity, --package, "
                         "--free-minutes or --customer)")
    outcome = change(upgraded_engine(db), assignment, day, quantity=quantity,
                     package_id=package, free_minutes=free_minutes, customer_id=customer,
                     post=not simulate, tz=zone(tz), command="change")
    _show(outcome, not simulate)


def cancel_cmd(
    assignment: AssignmentOption,
    from_: FromOption = None,
    void_: Annotated[bool, typer.Option(
        "--void", help="the assignment was entered by mistake: correct every line it posted "
                       "to 0 (setup included), withdraw its grants, reverse its free-minute "
                       "credits")] = False,
    simulate: SimulateOption = True,
    tz: TzOption = None,
    db: DbOption = None,
) -> None:
    """End an assignment from a date (--from D), or void it from its start (--void)."""
    if (from_ is None) == (not void_):
        raise UsageError("cancel: give exactly one of --from D or --void")
    if void_:
        from billing_jobs.corrections.void import void  # heavy: pandas; keeps --version fast

        _show_void(void(upgraded_engine(db), assignment, post=not simulate), assignment,
                   not simulate)
        return
    from billing_jobs.corrections.changes import change  # heavy: pandas; keeps --version fast

    outcome = change(upgraded_engine(db), assignment, parse_date(from_, "--from"),
                     cancel=True, post=not simulate, tz=zone(tz), command="cancel")
    _show(outcome, not simulate)


def history_cmd(
    assignment: Annotated[Optional[str], typer.Option("--assignment", metavar="ID",
                                                      help="assignment_id")] = None,
    package: Annotated[Optional[str], typer.Option("--package", metavar="ID",
                                                   help="package_id")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The versions and changes of an assignment or a package, in effective order."""
    from billing_jobs.corrections.changes import history  # heavy: pandas; keeps --version fast

    entries = history(upgraded_engine(db), assignment_id=assignment, package_id=package)
    if as_json:
        import json  # only --json writes JSON; fast --help

        out.print(json.dumps(entries, indent=2), markup=False)
        return
    from rich.table import Table  # only history draws a table; keeps --version fast

    title = f"assignment {assignment}" if assignment else f"package {package}"
    table = Table("from", "event", "assignment", "package", "what", "recorded", "source",
                  title=f"history of {title}")
    for e in entries:
        what = ", ".join(f"{f} {e[f]}" for f in _WHAT if e[f] is not None)
        when = " ".join(str(e[f]) for f in ("recorded_by", "recorded_at") if e[f])
        table.add_row(e["effective_from"], e["event"], e["assignment_id"] or "",
                      e["package_id"] or "", what, when, e["source"] or "")
    out.print(table)


#: the fields an entry of `history` sets, as its "what" column shows them
_WHAT = ("customer_id", "quantity", "free_minutes", "retail", "cost", "setup_retail",
         "setup_cost")


# ----------------------------------------------------------------------------- printing

def _money(micros, currency) -> str:
    from billing_jobs.core.money import format_minor  # heavy: pandas; keeps --version fast

    return f"{format_minor(int(micros), str(currency))} {currency}"


def _show(outcome, post: bool) -> None:
    c = outcome.change
    what = "cancel" if c["cancel"] else "change"
    given = ", ".join(f"{f} {c[f]}" for f in ("quantity", "package_id", "free_minutes",
                                             "customer_id") if c[f] is not None)
    out.print(f"{what} of assignment {c['assignment_id']} from {c['effective_from']}"
              + (f": {given}" if given else ""), markup=False)
    if len(outcome.lines):
        out.print(f"lines of {c['effective_from']}:", markup=False)
        for r in outcome.lines.to_dict("records"):
            status = f"  {r['status']}" if "status" in r else ""
            out.print(f"  {r['kind']}  {r['customer_id']}  {_money(r['amount'], r['currency'])}"
                      f"  {r['explanation']}{status}", markup=False)
    else:
        out.print(f"no line on {c['effective_from']} (without proration a change takes effect "
                  "at the next billing date; the current period stands as billed)",
                  markup=False)
    for g in outcome.grants.to_dict("records"):
        out.print(f"  grant {g['assignment_id']} from {str(g['period_start'])[:10]}: "
                  f"{int(g['seconds']) // 60} minutes", markup=False)
    for g in outcome.cuts.to_dict("records"):
        out.print(f"  grant {g['assignment_id']} from {str(g['period_start'])[:10]} now ends "
                  f"{str(g['period_end'])[:10]} with {int(g['seconds']) // 60} minutes",
                  markup=False)
    if outcome.next_date is not None:
        lines = outcome.next_lines
        total = ", ".join(f"{r['kind']} {_money(r['amount'], r['currency'])} ({r['explanation']})"
                          for r in lines.to_dict("records")) or "nothing"
        out.print(f"next billing date {outcome.next_date}: {total}", markup=False)
    else:
        out.print("no billing date after it", markup=False)
    out.print(f"key: {outcome.key}", markup=False)
    if not post:
        out.print("preview only: nothing written (--post records it)", markup=False)
        return
    if outcome.retry or not outcome.recorded:
        out.print("already recorded under this key: nothing changed", markup=False)
    else:
        out.print("recorded", markup=False)
    if outcome.date_posted:
        out.print(f"{c['effective_from']} was posted already: posted its lines now "
                  f"({outcome.posted} new)", markup=False)
    else:
        out.print(f"the post of {c['effective_from']} will write its lines", markup=False)


def _show_void(voided, assignment: str, post: bool) -> None:
    verb = "wrote" if post else "would write"
    count = voided.count if post else len(voided.rows)
    out.print(f"void of assignment {assignment}: {verb} {count} correction row(s)",
              markup=False)
    for row, done in zip(voided.rows, voided.written):
        if post and not done:
            continue
        out.print(f"  {row['customer_id']}  {row['kind']}  {row['period_start']}  "
                  f"rev {row['revision']}  {_money(row['amount_micros'], row['currency'])}  "
                  f"{row['status']}", markup=False)
    out.print(f"grants withdrawn: {voided.grants_withdrawn}; consumed calls given back: "
              f"{voided.calls_given_back}", markup=False)
    if not post:
        out.print("preview only: nothing written (--post records it)", markup=False)
    elif voided.already and not voided.count:
        out.print("already voided: nothing changed", markup=False)


def register(app: typer.Typer) -> None:
    app.command("change")(change_cmd)
    app.command("cancel")(cancel_cmd)
    app.command("history")(history_cmd)
