"""Test data for the engine: small builders of contract frames, and hypothesis strategies.

Builders take money as decimal text (`"9.99"`) and dates as ISO text, and return the
validated-input frames of docs/contracts.md (money int64 micros, dates datetime64[s],
call times datetime64[us, UTC]).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pandas as pd
from hypothesis import strategies as st

from billing_jobs.core.frames import (
    ASSIGNMENT_COLUMNS,
    CUSTOMER_COLUMNS,
    PACKAGE_COLUMNS,
    USAGE_COLUMNS,
    BillingInputs,
)
from billing_jobs.core.money import parse_micros
from tests.calc.reference import Calendar, parse_match


# --------------------------------------------------------------------------- builders

def _money(value) -> int:
    return value if isinstance(value, int) else parse_micros(str(value))


def customer(customer_id="C1", currency="EUR", balance="0", name=None) -> dict:
    return {"customer_id": customer_id, "name": name or f"Customer {customer_id}",
            "currency": currency, "balance": _money(balance)}


def package(package_id="P1", *, type="standard", cost="0", retail="0", setup_cost="0",
            setup_retail="0", currency="EUR", frequency="monthly", match=None,
            free_minutes=0, destination="", minimum_spend=False, minimum_days=0,
            prorate=False, name=None, free_minutes_mode="credit") -> dict:
    return {"package_id": package_id, "name": name or f"Package {package_id}", "type": type,
            "cost": _money(cost), "retail": _money(retail), "setup_cost": _money(setup_cost),
            "setup_retail": _money(setup_retail), "currency": currency,
            "frequency": frequency, "frequency_match": match, "free_minutes": free_minutes,
            "destination": destination, "minimum_spend": minimum_spend,
            "minimum_days": minimum_days, "prorate": prorate, "description": "",
            "free_minutes_mode": free_minutes_mode}


def assignment(assignment_id="A1", customer_id="C1", package_id="P1", *, quantity=1,
               start="2027-01-01", end=None, auto_decrement=True, free_minutes=None) -> dict:
    return {"assignment_id": assignment_id, "customer_id": customer_id,
            "package_id": package_id, "quantity": quantity, "start_date": start,
            "end_date": end, "auto_decrement": auto_decrement, "free_minutes": free_minutes}


def call(call_id="U1", customer_id="C1", *, at="2027-01-05T10:00:00Z", destination="+442071234567",
         duration_s=60, charge="0") -> dict:
    return {"call_id": call_id, "customer_id": customer_id, "start_time": at,
            "destination": destination, "duration_s": duration_s, "charge": _money(charge)}


def _dates(values) -> pd.Series:
    return pd.Series(
        [pd.NaT if v is None else pd.Timestamp(v) for v in values], dtype="datetime64[s]"
    )


def make_inputs(customers, packages, assignments, usage=()) -> BillingInputs:
    customers, packages, assignments, usage = (list(x) for x in
                                               (customers, packages, assignments, usage))
    cust = pd.DataFrame({
        "customer_id": pd.Series([c["customer_id"] for c in customers], dtype="str"),
        "name": pd.Series([c["name"] for c in customers], dtype="str"),
        "currency": pd.Series([c["currency"] for c in customers], dtype="str"),
        "balance": pd.Series([c["balance"] for c in customers], dtype="int64"),
    }, columns=CUSTOMER_COLUMNS)
    pk = {c: [p.get(c) for p in packages] for c in PACKAGE_COLUMNS}  # a new column: None
    pkgs = pd.DataFrame({
        "package_id": pd.Series(pk["package_id"], dtype="str"),
        "name": pd.Series(pk["name"], dtype="str"),
        "type": pd.Series(pk["type"], dtype="str"),
        **{m: pd.Series(pk[m], dtype="int64")
           for m in ("cost", "retail", "setup_cost", "setup_retail")},
        "currency": pd.Series(pk["currency"], dtype="str"),
        "frequency": pd.Series(pk["frequency"], dtype="str"),
        "frequency_match": pd.Series(pk["frequency_match"], dtype="object"),
        "free_minutes": pd.Series(pk["free_minutes"], dtype="int64"),
        "destination": pd.Series(pk["destination"], dtype="str"),
        "minimum_spend": pd.Series(pk["minimum_spend"], dtype="bool"),
        "minimum_days": pd.Series(pk["minimum_days"], dtype="int64"),
        "prorate": pd.Series(pk["prorate"], dtype="bool"),
        "description": pd.Series(pk["description"], dtype="str"),
        "free_minutes_mode": pd.Series(pk["free_minutes_mode"], dtype="str"),
    }, columns=PACKAGE_COLUMNS)
    asg = pd.DataFrame({
        "assignment_id": pd.Series([a["assignment_id"] for a in assignments], dtype="str"),
        "customer_id": pd.Series([a["customer_id"] for a in assignments], dtype="str"),
        "package_id": pd.Series([a["package_id"] for a in assignments], dtype="str"),
        "quantity": pd.Series([a["quantity"] for a in assignments], dtype="int64"),
        "start_date": _dates([a["start_date"] for a in assignments]),
        "end_date": _dates([a["end_date"] for a in assignments]),
        "auto_decrement": pd.Series([a["auto_decrement"] for a in assignments], dtype="bool"),
        "free_minutes": pd.Series([pd.NA if a["free_minutes"] is None else a["free_minutes"]
                                   for a in assignments], dtype="Int64"),
    }, columns=ASSIGNMENT_COLUMNS)
    use = pd.DataFrame({
        "call_id": pd.Series([u["call_id"] for u in usage], dtype="str"),
        "customer_id": pd.Series([u["customer_id"] for u in usage], dtype="str"),
        "start_time": pd.Series(pd.to_datetime([u["start_time"] for u in usage], utc=True),
                                dtype="datetime64[ns, UTC]").astype("datetime64[us, UTC]"),
        "destination": pd.Series([u["destination"] for u in usage], dtype="str"),
        "duration_s": pd.Series([u["duration_s"] for u in usage], dtype="int64"),
        "charge": pd.Series([u["charge"] for u in usage], dtype="int64"),
    }, columns=USAGE_COLUMNS)
    return BillingInputs(customers=cust, packages=pkgs, assignments=asg, usage=use)


def D(text: str) -> date:
    return date.fromisoformat(text)


# --------------------------------------------------------------------------- strategies

CURRENCIES = ["EUR", "JPY", "KWD"]
PATTERNS = ["", "^44", "^44|^1", "^1", "91"]
TIMEZONES = ["UTC", "UTC", "Europe/London", "America/New_York", "Pacific/Auckland"]
DIALLED = ["+442071234567", "442071234567", "+12125550100", "12125550100", "+919812345678",
           "33142000000", "+4470", "1"]

# Money in micros: awkward halves for rounding, up to 6 decimals.
money_micros = st.one_of(
    st.sampled_from([0, 1, 5_000, 10_000, 12_500, 125_000, 500_000, 1_000_000, 9_990_000,
                     31_000_000, 333_500_000, 1_234_567, 99_999_999]),
    st.integers(min_value=0, max_value=500_000_000),
)

# Dates around month ends, 28/29 Feb of leap and common years.
ANCHORS = [D("2027-01-31"), D("2027-02-28"), D("2027-03-01"), D("2027-03-31"),
           D("2027-04-30"), D("2027-06-30"), D("2027-12-31"), D("2028-01-31"),
           D("2028-02-28"), D("2028-02-29"), D("2028-03-01"), D("2028-04-30"),
           D("2028-09-30"), D("2027-01-20"), D("2027-05-15")]


def near(anchor_st, lo=-3, hi=3):
    return st.tuples(anchor_st, st.integers(lo, hi)).map(lambda t: t[0] + timedelta(days=t[1]))


anchor_dates = near(st.sampled_from(ANCHORS))


@st.composite
def frequency_and_match(draw):
    # weekly/monthly weighted up: with a match they are the ones with stubs (prorated starts).
    freq = draw(st.sampled_from(["once", "daily", "weekly", "weekly", "monthly", "monthly",
                                 "monthly", "yearly"]))
    match = None
    sep = draw(st.sampled_from(["|", ","]))
    with_match = draw(st.sampled_from([False, True, True]))
    if freq == "weekly" and with_match:
        days = draw(st.lists(st.integers(1, 7), min_size=1, max_size=3, unique=True))
        match = sep.join(str(d) for d in days)
    elif freq == "monthly" and with_match:
        days = draw(st.lists(st.sampled_from([1, 2, 10, 15, 28, 29, 30, 31]),
                             min_size=1, max_size=3, unique=True))
        match = sep.join(str(d) for d in days)
    return freq, match


@st.composite
def packages_st(draw, package_id: str, currency: str) -> dict:
    freq, match = draw(frequency_and_match())
    ptype = draw(st.sampled_from(["standard", "free_minutes"]))
    return package(
        package_id, type=ptype, cost=draw(money_micros), retail=draw(money_micros),
        setup_cost=draw(st.one_of(st.just(0), money_micros)),
        setup_retail=draw(st.one_of(st.just(0), money_micros)),
        currency=currency, frequency=freq, match=match,
        free_minutes=draw(st.sampled_from([0, 1, 7, 100, 333])) if ptype == "free_minutes" else 0,
        destination=draw(st.sampled_from(PATTERNS)) if ptype == "free_minutes" else "",
        minimum_spend=draw(st.sampled_from([False, False, True])),
        minimum_days=draw(st.sampled_from([0, 0, 1, 7, 30, 45])),
        prorate=draw(st.booleans()),
    )


@st.composite
def billing_cases(draw):
    """(inputs, run_date, tz): 1-2 customers, 1-3 packages, 1-4 assignments, 0-10 calls."""
    n_customers = draw(st.integers(1, 2))
    customers = [customer(f"C{i}", draw(st.sampled_from(CURRENCIES)))
                 for i in range(1, n_customers + 1)]
    n_packages = draw(st.integers(1, 3))
    packages = [draw(packages_st(f"P{i}", draw(st.sampled_from([c["currency"] for c in customers]))))
                for i in range(1, n_packages + 1)]
    assignments = []
    for i in range(1, draw(st.integers(1, 4)) + 1):
        p = draw(st.sampled_from(packages))
        c = draw(st.sampled_from([c for c in customers if c["currency"] == p["currency"]]))
        start = draw(anchor_dates)
        end = draw(st.one_of(st.none(), st.integers(0, 75).map(lambda n: start + timedelta(days=n))))
        override = None
        if p["type"] == "free_minutes" and draw(st.booleans()):
            override = draw(st.sampled_from([0, 1, 50, 125]))
        assignments.append(assignment(
            f"A{i}", c["customer_id"], p["package_id"], quantity=draw(st.sampled_from([1, 1, 2, 3, 7])),
            start=start.isoformat(), end=None if end is None else end.isoformat(),
            auto_decrement=draw(st.booleans()), free_minutes=override,
        ))

    # The run date: near a start, the first billing dates, an end, the end of a minimum term,
    # an anniversary, an anchor.
    a = draw(st.sampled_from(assignments))
    p = next(p for p in packages if p["package_id"] == a["package_id"])
    start = D(a["start_date"])
    cal = Calendar(p["frequency"], tuple(parse_match(p["frequency_match"])), start)
    candidates = [start, start + timedelta(days=max(p["minimum_days"], 1))]
    nxt = cal.next_after(start)
    if nxt is not None:
        candidates += [nxt, cal.next_after(nxt)]
    if a["end_date"]:
        end = D(a["end_date"])
        candidates += [end + timedelta(days=1),
                       max(end, start + timedelta(days=p["minimum_days"] - 1)) + timedelta(days=1)]
    try:
        candidates.append(start.replace(year=start.year + 1))
    except ValueError:
        candidates.append(date(start.year + 1, 2, 28))
    run_date = draw(st.one_of(
        st.just(start),
        st.sampled_from(candidates),
        near(st.sampled_from(candidates), -2, 2),
        st.integers(0, 100).map(lambda n: start + timedelta(days=n)),
        anchor_dates,
    ))

    tz = draw(st.sampled_from(TIMEZONES))
    calls = []
    first = min(D(x["start_date"]) for x in assignments) - timedelta(days=3)
    span = max((run_date - first).days, 0)
    for i in range(1, draw(st.integers(0, 10)) + 1):
        # mostly in the last weeks before the run date, where the periods that end or are
        # reported are; sometimes anywhere since the first start.
        day = draw(st.one_of(
            st.integers(0, 40).map(lambda n: run_date - timedelta(days=n)),
            st.integers(0, span).map(lambda n: first + timedelta(days=n)),
        ))
        secs = draw(st.one_of(st.sampled_from([0, 1, 3599, 3600 * 5, 43200, 86399]),
                              st.integers(0, 86399)))
        at = datetime.combine(day, time(), tzinfo=timezone.utc) + timedelta(seconds=secs)
        calls.append(call(
            f"U{i:02d}", draw(st.sampled_from(customers))["customer_id"], at=at.isoformat(),
            destination=draw(st.sampled_from(DIALLED)),
            duration_s=draw(st.sampled_from([0, 1, 59, 60, 61, 600, 3600, 7200])),
            charge=draw(st.one_of(st.sampled_from([0, 1, 5_000, 1_000_000]),
                                  st.integers(0, 50_000_000))),
        ))
    return make_inputs(customers, packages, assignments, calls), run_date, tz


@st.composite
def utilisation_cases(draw):
    """(inputs, run_date, tz) aimed at free-minute competition: one customer, 2-4 free-minute
    assignments with few minutes and different calendars, many calls over the weeks before
    the run date (so grants run out, calls spill, and periods that ended earlier compete)."""
    currency = draw(st.sampled_from(CURRENCIES))
    run_date = draw(anchor_dates)
    packages, assignments = [], []
    for i in range(1, draw(st.integers(2, 4)) + 1):
        freq, match = draw(frequency_and_match())
        packages.append(package(
            f"P{i}", type="free_minutes", retail=draw(money_micros), currency=currency,
            frequency=freq, match=match, free_minutes=draw(st.sampled_from([0, 1, 1, 2, 5])),
            destination=draw(st.sampled_from(["", "", "", "^44", "^44|^1"])), minimum_spend=False,
            minimum_days=draw(st.sampled_from([0, 0, 10])), prorate=draw(st.booleans()),
        ))
        start = run_date - timedelta(days=draw(st.integers(0, 60)))
        end = draw(st.one_of(st.none(), st.integers(0, 60).map(lambda n: start + timedelta(days=n))))
        assignments.append(assignment(
            # ids whose string order differs from their numeric order ("A10" < "A2")
            draw(st.sampled_from(["A", "B", "A10", "A2"])) + str(i), "C1", f"P{i}",
            quantity=draw(st.sampled_from([1, 2])), start=start.isoformat(),
            end=None if end is None else end.isoformat(),
            free_minutes=draw(st.sampled_from([None, None, None, 0, 1, 3])),
        ))
    starts = [D(a["start_date"]) for a in assignments]
    calls = []
    for i in range(1, draw(st.integers(1, 20)) + 1):
        # near the run date, or just around an assignment's start (where periods straddle)
        day = draw(st.one_of(
            st.integers(0, 45).map(lambda n: run_date - timedelta(days=n)),
            near(st.sampled_from(starts), -4, 8),
        ))
        secs = draw(st.one_of(st.sampled_from([0, 3600 * 5, 43200, 86399]), st.integers(0, 86399)))
        at = datetime.combine(day, time(), tzinfo=timezone.utc) + timedelta(seconds=secs)
        calls.append(call(f"U{i:02d}", "C1", at=at.isoformat(),
                          destination=draw(st.sampled_from(DIALLED)),
                          duration_s=draw(st.sampled_from([0, 30, 60, 90, 150, 301]))))
    tz = draw(st.sampled_from(TIMEZONES))
    return (make_inputs([customer("C1", currency)], packages, assignments, calls), run_date, tz)


# --------------------------------------------------------------------------- terms over time

def version(package_id="P1", effective_from="2027-12-01", *, cost="0", retail="0",
            setup_cost="0", setup_retail="0", free_minutes=0) -> dict:
    """A price version of a package (SPEC 10), in force from `effective_from`."""
    return {"package_id": package_id, "effective_from": effective_from, "cost": _money(cost),
            "retail": _money(retail), "setup_cost": _money(setup_cost),
            "setup_retail": _money(setup_retail), "free_minutes": free_minutes}


def change(change_id=1, effective_from="2027-11-10", assignment_id="A1", *, quantity=None,
           package_id=None, free_minutes=None, customer_id=None, cancel=False,
           void=False) -> dict:
    """A change of an assignment from a date (SPEC 10); None fields are unchanged."""
    return {"change_id": change_id, "assignment_id": assignment_id,
            "effective_from": effective_from, "quantity": quantity, "package_id": package_id,
            "free_minutes": free_minutes, "customer_id": customer_id, "cancel": cancel,
            "void": void}


def with_terms(inputs: BillingInputs, versions=(), changes=()) -> BillingInputs:
    """`inputs` with price versions and assignment changes (the contract's dtypes)."""
    import dataclasses

    from billing_jobs.core.frames import CHANGE_COLUMNS, VERSION_COLUMNS

    versions, changes = list(versions), list(changes)
    ver = pd.DataFrame({
        "package_id": pd.Series([v["package_id"] for v in versions], dtype="str"),
        "effective_from": _dates([v["effective_from"] for v in versions]),
        **{m: pd.Series([v[m] for v in versions], dtype="int64")
           for m in ("cost", "retail", "setup_cost", "setup_retail", "free_minutes")},
    }, columns=VERSION_COLUMNS)

    def nullable(key):
        return pd.Series([pd.NA if c[key] is None else c[key] for c in changes], dtype="Int64")

    chg = pd.DataFrame({
        "change_id": pd.Series([c["change_id"] for c in changes], dtype="int64"),
        "assignment_id": pd.Series([c["assignment_id"] for c in changes], dtype="str"),
        "effective_from": _dates([c["effective_from"] for c in changes]),
        "quantity": nullable("quantity"),
        "package_id": pd.Series([c["package_id"] for c in changes], dtype="object"),
        "free_minutes": nullable("free_minutes"),
        "customer_id": pd.Series([c["customer_id"] for c in changes], dtype="object"),
        "cancel": pd.Series([c["cancel"] for c in changes], dtype="bool"),
        "void": pd.Series([c["void"] for c in changes], dtype="bool"),
    }, columns=CHANGE_COLUMNS)
    return dataclasses.replace(inputs, versions=ver, changes=chg)


# ------------------------------------------------------- terms over time: random histories

ONE_WEEK = timedelta(days=7)


@st.composite
def _calendar_family(draw):
    """(frequency, match) shared by the packages an assignment may move between."""
    freq = draw(st.sampled_from(["weekly", "monthly", "monthly"]))
    match = None
    if draw(st.booleans()):
        if freq == "weekly":
            days = draw(st.lists(st.integers(1, 7), min_size=1, max_size=2, unique=True))
        else:
            days = draw(st.lists(st.sampled_from([1, 10, 15, 28, 29, 30, 31]), min_size=1,
                                 max_size=2, unique=True))
        match = "|".join(str(d) for d in sorted(days))
    return freq, match


@st.composite
def terms_books(draw, days: int = 92):
    """(inputs, first, last): a small book (1-3 assignments, one currency, 1-3 customers,
    standard packages without minimum spend in 1-2 families of one calendar each), random
    price versions and random change histories (quantity, package of the same family,
    customer, free-minute override, cancel) over the window [first, last] of `days` nights."""
    currency = draw(st.sampled_from(CURRENCIES))
    first = draw(anchor_dates)
    last = first + timedelta(days=days - 1)
    customers = [customer(f"C{i}", currency) for i in range(1, draw(st.integers(1, 3)) + 1)]
    families, packages = [], []
    for f in range(1, draw(st.integers(1, 2)) + 1):
        freq, match = draw(_calendar_family())
        family = []
        for i in range(1, draw(st.integers(1, 3)) + 1):
            family.append(package(
                f"P{f}{i}", retail=draw(money_micros), cost=draw(money_micros),
                setup_retail=draw(st.one_of(st.just(0), money_micros)),
                setup_cost=draw(st.sampled_from([0, 0, 1_000_000])), currency=currency,
                frequency=freq, match=match,
                minimum_days=draw(st.sampled_from([0, 0, 0, 10, 45, 70])),
                prorate=draw(st.sampled_from([True, True, False]))))
        families.append(family)
        packages += family
    assignments, changes = [], []
    for i in range(1, draw(st.integers(1, 3)) + 1):
        family = draw(st.sampled_from(families))
        p = draw(st.sampled_from(family))
        start = first + timedelta(days=draw(st.integers(-20, 40)))
        end = draw(st.one_of(st.none(), st.none(),
                             st.integers(0, 90).map(lambda n: start + timedelta(days=n))))
        aid = f"A{i}"
        assignments.append(assignment(
            aid, draw(st.sampled_from(customers))["customer_id"], p["package_id"],
            quantity=draw(st.integers(1, 4)), start=start.isoformat(),
            end=None if end is None else end.isoformat(), auto_decrement=draw(st.booleans())))
        # change days: mostly on, just before and just after billing dates (and period ends)
        cal = Calendar(p["frequency"], tuple(parse_match(p["frequency_match"])), start)
        ahead = (start + timedelta(days=n) for n in range(1, (last - start).days + 2))
        near_billing = [x for x in ahead if cal.contains(x)] or [start + ONE_WEEK]
        for _ in range(draw(st.integers(1 if i == 1 else 0, 4))):
            day = draw(st.one_of(
                near(st.sampled_from(near_billing), -1, 1),
                near(st.sampled_from(near_billing), 2, 12),  # inside a period: a split
                st.integers(1, max((last - start).days + 3, 1)).map(
                    lambda n: start + timedelta(days=n))))
            if day <= start:
                day = start + timedelta(days=1)
            kind = draw(st.sampled_from(["quantity", "quantity", "package", "package",
                                         "customer", "mixed", "free_minutes", "cancel",
                                         "cancel"]))
            fields = {}
            if kind in ("quantity", "mixed"):
                fields["quantity"] = draw(st.integers(1, 5))
            if kind in ("package", "mixed"):
                fields["package_id"] = draw(st.sampled_from(family))["package_id"]
            if kind == "customer" or (kind == "mixed" and draw(st.booleans())):
                fields["customer_id"] = draw(st.sampled_from(customers))["customer_id"]
            if kind == "free_minutes":
                fields["free_minutes"] = draw(st.sampled_from([0, 30, 100]))
            if kind == "cancel":
                fields["cancel"] = True
                if p["minimum_days"] and draw(st.booleans()):  # inside the minimum term
                    day = start + timedelta(days=draw(st.integers(1, p["minimum_days"] + 3)))
            changes.append(change(0, day.isoformat(), aid, **fields))
    # versions: anywhere, or just before a change (in force on the change's day but not on
    # the first day of the period it splits)
    versions = []
    change_days = [D(c["effective_from"]) for c in changes] or [first]
    for p in packages:
        dates = draw(st.lists(st.one_of(
            st.integers(-30, days).map(lambda n: first + timedelta(days=n)),
            near(st.sampled_from(change_days), -6, 0)), max_size=2, unique=True))
        for since in dates:
            versions.append(version(
                p["package_id"], since.isoformat(), retail=draw(money_micros),
                cost=draw(money_micros), setup_retail=draw(st.one_of(st.just(0), money_micros))))
    ids = draw(st.permutations(range(1, len(changes) + 1))) if changes else []
    for c, n in zip(changes, ids):
        c["change_id"] = n
    inputs = with_terms(make_inputs(customers, packages, assignments), versions, changes)
    return inputs, first, last


