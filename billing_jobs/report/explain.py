"""Names and explanations for the report: who each line is for, what the package is, and why
the amount is what it is. Vectorised over the (at most TABLE_ROWS) rows the page embeds, and
over customers for the balance table; nothing here loops per line in Python.

Context (all optional, from the run's inputs and the database):
  customers: customer_id, name, balance_after (int micros, after the run)
  packages:  package_id, name, description, frequency
  versions, splits: terms over time (SPEC 10), see `terms_context`
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.core.money import format_minor, format_minor_series, minor_digits_series
from billing_jobs.core.vocab import LineKind, LineStatus
from billing_jobs.report.formatting import format_micros_series

FREQ_OFFSETS = {"daily": pd.DateOffset(days=1), "weekly": pd.DateOffset(weeks=1),
                "monthly": pd.DateOffset(months=1), "yearly": pd.DateOffset(years=1)}


def _s(values) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object)).fillna("").astype(str)


def names(frame: pd.DataFrame, context: dict | None, key: str, table: str,
          columns: tuple[str, ...]) -> pd.DataFrame:
    """frame[key] looked up in context[table] -> the columns (text, '' when unknown)."""
    ref = (context or {}).get(table)
    out = pd.DataFrame(index=range(len(frame)))
    if ref is None or not len(ref) or not len(frame):
        for c in columns:
            out[c] = pd.Series([""] * len(frame), dtype=object)
        return out
    ref = ref.drop_duplicates(key).set_index(key)
    ids = frame[key].astype(str).to_numpy()
    for c in columns:
        col = ref[c] if c in ref.columns else pd.Series(dtype=object)
        out[c] = _s(col.reindex(ids).to_numpy())
    return out


def terms_context(inputs) -> dict:
    """What the explanations of terms over time need from a run's inputs (SPEC 10, #27):

    versions: package_id, effective_from - the price versions (a line priced by one says
              "price from <date>");
    splits:   one row per day D that splits a period [s, e) of an assignment (the engine's own
              splits, `calc.terms`): assignment_id, day, start (s), full (days of the uncut
              period), and the terms before and from D (customer, package, quantity) and
              whether D is a cancel.

    Empty dict when the inputs have neither. The book is built for the changed assignments
    only (one vectorised build, as the run's)."""
    out: dict = {}
    if inputs is None:
        return out
    versions = getattr(inputs, "versions", None)
    if versions is not None and len(versions):
        out["versions"] = versions[["package_id", "effective_from"]].copy()
    changes = getattr(inputs, "changes", None)
    if changes is None or not len(changes):
        return out
    from billing_jobs.calc.book import build_book  # the engine's splits, not a second rule
    from billing_jobs.calc.calendar import from_days

    ids = changes["assignment_id"].astype(str)
    mine = inputs.assignments[inputs.assignments["assignment_id"].astype(str).isin(set(ids))]
    if not len(mine):
        return out
    book = build_book(mine, inputs.packages, inputs.customers, versions,
                      changes[ids.isin(set(mine["assignment_id"].astype(str)))])
    t = book.terms
    if not t.split_row.size:
        return out
    idx, day, s = t.split_row, t.split_day, t.split_start
    old, new = t.priced(idx, day - 1, s), t.priced(idx, day, s)
    out["splits"] = pd.DataFrame({
        "assignment_id": book.rows["assignment_id"].astype(str).to_numpy()[idx],
        "day": from_days(day), "start": from_days(s),
        "full": np.asarray(t.split_full, dtype="int64"),
        "old_customer": old.customer_id, "new_customer": new.customer_id,
        "old_package": old.package_id, "new_package": new.package_id,
        "old_qty": np.asarray(old.qty, dtype="int64"),
        "new_qty": np.asarray(new.qty, dtype="int64"),
        "cancelled": day >= np.asarray(book.stop)[idx],
    })
    return out


def _unit_text(unit: pd.Series, cur: pd.Series) -> pd.Series:
    """A unit price in the currency's minor unit ("4.00") when it has no finer digits, else
    every digit it has ("333.5" JPY): never rounded away."""
    exact = pd.Series(format_micros_series(unit))
    minor = format_minor_series(unit, cur)
    step = 10 ** (6 - minor_digits_series(cur.reset_index(drop=True)))
    whole = (unit.reset_index(drop=True) % step) == 0
    return minor.reset_index(drop=True).where(whole, exact)


def _version_from(lines: pd.DataFrame, day: pd.Series, context: dict | None) -> pd.Series:
    """The effective_from (ISO text, '' for none) of the price version in force on `day` for
    each line's package: the version that priced it (one merge_asof)."""
    vers = (context or {}).get("versions")
    out = pd.Series([""] * len(lines), dtype=object)
    if vers is None or not len(vers) or not len(lines):
        return out
    left = pd.DataFrame({"package_id": lines["package_id"].astype(str).to_numpy(),
                         "day": pd.to_datetime(day).astype("datetime64[s]").to_numpy(),
                         "_pos": np.arange(len(lines))})
    left = left[left["day"].notna()].sort_values("day", kind="stable")
    right = pd.DataFrame({"package_id": vers["package_id"].astype(str).to_numpy(),
                          "day": pd.to_datetime(vers["effective_from"]).astype(
                              "datetime64[s]").to_numpy()})
    right = right.assign(version=right["day"]).sort_values("day", kind="stable")
    hit = pd.merge_asof(left, right, on="day", by="package_id", direction="backward")
    found = hit["version"].notna()
    out.iloc[hit.loc[found, "_pos"].to_numpy()] = (
        pd.to_datetime(hit.loc[found, "version"]).dt.strftime("%Y-%m-%d").to_numpy())
    return out


def _terms_text(qty: pd.Series, package_ids: pd.Series, context: dict | None) -> pd.Series:
    """"5 × Seat (P1)" (the package's name when known, its id always)."""
    frame = pd.DataFrame({"package_id": package_ids.astype(str).to_numpy()})
    name = names(frame, context, "package_id", "packages", ("name",))["name"]
    ids = frame["package_id"]
    label = (name + " (" + ids + ")").where(name != "", ids)
    return qty.astype("int64").astype(str).reset_index(drop=True) + " × " + label


def _customer_text(ids: pd.Series, context: dict | None) -> pd.Series:
    frame = pd.DataFrame({"customer_id": ids.astype(str).to_numpy()})
    name = names(frame, context, "customer_id", "customers", ("name",))["name"]
    return (frame["customer_id"] + " (" + name + ")").where(name != "", frame["customer_id"])


def explain_lines(lines: pd.DataFrame, context: dict | None) -> np.ndarray:
    """One sentence per line saying how its amount follows from price, quantity and days; a
    line priced by a price version says from when that price holds ("price from 2026-12-01"),
    a change line the days of the split period it covers, at which terms, and what changed
    (both packages, both customers), e.g. "8 × Seat (P1) from 2026-11-10: 21 of 30 days ×
    4.00 × 8 = 22.40" (context: see `terms_context`)."""
    n = len(lines)
    if n == 0:
        return np.array([], dtype=object)
    lines = lines.reset_index(drop=True)
    cur = lines["currency"].astype(str)
    qty = lines["quantity"].astype("int64")
    unit = lines["unit_price"].astype("int64")
    amount = lines["amount"].astype("int64")
    gross = unit * qty
    money = lambda m: format_minor_series(pd.Series(m, dtype="int64"), cur)  # noqa: E731
    plain = lambda m: pd.Series(format_micros_series(pd.Series(m, dtype="int64")))  # noqa: E731
    unit_t, qty_t, gross_t, amount_t = _unit_text(unit, cur), qty.astype(str), plain(gross), \
        money(amount)
    start = pd.to_datetime(lines["period_start"])
    end = pd.to_datetime(lines["period_end"])
    start_t = start.dt.strftime("%Y-%m-%d").fillna("")
    end_t = end.dt.strftime("%Y-%m-%d").fillna("open")
    kind = lines["kind"].astype(str)

    # the days of the full period a cut line's period belongs to (end - one period)
    stub_days = (end - start).dt.days
    freq = names(lines, context, "package_id", "packages", ("frequency",))["frequency"]
    full_start = pd.Series(pd.NaT, index=lines.index, dtype="datetime64[s]")
    for f, off in FREQ_OFFSETS.items():  # one vectorised shift per frequency (four at most)
        sel = (freq == f) & end.notna()
        if sel.any():
            full_start[sel] = (end[sel] - off).astype("datetime64[s]")
    full_days = (end - full_start).dt.days
    has_full = full_days.notna() & (full_days > 0)
    full_t = full_days.astype("Int64").astype(str).where(has_full, "?")
    days_t = stub_days.astype("Int64").astype(str)

    # split periods (SPEC 10): the change line's split, from the engine's splits
    change = kind.isin([LineKind.CHANGE_CREDIT, LineKind.CHANGE_CHARGE])
    split = _splits_of(lines, context)
    price_day = start.where(~(change & split["start"].notna()), split["start"])
    version = _version_from(lines, price_day, context)
    priced_by = (", price from " + version).where(version != "", "")

    rec = ("recurring" + priced_by + ": " + unit_t + " × " + qty_t + " = " + amount_t
           + " for " + start_t + " to " + end_t + " (end exclusive)")
    # a period cut by the end date (trailing proration): kept days of the uncut period
    cut = (kind == LineKind.RECURRING) & (amount != gross) & end.notna() & has_full
    rec = rec.where(~cut, "recurring" + priced_by + ": " + unit_t + " × " + qty_t + " × "
                    + days_t + " of " + full_t + " days = " + amount_t + " for " + start_t
                    + " to " + end_t + " (end exclusive, cut by the end date)")
    text = rec
    text = text.where(kind != LineKind.SETUP, "setup fee" + priced_by + ": " + unit_t + " × "
                      + qty_t + " = " + amount_t)

    # prorated: the stub's days out of its full period's days (the period the stub cuts)
    pr = ("prorated" + priced_by + ": " + gross_t + " (" + unit_t + " × " + qty_t + ") × "
          + days_t + " stub days / " + full_t
          + " days of the full period = " + amount_t + "; stub " + start_t + " to " + end_t
          + " (end exclusive)")
    text = text.where(kind != LineKind.PRORATED, pr)

    # minimum spend: commitment, spend, shortfall (the amount); spend = commitment - shortfall
    spend_t = plain(gross - amount)
    ms = ("minimum spend" + priced_by + ": commitment " + gross_t + " (" + unit_t + " × "
          + qty_t + "), calls charged " + spend_t + " from " + start_t + " to " + end_t
          + " (end exclusive), shortfall charged " + amount_t)
    ms = ms.where(amount != 0, "minimum spend" + priced_by + ": commitment " + gross_t
                  + " met by calls charged " + start_t + " to " + end_t
                  + " (end exclusive): nothing to charge")
    text = text.where(kind != LineKind.MINIMUM_SPEND, ms)

    credit = ("free-minute credit: calls from " + start_t + " to " + end_t
              + " (end exclusive) covered by this assignment's free minutes, credited "
              + amount_t)
    if "covered_seconds" in lines.columns:
        mins = (lines["covered_seconds"].fillna(0).astype("int64") / 60).round(1).astype(str)
        credit = credit + " (" + mins + " minutes covered)"
    text = text.where(kind != LineKind.FREE_MINUTES_CREDIT, credit)

    if change.any():
        text = text.where(~change, _change_text(lines, split, context, unit_t, qty_t, amount_t,
                                                start_t, days_t, full_t, priced_by))
    return text.to_numpy(dtype=object)


def _splits_of(lines: pd.DataFrame, context: dict | None) -> pd.DataFrame:
    """Per line, the split of its assignment on its period_start (NaN/None where none)."""
    cols = ["start", "full", "old_customer", "new_customer", "old_package", "new_package",
            "old_qty", "new_qty", "cancelled"]
    splits = (context or {}).get("splits")
    key = pd.DataFrame({"assignment_id": lines["assignment_id"].astype(str).to_numpy(),
                        "day": pd.to_datetime(lines["period_start"]).astype(
                            "datetime64[s]").to_numpy()})
    if splits is None or not len(splits):
        return pd.DataFrame({c: pd.Series([None] * len(lines), dtype=object) for c in cols}
                            ).assign(start=pd.Series(pd.NaT, index=range(len(lines)),
                                                     dtype="datetime64[s]"))
    ref = splits.assign(day=pd.to_datetime(splits["day"]).astype("datetime64[s]"),
                        start=pd.to_datetime(splits["start"]).astype("datetime64[s]"))
    ref = ref.drop_duplicates(["assignment_id", "day"])
    return key.merge(ref, on=["assignment_id", "day"], how="left", validate="many_to_one")[cols]


def _change_text(lines, split, context, unit_t, qty_t, amount_t, start_t, days_t, full_t,
                 priced_by) -> pd.Series:
    """change_credit: "5 × Seat (P1) until 2026-11-10 given back: 21 of 30 days × 4.00 × 5 =
    -14.00", change_charge: "8 × Seat (P1) from 2026-11-10: 21 of 30 days × 4.00 × 8 = 22.40";
    then what changed: a cancel, the other package and quantity, a transfer's two customers."""
    kind = lines["kind"].astype(str)
    known = split["full"].notna()
    full = split["full"].astype("Int64").astype(str).where(known, full_t)
    mine = _terms_text(lines["quantity"], lines["package_id"], context)
    days = (days_t + " of " + full + " days × " + unit_t + " × " + qty_t + " = " + amount_t)
    is_credit = kind == LineKind.CHANGE_CREDIT
    head = (("change credit" + priced_by + ": " + mine + " until " + start_t + " given back: ")
            .where(is_credit, "change charge" + priced_by + ": " + mine + " from " + start_t
                   + ": "))
    text = head + days
    if not known.any():
        return text
    fill = lambda c, v: split[c].where(known, v)  # noqa: E731
    old_q, new_q = fill("old_qty", 0).astype("int64"), fill("new_qty", 0).astype("int64")
    old_p, new_p = fill("old_package", "").astype(str), fill("new_package", "").astype(str)
    old_c, new_c = fill("old_customer", "").astype(str), fill("new_customer", "").astype(str)
    cancelled = fill("cancelled", False).astype(bool)
    terms_moved = known & ~cancelled & ((old_q != new_q) | (old_p != new_p))
    other = pd.Series("", index=text.index, dtype=object)
    other = other.where(~(terms_moved & is_credit),
                        "; replaced from " + start_t + " by " + _terms_text(new_q, new_p,
                                                                              context))
    other = other.where(~(terms_moved & ~is_credit),
                        "; replaces " + _terms_text(old_q, old_p, context))
    other = other.where(~(known & cancelled), "; cancelled from " + start_t)
    moved = known & ~cancelled & (old_c != new_c)
    other = other + ("; transferred from customer " + _customer_text(old_c, context) + " to "
                     + _customer_text(new_c, context)).where(moved, "")
    return text + other


def balances(lines: pd.DataFrame, context: dict | None) -> pd.DataFrame:
    """Per customer touched by posted lines: balance before and after (text, minor units).

    after = the balance in the database after the run; before = after + the amounts this run
    posted with auto_decrement (status `posted`; credits are negative amounts).
    """
    cols = ["customer_id", "name", "currency", "posted_lines", "posted_amount",
            "balance_before", "balance_after"]
    ctx = (context or {}).get("customers")
    posted = lines[lines["status"].astype(str) == LineStatus.POSTED]
    if ctx is None or "balance_after" not in ctx.columns or not len(posted):
        return pd.DataFrame(columns=cols)
    m = posted["amount"].to_numpy(dtype="int64")
    hi, lo = np.divmod(m, 10**9)
    g = (pd.DataFrame({"customer_id": posted["customer_id"].astype(str).to_numpy(),
                       "currency": posted["currency"].astype(str).to_numpy(), "hi": hi, "lo": lo})
         .groupby(["customer_id", "currency"], sort=True)
         .agg(posted_lines=("hi", "size"), hi=("hi", "sum"), lo=("lo", "sum")).reset_index())
    total = g["hi"].astype(object) * 10**9 + g["lo"].astype(object)
    ref = ctx.drop_duplicates("customer_id").set_index("customer_id")
    after = ref["balance_after"].reindex(g["customer_id"]).to_numpy()
    known = pd.notna(after)
    after_obj = np.where(known, after, 0).astype(object)
    before = np.array([int(a) + int(t) for a, t in zip(after_obj, total)], dtype=object)  # per customer
    cur = g["currency"]

    def fmt(values) -> pd.Series:
        # Python ints may pass int64 only for absurd balances; format exactly then
        return pd.Series([format_minor(int(v), c) for v, c in zip(values, cur)], dtype=object)

    out = pd.DataFrame({
        "customer_id": g["customer_id"],
        "name": _s(ref["name"].reindex(g["customer_id"]).to_numpy()) if "name" in ref.columns
        else "",
        "currency": cur,
        "posted_lines": g["posted_lines"].astype("int64"),
        "posted_amount": fmt(total),
        "balance_before": fmt(before).where(known, ""),
        "balance_after": fmt(after_obj).where(known, ""),
    }, columns=cols)
    return out
