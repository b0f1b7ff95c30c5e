"""A deliberately simple, row-by-row reference of the billing rules (SPEC sections 3 and 4).

It is the oracle the vectorised engine (`billing_jobs.calc.billing.compute_billing`) is compared
against, so it shares no code with it: plain Python dates, `Fraction` arithmetic, loops,
day-by-day scans of the calendar. Slowness is fine; obviousness is the point.

Decisions where SPEC is silent follow the lead's list (see the brief of issue #3):

* Calendar of an assignment (a predicate on dates, `Calendar.contains`):
  once = {start}; daily = every day; weekly with match = the listed ISO weekdays,
  without = start + 7k (k any integer); monthly with match = each listed day of every
  month clamped to the month's last day, without = the start's day clamped;
  yearly = the start's anniversary (29 Feb -> 28 Feb in non-leap years), every year.
* Billing dates = calendar dates in [start, effective_end];
  effective_end = max(end, start + minimum_days - 1) (open without end).
* Period of billing date d = [d, min(next calendar date after d, effective_end + 1));
  its uncut period = [d, next calendar date after d). `once`: [start, effective_end + 1)
  or open; uncut = itself.
* Stub (start not a calendar date): [start, min(first calendar date after start,
  effective_end + 1)); the full period holding it = [last calendar date before start,
  first calendar date after start).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pandas as pd

from billing_jobs.core.frames import (
    DUE_LINE_COLUMNS,
    EXTENDED_END_COLUMNS,
    GRANT_COLUMNS,
    UTILISATION_COLUMNS,
    BillingInputs,
    BillingResult,
)

MICROS = 1_000_000
ONE_DAY = timedelta(days=1)
# The longest gap between two calendar dates is a year (366 days); scans stop after this.
_SCAN_LIMIT = 400

_ZERO_DIGIT = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
               "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
_THREE_DIGIT = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}


# --------------------------------------------------------------------------- money

def minor_digits(currency: str) -> int:
    """ISO 4217 minor unit (independent copy of the table, on purpose)."""
    if currency in _ZERO_DIGIT:
        return 0
    if currency in _THREE_DIGIT:
        return 3
    return 2


def round_half_up(micros: Fraction | int, currency: str) -> int:
    """Exact non-negative micros -> micros rounded half up to the currency's minor unit."""
    x = Fraction(micros)
    assert x >= 0, x
    step = 10 ** (6 - minor_digits(currency))
    return math.floor(x / step + Fraction(1, 2)) * step


# --------------------------------------------------------------------------- calendar

def last_day_of_month(year: int, month: int) -> int:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - ONE_DAY).day


def parse_match(text) -> list[int]:
    """'1|15' / '1,15' / None / '' -> list of ints (empty when no match)."""
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return []
    parts = re.split(r"[|,]", str(text))
    return [int(p.strip()) for p in parts if p.strip()]


@dataclass(frozen=True)
class Calendar:
    frequency: str
    match: tuple[int, ...]
    start: date

    def contains(self, d: date) -> bool:
        f = self.frequency
        if f == "once":
            return d == self.start
        if f == "daily":
            return True
        if f == "weekly":
            if self.match:
                return d.isoweekday() in self.match
            return (d - self.start).days % 7 == 0
        if f == "monthly":
            last = last_day_of_month(d.year, d.month)
            days = self.match if self.match else (self.start.day,)
            return any(min(x, last) == d.day for x in days)
        if f == "yearly":
            if d.month != self.start.month:
                return False
            return d.day == min(self.start.day, last_day_of_month(d.year, d.month))
        raise ValueError(f"unknown frequency {f!r}")

    def next_after(self, d: date) -> date | None:
        """First calendar date strictly after d (None for `once` past its date)."""
        if self.frequency == "once":
            return self.start if d < self.start else None
        x = d
        for _ in range(_SCAN_LIMIT):
            x += ONE_DAY
            if self.contains(x):
                return x
        raise AssertionError(f"no calendar date within {_SCAN_LIMIT} days after {d}: {self}")

    def prev_before(self, d: date) -> date | None:
        """Last calendar date strictly before d."""
        if self.frequency == "once":
            return self.start if d > self.start else None
        x = d
        for _ in range(_SCAN_LIMIT):
            x -= ONE_DAY
            if self.contains(x):
                return x
        raise AssertionError(f"no calendar date within {_SCAN_LIMIT} days before {d}: {self}")


@dataclass(frozen=True)
class Period:
    """A service period [start, end) (end None = open) and the uncut period it is a part of."""
    kind: str  # "billing" (opened by a billing date) or "stub"
    start: date
    end: date | None
    uncut_start: date
    uncut_end: date | None

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def uncut_days(self) -> int:
        return (self.uncut_end - self.uncut_start).days

    def contains(self, d: date) -> bool:
        return self.start <= d and (self.end is None or d < self.end)


# --------------------------------------------------------------------------- rows

@dataclass(frozen=True)
class Package:
    package_id: str
    type: str
    cost: int
    retail: int
    setup_cost: int
    setup_retail: int
    currency: str
    frequency: str
    match: tuple[int, ...]
    free_minutes: int
    destination: str
    minimum_spend: bool
    minimum_days: int
    prorate: bool
    free_minutes_mode: str = "credit"


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    customer_id: str
    package: Package
    quantity: int
    start: date
    end: date | None
    auto_decrement: bool
    free_minutes: int | None

    @property
    def effective_end(self) -> date | None:
        if self.end is None:
            return None
        if self.package.minimum_days > 0:
            minimum_end = self.start + timedelta(days=self.package.minimum_days - 1)
            return max(self.end, minimum_end)
        return self.end

    @property
    def cut(self) -> date | None:
        """effective_end + 1 (None when open)."""
        return None if self.effective_end is None else self.effective_end + ONE_DAY

    @property
    def calendar(self) -> Calendar:
        return Calendar(self.package.frequency, self.package.match, self.start)

    def is_billing_date(self, d: date) -> bool:
        if d < self.start:
            return False
        if self.effective_end is not None and d > self.effective_end:
            return False
        return self.calendar.contains(d)

    def period_of(self, d: date) -> Period:
        """The period opened by billing date d."""
        assert self.is_billing_date(d)
        if self.package.frequency == "once":
            return Period("billing", d, self.cut, d, self.cut)
        nxt = self.calendar.next_after(d)
        end = nxt if self.cut is None else min(nxt, self.cut)
        return Period("billing", d, end, d, nxt)

    def stub(self) -> Period | None:
        """The stub before the first billing date when the start is not a calendar date."""
        cal = self.calendar
        if cal.contains(self.start):
            return None
        first = cal.next_after(self.start)
        before = cal.prev_before(self.start)
        end = first if self.cut is None else min(first, self.cut)
        return Period("stub", self.start, end, before, first)

    def billing_dates_until(self, last: date) -> list[date]:
        """Billing dates d with d <= last, in order."""
        out = []
        d = self.start
        stop = last if self.effective_end is None else min(last, self.effective_end)
        while d <= stop:
            if self.calendar.contains(d):
                out.append(d)
            d += ONE_DAY
        return out

    def periods_starting_until(self, last: date) -> list[Period]:
        """Every period (billing periods, and the stub when prorate) starting on or before last."""
        out = [self.period_of(d) for d in self.billing_dates_until(last)]
        stub = self.stub()
        if stub is not None and self.package.prorate and stub.start <= last:
            out.insert(0, stub)
        return out

    def grant_minutes(self) -> int:
        if self.free_minutes is not None:
            return self.free_minutes
        return self.package.free_minutes * self.quantity


def _date(value) -> date | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date()


def _read_packages(inputs: BillingInputs) -> dict[str, Package]:
    packages = {}
    for r in inputs.packages.to_dict("records"):
        packages[r["package_id"]] = Package(
            package_id=r["package_id"], type=r["type"], cost=int(r["cost"]),
            retail=int(r["retail"]), setup_cost=int(r["setup_cost"]),
            setup_retail=int(r["setup_retail"]), currency=r["currency"],
            frequency=r["frequency"], match=tuple(parse_match(r["frequency_match"])),
            free_minutes=int(r["free_minutes"]),
            destination="" if r["destination"] is None or pd.isna(r["destination"])
            else str(r["destination"]),
            minimum_spend=bool(r["minimum_spend"]), minimum_days=int(r["minimum_days"]),
            prorate=bool(r["prorate"]),
            free_minutes_mode=(str(r.get("free_minutes_mode") or "credit").strip().lower()
                               or "credit"),
        )
    return packages


def _read(inputs: BillingInputs):
    packages = _read_packages(inputs)
    customers = {r["customer_id"]: r["currency"] for r in inputs.customers.to_dict("records")}
    assignments = []
    for r in inputs.assignments.to_dict("records"):
        fm = r["free_minutes"]
        assignments.append(Assignment(
            assignment_id=r["assignment_id"], customer_id=r["customer_id"],
            package=packages[r["package_id"]], quantity=int(r["quantity"]),
            start=_date(r["start_date"]), end=_date(r["end_date"]),
            auto_decrement=bool(r["auto_decrement"]),
            free_minutes=None if fm is None or pd.isna(fm) else int(fm),
        ))
    return customers, assignments


@dataclass(frozen=True)
class Call:
    call_id: str
    customer_id: str
    start_time: pd.Timestamp
    local_date: date
    destination: str  # leading '+' removed
    duration_s: int
    charge: int


def _calls(inputs: BillingInputs, tz: str) -> list[Call]:
    zone = ZoneInfo(tz)
    out = []
    for r in inputs.usage.to_dict("records"):
        ts = pd.Timestamp(r["start_time"])
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        local = ts.to_pydatetime().astimezone(zone).date()
        dest = str(r["destination"])
        if dest.startswith("+"):
            dest = dest[1:]
        out.append(Call(r["call_id"], r["customer_id"], ts, local, dest,
                        int(r["duration_s"]), int(r["charge"])))
    return out


# --------------------------------------------------------------------------- the rules

def _line(D, a: Assignment, currency, kind, period_start, period_end, unit_price, amount, cost):
    return {
        "run_date": D, "customer_id": a.customer_id, "assignment_id": a.assignment_id,
        "package_id": a.package.package_id, "kind": kind, "period_start": period_start,
        "period_end": period_end, "quantity": a.quantity, "unit_price": unit_price,
        "amount": round_half_up(amount, currency), "cost": round_half_up(cost, currency),
        "currency": currency, "auto_decrement": a.auto_decrement,
    }


def _spend(calls: list[Call], customer_id: str, start: date, end: date,
           covered: dict[str, int] | None = None) -> int:
    """The customer's call charges in [start, end), each net of its free-minute cover."""
    covered = covered or {}
    return sum(c.charge - covered.get(c.call_id, 0) for c in calls
               if c.customer_id == customer_id and start <= c.local_date < end)


def due_lines_on(D: date, a: Assignment, currency: str, calls: list[Call],
                 covered: dict[str, int] | None = None) -> list[dict]:
    p = a.package
    q = a.quantity
    lines = []
    if D == a.start and (p.setup_retail != 0 or p.setup_cost != 0):
        lines.append(_line(D, a, currency, "setup", a.start, None, p.setup_retail,
                           p.setup_retail * q, p.setup_cost * q))
    if not p.minimum_spend:
        if a.is_billing_date(D):
            per = a.period_of(D)
            cut = (Fraction(per.days, per.uncut_days) if p.prorate and per.end is not None
                   else 1)  # trailing proration
            lines.append(_line(D, a, currency, "recurring", per.start, per.end, p.retail,
                               p.retail * q * cut, p.cost * q * cut))
        if D == a.start and p.prorate and not a.calendar.contains(D):
            stub = a.stub()
            ratio = Fraction(stub.days, stub.uncut_days)
            lines.append(_line(D, a, currency, "prorated", stub.start, stub.end, p.retail,
                               p.retail * q * ratio, p.cost * q * ratio))
    else:
        for per in a.periods_starting_until(D):
            if per.end != D:
                continue
            ratio = Fraction(per.days, per.uncut_days)
            spend = _spend(calls, a.customer_id, per.start, per.end, covered)
            amount = max(Fraction(0), p.retail * q * ratio - spend)
            lines.append(_line(D, a, currency, "minimum_spend", per.start, per.end, p.retail,
                               amount, p.cost * q * ratio))
    return lines


def grant_periods(a: Assignment, last: date) -> list[tuple[Period, int]]:
    """(period, seconds) of every free-minute grant of `a` whose period starts <= last."""
    if a.package.type != "free_minutes":
        return []
    minutes = a.grant_minutes()
    out = []
    for per in a.periods_starting_until(last):
        if per.kind == "stub":
            out.append((per, (minutes * per.days // per.uncut_days) * 60))
        else:
            out.append((per, minutes * 60))
    return out


def grants_on(D: date, a: Assignment) -> list[dict]:
    rows = []
    for per, seconds in grant_periods(a, D):
        if per.start != D:
            continue
        rows.append({
            "run_date": D, "customer_id": a.customer_id, "assignment_id": a.assignment_id,
            "package_id": a.package.package_id, "period_start": per.start,
            "period_end": per.end, "destination": a.package.destination, "seconds": seconds,
        })
    return rows


LATE_CALL_DAYS = 7  # SPEC section 9 / docs/free_minutes.md: late calls up to 7 days back


@dataclass
class FreeMinuteState:
    """What earlier posts consumed: per grant (assignment_id, period_start) [seconds used,
    covered micros], and per consumed call its covered micros."""
    used: dict
    calls: dict

    @staticmethod
    def fresh() -> "FreeMinuteState":
        return FreeMinuteState({}, {})


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def free_minutes_on(D: date, assignments: list[Assignment], calls: list[Call],
                    currencies: dict, state: FreeMinuteState):
    """Plain loops over SPEC section 9: the calls of [D-1-7, D-1] not consumed before consume
    the grants whose period holds their day, earliest-ending first (open last), then the
    lowest assignment_id, spilling over. Returns (credit lines, utilisation rows, the
    consumption [(call_id, assignment_id, period_start, seconds, covered, late)]) and
    updates `state`."""
    x = D - ONE_DAY
    lo = x - timedelta(days=LATE_CALL_DAYS)
    parts = []
    util = []
    for customer_id in sorted({a.customer_id for a in assignments}):
        grants = []  # [assignment, period, seconds]
        for a in assignments:
            if a.customer_id != customer_id:
                continue
            for per, seconds in grant_periods(a, x):
                if per.end is None or per.end > lo:
                    grants.append([a, per, seconds])
        if not grants:
            continue
        mine = sorted((c for c in calls if c.customer_id == customer_id
                       and lo <= c.local_date <= x and c.call_id not in state.calls),
                      key=lambda c: (c.start_time, c.call_id))
        for call in mine:
            eligible = [g for g in grants
                        if g[1].contains(call.local_date)
                        and re.search(g[0].package.destination, call.destination)]
            eligible.sort(key=lambda g: (g[1].end is None, g[1].end or date.min,
                                         g[0].assignment_id))
            left = call.duration_s
            for a, per, seconds in eligible:
                key = (a.assignment_id, per.start)
                used = state.used.setdefault(key, [0, 0])
                take = min(left, seconds - used[0])
                if take <= 0:
                    continue
                cover = (_half_up(Fraction(call.charge * take, call.duration_s))
                         if a.package.free_minutes_mode == "credit" else 0)
                used[0] += take
                used[1] += cover
                left -= take
                state.calls[call.call_id] = state.calls.get(call.call_id, 0) + cover
                parts.append((call.call_id, a, per.start, take, cover, call.local_date < x))
        for a, per, seconds in grants:
            if per.contains(x):
                used = state.used.get((a.assignment_id, per.start), [0, 0])
                util.append({
                    "customer_id": customer_id, "assignment_id": a.assignment_id,
                    "period_start": per.start, "period_end": per.end,
                    "seconds_granted": seconds, "seconds_used": used[0], "credited": used[1],
                })
    lines = []
    by_assignment: dict[str, list] = {}
    for call_id, a, ps, take, cover, late in parts:
        if a.package.free_minutes_mode == "credit":
            by_assignment.setdefault(a.assignment_id, [a, 0])[1] += cover
    for aid in sorted(by_assignment):
        a, cover = by_assignment[aid]
        currency = currencies[a.customer_id]
        amount = -round_half_up(cover, currency)
        lines.append({
            "run_date": D, "customer_id": a.customer_id, "assignment_id": aid,
            "package_id": a.package.package_id, "kind": "free_minutes_credit",
            "period_start": x, "period_end": D, "quantity": 1, "unit_price": -amount,
            "amount": amount, "cost": 0, "currency": currency,
            "auto_decrement": a.auto_decrement,
        })
    return lines, util, parts


def extended_ends(assignments: list[Assignment]) -> list[dict]:
    rows = []
    for a in assignments:
        if a.end is None or a.package.minimum_days <= 0:
            continue
        minimum_end = a.start + timedelta(days=a.package.minimum_days - 1)
        if minimum_end > a.end:
            rows.append({"assignment_id": a.assignment_id, "customer_id": a.customer_id,
                         "end_date": a.end, "effective_end": minimum_end})
    return rows


# --------------------------------------------------------------------------- frames

_DATE_COLUMNS = {"run_date", "period_start", "period_end", "end_date", "effective_end"}
_INT_COLUMNS = {"quantity", "unit_price", "amount", "cost", "seconds", "seconds_granted",
                "seconds_used", "credited"}
_BOOL_COLUMNS = {"auto_decrement"}


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    data = {}
    for c in columns:
        values = [r[c] for r in rows]
        if c in _DATE_COLUMNS:
            data[c] = pd.Series([pd.NaT if v is None else pd.Timestamp(v) for v in values],
                                dtype="datetime64[s]")
        elif c in _INT_COLUMNS:
            data[c] = pd.Series(values, dtype="int64")
        elif c in _BOOL_COLUMNS:
            data[c] = pd.Series(values, dtype="bool")
        else:
            data[c] = pd.Series(values, dtype="str")
    return pd.DataFrame(data, columns=columns)


def reference_billing(inputs: BillingInputs, run_date: date, tz: str = "UTC",
                      state: FreeMinuteState | None = None) -> BillingResult:
    """One billing date. `state`: what earlier posts consumed (fresh when None; updated in
    place, so a loop over dates with one state is a sequence of posts)."""
    D = pd.Timestamp(run_date).date()
    currencies, assignments = _read(inputs)
    calls = _calls(inputs, tz)
    state = state if state is not None else FreeMinuteState.fresh()
    credits, util_rows, _parts = free_minutes_on(D, assignments, calls, currencies, state)
    lines, grants = list(credits), []
    for a in assignments:
        lines.extend(due_lines_on(D, a, currencies[a.customer_id], calls, state.calls))
        grants.extend(grants_on(D, a))
    lines.sort(key=lambda r: (r["customer_id"], r["assignment_id"], r["kind"], r["period_start"]))
    grants.sort(key=lambda r: (r["customer_id"], r["assignment_id"], r["period_start"]))
    util = sorted(util_rows,
                  key=lambda r: (r["customer_id"], r["assignment_id"], r["period_start"]))
    ext = sorted(extended_ends(assignments), key=lambda r: r["assignment_id"])
    return BillingResult(
        due_lines=_frame(lines, DUE_LINE_COLUMNS),
        grants=_frame(grants, GRANT_COLUMNS),
        utilisation=_frame(util, UTILISATION_COLUMNS),
        extended_ends=_frame(ext, EXTENDED_END_COLUMNS),
    )


# ----------------------------------------------------------------- free-minute consumption (#12)

def reference_consume(grants: list[dict], calls: list[dict]) -> list[tuple[str, str, int]]:
    """Plain-loop consumption: (call_id, assignment_id, seconds taken). `grants` dicts carry
    customer_id, assignment_id, start/end (day numbers, end None = open), pattern (a predicate),
    seconds, used; `calls` carry call_id, customer_id, t, day, dest, duration. Mutates `used`."""
    out = []
    for call in sorted(calls, key=lambda c: (c["customer_id"], c["t"], c["call_id"])):
        left = call["duration"]
        mine = [g for g in grants if g["customer_id"] == call["customer_id"]
                and g["start"] <= call["day"] and (g["end"] is None or call["day"] < g["end"])
                and g["pattern"](call["dest"])]
        mine.sort(key=lambda g: (g["end"] if g["end"] is not None else 10**9, g["assignment_id"]))
        for g in mine:
            take = min(left, g["seconds"] - g["used"])
            if take > 0:
                g["used"] += take
                left -= take
                out.append((call["call_id"], g["assignment_id"], take))
    return sorted(out)


# ------------------------------------------------------------ terms over time (SPEC 10, #27)
#
# One assignment and its change history, by plain loops over dates. Rules (SPEC 10 and
# docs/decisions.md "Terms over time: the engine"):
#
# * Price versions: a package's money terms on day x are those of its latest version with
#   effective_from <= x, else the package row. A line is priced on its period's first day
#   (setup and a start stub: the start date; recurring: its billing date; change lines: the
#   first day s of the period they split, for the old and the new terms alike).
# * Changes apply in (effective day, change_id) order, an absent field keeping the terms
#   before. The calendar, the setup (once, on the start), the minimum term and the effective
#   end stay the assignment's own (its original package's).
# * When a change dated D takes effect: the package in force (by the changes as dated) on the
#   first day s of the period holding D prorates -> on D; otherwise -> the first billing date
#   on or after D (the period holding D stands as billed). A day D that holds no period (a
#   start stub that is not charged) reads the package in force on D.
# * Cancel: service stops on the earliest cancel's effective day, never before the minimum
#   term's end + 1, never after an existing end + 1. No billing date at or after the stop.
# * Splits: each effective day X of a change, and the stop, that lies strictly inside a period
#   [s, e) (e cut by the effective end, not by the cancel) whose package on s prorates, with
#   X <= stop. On X: change_credit = -round(old retail x old qty x (e - X) / uncut days) on
#   the old customer and package, change_charge = round(new ... ) on the new ones (none after
#   a cancel: X = stop). Nothing when customer, package, quantity, retail and cost are all
#   the same. uncut days = the calendar period's (a stub's: the calendar period holding it).
# * A recurring line is priced with the terms in force on its billing date; with prorate it
#   is cut (trailing proration) by the effective end only, never by a cancel (the credit gives
#   the rest back); without prorate it is the full price and its period_end is cut at the stop.
# * Void: the assignment yields nothing.
#
# Covered: standard packages without minimum spend (a minimum-spend package raises
# NotImplementedError); no free-minute grants (a free_minutes override change is only a
# change that changes no money). Calendars: any, but tested with weekly and monthly.


@dataclass(frozen=True)
class Money:
    """A package's money terms in force on some day (its row, or a version)."""
    cost: int
    retail: int
    setup_cost: int
    setup_retail: int
    free_minutes: int


@dataclass(frozen=True)
class TermsChange:
    change_id: int
    day: date  # effective_from as entered
    quantity: int | None
    package_id: str | None
    free_minutes: int | None
    customer_id: str | None
    cancel: bool
    void: bool


@dataclass(frozen=True)
class Terms:
    customer_id: str
    package: Package
    quantity: int
    free_minutes: int | None

    def then(self, c: TermsChange, packages: dict[str, Package]) -> "Terms":
        return Terms(
            customer_id=self.customer_id if c.customer_id is None else c.customer_id,
            package=self.package if c.package_id is None else packages[c.package_id],
            quantity=self.quantity if c.quantity is None else c.quantity,
            free_minutes=self.free_minutes if c.free_minutes is None else c.free_minutes,
        )


@dataclass(frozen=True)
class Segment:
    """Terms in force on the days [start, end) (end None: open)."""
    start: date
    end: date | None
    terms: Terms


def _opt(value):
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


class History:
    """One assignment with its change history and the price versions of the packages."""

    def __init__(self, a: Assignment, packages: dict[str, Package],
                 versions: dict[str, list[tuple[date, Money]]], changes: list[TermsChange]):
        if a.package.minimum_spend:
            raise NotImplementedError("minimum-spend packages are not in the terms reference")
        self.a = a
        self.packages = packages
        self.versions = versions
        self.voided = any(c.void for c in changes)
        self.changes = sorted((c for c in changes if not c.void),
                              key=lambda c: (c.day, c.change_id))
        self.base = Terms(a.customer_id, a.package, a.quantity, a.free_minutes)
        self.effective = {c.change_id: self._takes_effect(c) for c in self.changes}
        self.stop = self._stop()

    # -- terms on a day

    def money(self, package: Package, day: date) -> Money:
        m = Money(package.cost, package.retail, package.setup_cost, package.setup_retail,
                  package.free_minutes)
        for since, version in self.versions.get(package.package_id, []):  # by effective_from
            if since <= day:
                m = version
        return m

    def terms_as_dated(self, day: date) -> Terms:
        """The terms on `day` if every change took effect on the day it is dated."""
        t = self.base
        for c in self.changes:
            if c.day <= day:
                t = t.then(c, self.packages)
        return t

    def terms(self, day: date) -> Terms:
        """The terms in force on `day` (each change from the day it takes effect)."""
        t = self.base
        for c in sorted(self.changes, key=lambda c: (self.effective[c.change_id], c.day,
                                                     c.change_id)):
            if self.effective[c.change_id] <= day:
                t = t.then(c, self.packages)
        return t

    # -- periods

    def period_holding(self, d: date) -> Period | None:
        """The charged-or-not period of the calendar holding d (billing periods cut by the
        effective end; the start stub only when the original package prorates)."""
        a = self.a
        if d < a.start or (a.effective_end is not None and d > a.effective_end):
            return None
        stub = a.stub()
        if stub is not None and d < stub.end:
            return stub if a.package.prorate else None
        b = d if a.calendar.contains(d) else a.calendar.prev_before(d)
        return a.period_of(b)

    def _first_billing_on_or_after(self, d: date) -> date:
        cal = self.a.calendar
        return d if cal.contains(d) else cal.next_after(d)

    def _takes_effect(self, c: TermsChange) -> date:
        if c.day <= self.a.start:
            return c.day
        p = self.period_holding(c.day)
        s = c.day if p is None else p.start
        if self.terms_as_dated(s).package.prorate:
            return c.day
        return self._first_billing_on_or_after(c.day)

    def _stop(self) -> date | None:
        """The first day without service (None: open)."""
        cut = self.a.cut
        cancels = [self.effective[c.change_id] for c in self.changes if c.cancel]
        if not cancels:
            return cut
        floor = self.a.start + timedelta(days=max(self.a.package.minimum_days, 1) - 1)
        stop = max(min(cancels), floor + ONE_DAY)
        return stop if cut is None else min(stop, cut)

    def serves(self, d: date) -> bool:
        return d >= self.a.start and (self.stop is None or d < self.stop)

    def segments(self) -> list[Segment]:
        """The terms of the service window, segment by segment (consecutive equal terms
        merged)."""
        if self.voided:
            return []
        days = sorted({self.a.start} | {x for x in self.effective.values()
                                         if x > self.a.start
                                         and (self.stop is None or x < self.stop)})
        out: list[Segment] = []
        for i, d in enumerate(days):
            end = days[i + 1] if i + 1 < len(days) else self.stop
            t = self.terms(d)
            if out and out[-1].terms == t:
                out[-1] = Segment(out[-1].start, end, t)
            else:
                out.append(Segment(d, end, t))
        return out

    def split_days(self) -> list[tuple[date, Period]]:
        """(X, the period [s, e) it splits): change days and the stop strictly inside a
        period whose package on s prorates, X <= stop."""
        days = {self.effective[c.change_id] for c in self.changes if not c.cancel}
        if self.stop is not None:
            days.add(self.stop)
        out = []
        for x in sorted(days):
            if self.stop is not None and x > self.stop:
                continue
            p = self.period_holding(x)
            if p is None or not (p.start < x < p.end):
                continue
            if self.terms(p.start).package.prorate:
                out.append((x, p))
        return out

    # -- lines

    def _line(self, run_date, t: Terms, kind, period_start, period_end, unit, amount, cost,
              currency, sign=1):
        return {
            "run_date": run_date, "customer_id": t.customer_id,
            "assignment_id": self.a.assignment_id, "package_id": t.package.package_id,
            "kind": kind, "period_start": period_start, "period_end": period_end,
            "quantity": t.quantity, "unit_price": unit,
            "amount": sign * round_half_up(amount, currency),
            "cost": sign * round_half_up(cost, currency),
            "currency": currency, "auto_decrement": self.a.auto_decrement,
        }

    def lines(self, last: date, currency: str) -> list[dict]:
        """Every line of every billing date up to `last` (run_date = the date that yields it)."""
        if self.voided:
            return []
        a = self.a
        out = []
        if a.start > last:
            return out
        t = self.terms(a.start)
        m = self.money(t.package, a.start)
        q = t.quantity
        if m.setup_retail or m.setup_cost:
            out.append(self._line(a.start, t, "setup", a.start, None, m.setup_retail,
                                  m.setup_retail * q, m.setup_cost * q, currency))
        stub = a.stub()
        if stub is not None and t.package.prorate:
            r = Fraction(stub.days, stub.uncut_days)
            out.append(self._line(a.start, t, "prorated", stub.start, stub.end, m.retail,
                                  m.retail * q * r, m.cost * q * r, currency))
        for b in a.billing_dates_until(last):
            if not self.serves(b):
                break
            t = self.terms(b)
            m = self.money(t.package, b)
            p = a.period_of(b)
            if t.package.prorate and p.end is not None:
                r, end = Fraction(p.days, p.uncut_days), p.end
            else:
                r = 1
                end = p.end if self.stop is None else (
                    self.stop if p.end is None else min(p.end, self.stop))
            out.append(self._line(b, t, "recurring", b, end, m.retail,
                                  m.retail * t.quantity * r, m.cost * t.quantity * r, currency))
        for x, p in self.split_days():
            if x > last:
                break
            old, new = self.terms(x - ONE_DAY), self.terms(x)
            mo, mn = self.money(old.package, p.start), self.money(new.package, p.start)
            cancelled = self.stop is not None and x >= self.stop
            same = (old.customer_id == new.customer_id
                    and old.package.package_id == new.package.package_id
                    and old.quantity == new.quantity and mo.retail == mn.retail
                    and mo.cost == mn.cost)
            r = Fraction((p.end - x).days, p.uncut_days)
            if cancelled or not same:
                out.append(self._line(x, old, "change_credit", x, p.end, mo.retail,
                                      mo.retail * old.quantity * r, mo.cost * old.quantity * r,
                                      currency, sign=-1))
            if not cancelled and not same:
                out.append(self._line(x, new, "change_charge", x, p.end, mn.retail,
                                      mn.retail * new.quantity * r, mn.cost * new.quantity * r,
                                      currency))
        return out


def read_histories(inputs: BillingInputs) -> tuple[dict[str, str], dict[str, History]]:
    """(currency of each customer, History of each assignment) from the input frames."""
    currencies, assignments = _read(inputs)
    packages = _read_packages(inputs)
    versions: dict[str, list[tuple[date, Money]]] = {}
    for r in inputs.versions.to_dict("records"):
        versions.setdefault(r["package_id"], []).append((_date(r["effective_from"]), Money(
            int(r["cost"]), int(r["retail"]), int(r["setup_cost"]), int(r["setup_retail"]),
            int(r["free_minutes"]))))
    for v in versions.values():
        v.sort(key=lambda x: x[0])
    changes: dict[str, list[TermsChange]] = {}
    for r in inputs.changes.to_dict("records"):
        q, fm = _opt(r["quantity"]), _opt(r["free_minutes"])
        changes.setdefault(r["assignment_id"], []).append(TermsChange(
            change_id=int(r["change_id"]), day=_date(r["effective_from"]),
            quantity=None if q is None else int(q), package_id=_opt(r["package_id"]),
            free_minutes=None if fm is None else int(fm), customer_id=_opt(r["customer_id"]),
            cancel=bool(r["cancel"]), void=bool(r["void"])))
    return currencies, {a.assignment_id: History(a, packages, versions,
                                                 changes.get(a.assignment_id, []))
                        for a in assignments}


def reference_terms_lines(inputs: BillingInputs, first: date, last: date) -> list[dict]:
    """Every due line with run_date in [first, last], over terms that change (SPEC 10)."""
    currencies, histories = read_histories(inputs)
    out = []
    for aid in sorted(histories):
        h = histories[aid]
        currency = currencies[h.a.customer_id]
        out.extend(x for x in h.lines(last, currency) if x["run_date"] >= first)
    return out
