"""Free minutes that reduce the bill (SPEC section 9, docs/free_minutes.md). Pure: no I/O.

Billing date D consumes the calls of the day before (x = D - 1, local calendar day) and the
*late* calls: calls of the LATE_CALL_DAYS days before x that no earlier post consumed. They
consume the grants whose period holds their day, from what each grant has left (its stored
counter), with the SPEC's precedence (calc/consumption.py). Per assignment of a package in
'credit' mode the covered charge becomes one `free_minutes_credit` line (negative, rounded
once); a 'report' package's switch already zero-rated the calls: its counters move, no line.

State comes from the database as two frames (calc/frames.py): `counters` (grant_usage)
and `consumed` (call_credits). A customer whose calls were already consumed by a post of D
(rows with consumed_on == D) is *done*: its consumption is exactly those recorded rows (a
re-run shows what the ledger holds); everyone else consumes from the state as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from billing_jobs.calc.book import Book
from billing_jobs.calc.calendar import from_days
from billing_jobs.calc.consumption import consume
from billing_jobs.core.frames import (CONSUMED_COLUMNS, CONSUMPTION_COLUMNS, COUNTER_COLUMNS,
                                      DUE_LINE_COLUMNS, GRANT_COUNTER_COLUMNS,
                                      UTILISATION_COLUMNS, empty_frame)
from billing_jobs.core.money import minor_digits_series, round_to_minor
from billing_jobs.core.vocab import GRANT_KEY, LineKind
from billing_jobs.calc.grant_periods import grant_periods, grant_pieces
from billing_jobs.calc.grants import overlapped_by_granted

#: A call record that arrives late is still consumed when its day is at most this many days
#: before the day the post covers (D - 1); older ones are left to a manual `adjust`.
LATE_CALL_DAYS = 7
CREDIT_MODE = "credit"


@dataclass
class FreeMinutes:
    credit_lines: pd.DataFrame  # DUE_LINE_COLUMNS, kind free_minutes_credit
    consumption: pd.DataFrame  # CONSUMPTION_COLUMNS
    grant_counters: pd.DataFrame  # GRANT_COUNTER_COLUMNS
    utilisation: pd.DataFrame  # UTILISATION_COLUMNS: the grants holding D - 1
    #: (call_id, customer_id) -> covered micros of credit-mode grants, all dates. Keyed by the
    #: customer too (#28 item 3): a call re-imported under another customer is not netted with
    #: the credit its first customer got, so a nightly run and `run --customer` agree.
    covered_by_call: pd.Series

    def covered_of(self, call_ids, customer_ids) -> np.ndarray:
        """Covered micros of each (call, customer) pair (0 where none)."""
        return covered_of(self.covered_by_call, call_ids, customer_ids)


def _day_numbers(s: pd.Series) -> np.ndarray:
    d = pd.to_datetime(s).to_numpy().astype("datetime64[D]")
    return d.astype("int64")


def _empty(run_day: int) -> FreeMinutes:
    return FreeMinutes(empty_frame(DUE_LINE_COLUMNS), empty_frame(CONSUMPTION_COLUMNS),
                       empty_frame(GRANT_COUNTER_COLUMNS), empty_frame(UTILISATION_COLUMNS),
                       _empty_covered())


def _credit_mode(book: Book) -> np.ndarray:
    if "free_minutes_mode" not in book.rows.columns:
        return np.ones(len(book), dtype=bool)
    mode = book.rows["free_minutes_mode"].astype(object).where(
        book.rows["free_minutes_mode"].notna(), "")
    return mode.astype(str).str.strip().str.lower().isin(["", CREDIT_MODE]).to_numpy()


def _granted_calendar(grants: pd.DataFrame, granted: pd.DataFrame | None,
                      rows: pd.DataFrame) -> pd.DataFrame:
    """The grants calls consume: the current calendar's, except where a grant the database
    holds live for the assignment under another period_start overlaps one (a moved start):
    there the stored grant keeps serving its own period and the new one is held (#17 item 2,
    calc/grants.py); no day's minutes are given twice."""
    if granted is None or not len(granted) or not len(grants):
        return grants
    hit = overlapped_by_granted(grants, granted)
    if not len(hit):
        return grants
    keep = np.ones(len(grants), dtype=bool)
    keep[hit["_pos"].to_numpy()] = False
    moved = set(grants["assignment_id"].astype(str).to_numpy()[hit["_pos"].to_numpy()])
    have = set(zip(grants["assignment_id"].astype(str),
                   pd.to_datetime(grants["period_start"])))
    a_row = pd.Series(np.arange(len(rows)), index=rows["assignment_id"].astype(str).to_numpy())
    st = granted[granted["assignment_id"].astype(str).isin(moved)]
    st = st[[(a, p) not in have for a, p in zip(st["assignment_id"].astype(str),
                                                pd.to_datetime(st["period_start"]))]]
    st = st[st["assignment_id"].astype(str).isin(a_row.index)]
    extra = pd.DataFrame({
        "_row": a_row.reindex(st["assignment_id"].astype(str)).to_numpy(dtype="int64"),
        "customer_id": st["customer_id"].to_numpy(dtype=object),
        "assignment_id": st["assignment_id"].to_numpy(dtype=object),
        "period_start": pd.to_datetime(st["period_start"]).to_numpy().astype("datetime64[s]"),
        "period_end": pd.to_datetime(st["period_end"]).to_numpy().astype("datetime64[s]"),
        "destination": st["destination"].fillna("").to_numpy(dtype=object),
        "seconds": st["seconds"].to_numpy(dtype="int64"),
    })
    out = grants[keep]
    if len(extra):
        extra = extra.astype({c: out[c].dtype for c in extra.columns if c in out.columns})
        out = pd.concat([out, extra], ignore_index=True)
    return out.reset_index(drop=True)


def free_minutes_on(book: Book, run_day: int, usage: pd.DataFrame, call_day: np.ndarray,
                    counters: pd.DataFrame, consumed: pd.DataFrame,
                    granted: pd.DataFrame | None = None) -> FreeMinutes:
    """What billing date `run_day` consumes and credits (see the module docstring).
    `granted`: the grants the database holds live (calc.frames.GRANTED_COLUMNS)."""
    fm = np.flatnonzero(book.free_minutes_type)
    if fm.size == 0:
        return _empty(run_day)
    x = run_day - 1
    credit_mode = _credit_mode(book)
    grants = _grants_of_window(book, fm, x - LATE_CALL_DAYS, run_day, granted)
    gkey = _grant_key(grants)
    own = (_day_numbers(consumed["consumed_on"]) == run_day) if len(consumed) else \
        np.zeros(0, dtype=bool)
    own_rows = consumed[own]  # what a post of this date already recorded
    grants = _with_use_before(grants, gkey, counters, own_rows)
    if "_cut" in grants.columns:  # a cut grant never gives less than it already gave
        cut = grants["_cut"].fillna(False).to_numpy(dtype=bool)
        grants["seconds"] = np.where(cut, np.maximum(grants["seconds"].to_numpy("int64"),
                                                     grants["seconds_used"].to_numpy("int64")),
                                     grants["seconds"].to_numpy("int64"))
        grants = grants.drop(columns="_cut")
    a_row = pd.Series(np.arange(len(book)), index=book.rows["assignment_id"].astype(str).to_numpy())
    new = _new_consumption(grants, own_rows, consumed, usage, call_day, x)
    if len(new):  # report-only packages: counters move, nothing is credited
        credit = credit_mode[a_row.reindex(new["assignment_id"].astype(str)).to_numpy()]
        new.loc[~credit, "covered"] = 0
    today = _consumption_of_date(own_rows, new, run_day)
    counters_out = _counters_after(grants, gkey, today)
    lines = _credit_lines(book, run_day, today, a_row, credit_mode)
    return FreeMinutes(lines, today, counters_out, _utilisation(counters_out, x),
                       _covered_by_call(today, consumed[~own]))


_KEY = list(GRANT_KEY)


def _grants_of_window(book: Book, fm: np.ndarray, lo: int, run_day: int,
                      granted: pd.DataFrame | None) -> pd.DataFrame:
    """Every grant period holding a day of [lo, run_day - 1], on the stored grants' calendar."""
    g_a, g_start, g_end = grant_periods(book, fm, np.full(fm.size, lo, dtype="int64"), run_day)
    g_a, g_start, g_end, seconds, cut, terms = grant_pieces(book, g_a, g_start, g_end, run_day)
    rows = book.rows
    grants = pd.DataFrame({
        "_row": g_a,
        "customer_id": terms.customer_id,
        "assignment_id": rows["assignment_id"].to_numpy(dtype=object)[g_a],
        "period_start": from_days(g_start),
        "period_end": from_days(g_end),
        "destination": terms.destination,
        "seconds": seconds,
        "_cut": cut,
    })
    return _granted_calendar(grants, granted, rows)


def _grant_key(grants: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([grants["assignment_id"],
                                      pd.to_datetime(grants["period_start"])], names=_KEY)


def _sums_by_grant(frame: pd.DataFrame, gkey: pd.MultiIndex, columns: list[str]
                   ) -> list[np.ndarray]:
    """Per grant of `gkey`, the sums of `columns` over the rows of `frame` (0 where none)."""
    by_grant = (frame.assign(period_start=pd.to_datetime(frame["period_start"]))
                .groupby(_KEY, sort=False)[columns].sum())
    return [by_grant[c].reindex(gkey).fillna(0).to_numpy(dtype="int64") for c in columns]


def _with_use_before(grants: pd.DataFrame, gkey: pd.MultiIndex, counters: pd.DataFrame,
                     own_rows: pd.DataFrame) -> pd.DataFrame:
    """Each grant's seconds used and amount credited before this date: the stored counters
    less what a post of this date already recorded."""
    c = counters.assign(period_start=pd.to_datetime(counters["period_start"]))
    c = c.set_index(_KEY)[["seconds_used", "credited"]] if len(c) else pd.DataFrame(
        {"seconds_used": pd.Series(dtype="int64"), "credited": pd.Series(dtype="int64")},
        index=pd.MultiIndex.from_arrays([[], pd.to_datetime([])], names=_KEY))
    stored_used = c["seconds_used"].reindex(gkey).fillna(0).to_numpy(dtype="int64")
    stored_credited = c["credited"].reindex(gkey).fillna(0).to_numpy(dtype="int64")
    own_used, own_cov = _sums_by_grant(own_rows, gkey, ["seconds", "covered"])
    return grants.assign(seconds_used=stored_used - own_used,
                         credited_before=stored_credited - own_cov)


def _new_consumption(grants: pd.DataFrame, own_rows: pd.DataFrame, consumed: pd.DataFrame,
                     usage: pd.DataFrame, call_day: np.ndarray, x: int) -> pd.DataFrame:
    """The calls of [x - LATE_CALL_DAYS, x] no post consumed, of the customers this date has
    not consumed yet, against what their grants have left (calc/consumption.py)."""
    # membership tests against Series, not Python sets (hashed once, vectorised: a set of
    # 1.4M recorded call ids cost 8 s at 1M assignments)
    done = own_rows["customer_id"].astype(str)
    open_grants = grants[~grants["customer_id"].astype(str).isin(done).to_numpy()
                         ].reset_index(drop=True)
    if not (len(open_grants) and len(usage)):
        return empty_frame(CONSUMPTION_COLUMNS)
    wanted = open_grants["customer_id"].astype(str).drop_duplicates()
    sel = ((call_day >= x - LATE_CALL_DAYS) & (call_day <= x)
           & usage["customer_id"].astype(str).isin(wanted).to_numpy())
    if len(consumed) and sel.any():  # only the calls of the window are looked up
        window = np.flatnonzero(sel)
        # a call counts as consumed for the customer it was consumed under (#28 item 3): a
        # run for chosen customers reads only their own call_credits, so the nightly run
        # must not know more
        done_pairs = pd.MultiIndex.from_arrays(
            [consumed["call_id"].astype(str), consumed["customer_id"].astype(str)]
        ).drop_duplicates()
        taken = pd.MultiIndex.from_arrays(
            [usage["call_id"].iloc[window].astype(str),
             usage["customer_id"].iloc[window].astype(str)]).isin(done_pairs)
        sel[window[taken]] = False
    calls = usage[sel].assign(day=call_day[sel])
    parts = consume(open_grants, calls)
    if not len(parts):
        return empty_frame(CONSUMPTION_COLUMNS)
    rows = parts["call_row"].to_numpy(dtype="int64")  # each part's call, by position
    ids = parts["call_id"].astype(str)
    return pd.DataFrame({
        "run_date": from_days(np.full(len(parts), x + 1, dtype="int64")),
        "call_id": ids.to_numpy(dtype=object),
        "customer_id": parts["customer_id"].to_numpy(dtype=object),
        "assignment_id": parts["assignment_id"].to_numpy(dtype=object),
        "period_start": pd.to_datetime(parts["period_start"]).to_numpy().astype("datetime64[s]"),
        "start_time": calls["start_time"].array.take(rows),  # no object Timestamps
        "seconds": parts["seconds"].to_numpy(dtype="int64"),
        "covered": parts["covered"].to_numpy(dtype="int64"),
        "late": call_day[sel][rows] < x,
    }, columns=CONSUMPTION_COLUMNS)


def _consumption_of_date(own_rows: pd.DataFrame, new: pd.DataFrame, run_day: int
                         ) -> pd.DataFrame:
    """The date's consumption: what its post already recorded, plus what it consumes now."""
    if len(own_rows):
        mine = own_rows.assign(run_date=from_days(np.full(len(own_rows), run_day,
                                                          dtype="int64")))
        mine = mine.assign(period_start=pd.to_datetime(mine["period_start"]).to_numpy()
                           .astype("datetime64[s]"))[CONSUMPTION_COLUMNS]
        today = mine if not len(new) else pd.concat([mine, new], ignore_index=True)
    else:  # consume's order already: customer, assignment, call
        return new.reset_index(drop=True)
    return today.sort_values(["customer_id", "assignment_id", "call_id"], kind="stable"
                             ).reset_index(drop=True)


def _counters_after(grants: pd.DataFrame, gkey: pd.MultiIndex, today: pd.DataFrame
                    ) -> pd.DataFrame:
    """Per grant: granted, used and credited before this date and after it."""
    used_now, cov_now = _sums_by_grant(today, gkey, ["seconds", "covered"])
    return pd.DataFrame({
        "customer_id": grants["customer_id"], "assignment_id": grants["assignment_id"],
        "period_start": grants["period_start"], "period_end": grants["period_end"],
        "seconds_granted": grants["seconds"].astype("int64"),
        "seconds_used_before": grants["seconds_used"].astype("int64"),
        "seconds_used": (grants["seconds_used"] + used_now).astype("int64"),
        "credited_before": grants["credited_before"].astype("int64"),
        "credited": (grants["credited_before"] + cov_now).astype("int64"),
    }, columns=GRANT_COUNTER_COLUMNS)


def _utilisation(counters_out: pd.DataFrame, x: int) -> pd.DataFrame:
    """The grants whose period holds day x, as the report shows them."""
    held = (_day_numbers(counters_out["period_start"]) <= x) & (
        pd.to_datetime(counters_out["period_end"]).isna().to_numpy()
        | (_day_numbers(counters_out["period_end"].fillna(pd.Timestamp("2262-01-01"))) > x))
    util = counters_out[held][["customer_id", "assignment_id", "period_start", "period_end",
                               "seconds_granted", "seconds_used", "credited"]]
    return util.sort_values(["customer_id", "assignment_id"], kind="stable"
                            ).reset_index(drop=True)


def _empty_covered() -> pd.Series:
    return pd.Series([], dtype="int64", index=pd.MultiIndex.from_arrays(
        [pd.Index([], dtype=object), pd.Index([], dtype=object)],
        names=["call_id", "customer_id"]))


def _covered_by_call(today: pd.DataFrame, earlier: pd.DataFrame) -> pd.Series:
    """Covered charge per (call, customer) over every date (minimum spend is net of
    credits)."""
    cols = ["call_id", "customer_id", "covered"]
    parts = [today[cols]]
    if len(earlier):
        parts.append(earlier[cols])
    allc = pd.concat([p for p in parts if len(p)] or [parts[0]], ignore_index=True)
    if not len(allc):
        return _empty_covered()
    return allc.groupby([allc["call_id"].astype(str).rename("call_id"),
                         allc["customer_id"].astype(str).rename("customer_id")]
                        )["covered"].sum().astype("int64")


def covered_of(covered: pd.Series, call_ids, customer_ids) -> np.ndarray:
    """Covered micros of each (call_id, customer_id) pair in `covered` (0 where none)."""
    n = len(call_ids)
    if not len(covered) or not n:
        return np.zeros(n, dtype="int64")
    keys = pd.MultiIndex.from_arrays([pd.Index(call_ids, dtype=object).astype(str),
                                      pd.Index(customer_ids, dtype=object).astype(str)])
    at = covered.index.get_indexer(keys)
    return np.where(at >= 0, covered.to_numpy(dtype="int64")[np.maximum(at, 0)], 0)


def _credit_lines(book: Book, run_day: int, today: pd.DataFrame, a_row: pd.Series,
                  credit_mode: np.ndarray) -> pd.DataFrame:
    """One line per credit-mode assignment with consumption today: amount = -(sum of its
    covered micros) rounded once, half up, to the currency's minor unit."""
    if not len(today):
        return empty_frame(DUE_LINE_COLUMNS)
    per = today.groupby("assignment_id", sort=True).agg(covered=("covered", "sum")).reset_index()
    r = a_row.reindex(per["assignment_id"].astype(str)).to_numpy()
    per = per[credit_mode[r]].reset_index(drop=True)
    r = r[credit_mode[r]]
    if not len(per):
        return empty_frame(DUE_LINE_COLUMNS)
    rows = book.rows.iloc[r]
    digits = minor_digits_series(rows["currency"]).to_numpy()
    amount = -round_to_minor(per["covered"].to_numpy("int64"), digits)
    n = len(per)
    return pd.DataFrame({
        "run_date": from_days(np.full(n, run_day, dtype="int64")),
        "customer_id": rows["customer_id"].to_numpy(dtype=object),
        "assignment_id": rows["assignment_id"].to_numpy(dtype=object),
        "package_id": rows["package_id"].to_numpy(dtype=object),
        "kind": LineKind.FREE_MINUTES_CREDIT,
        "period_start": from_days(np.full(n, run_day - 1, dtype="int64")),
        "period_end": from_days(np.full(n, run_day, dtype="int64")),
        "quantity": np.ones(n, dtype="int64"),
        "unit_price": (-amount).astype("int64"),
        "amount": amount.astype("int64"),
        "cost": np.zeros(n, dtype="int64"),
        "currency": rows["currency"].to_numpy(dtype=object),
        "auto_decrement": rows["auto_decrement"].to_numpy(dtype=bool),
    }, columns=DUE_LINE_COLUMNS)


def advance_state(counters: pd.DataFrame, consumed: pd.DataFrame, consumption: pd.DataFrame,
                  grant_counters: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The state after a billing date's result: its grant counters replace the stored ones,
    its consumption joins the recorded calls (consumed_on = its run date). A backfill carries
    the state from night to night this way, simulated or posted alike."""
    new_c = grant_counters[COUNTER_COLUMNS] if len(grant_counters) else None
    if new_c is not None:
        both = pd.concat([counters[COUNTER_COLUMNS], new_c], ignore_index=True)
        both["period_start"] = pd.to_datetime(both["period_start"]).astype("datetime64[s]")
        counters = both.drop_duplicates(_KEY, keep="last").reset_index(drop=True)
    if len(consumption):
        add = consumption.rename(columns={"run_date": "consumed_on"})[CONSUMED_COLUMNS]
        both = pd.concat([consumed[CONSUMED_COLUMNS], add], ignore_index=True) \
            if len(consumed) else add.reset_index(drop=True)
        both["period_start"] = pd.to_datetime(both["period_start"]).astype("datetime64[s]")
        consumed = both.drop_duplicates(["call_id", *_KEY], keep="first").reset_index(drop=True)
    return counters, consumed
