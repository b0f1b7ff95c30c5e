"""Terms over time (SPEC section 10), vectorised: price versions of packages and changes of
assignments from a date.

Two lookups answer every question the line kinds ask:

- `Terms.at(rows, day)`: the assignment's terms in force on `day` (customer, package,
  quantity, free-minute override): its *segment* holding the day;
- `Terms.priced(rows, day, price_day)`: those terms with the package's money terms in force on
  `price_day` (the latest version with effective_from <= price_day, else the package row).

Both are one `np.searchsorted` over a sorted integer key (row or package code, day).

A change row takes effect on its day D when the package in force on the first day s of the
period holding D prorates; otherwise on the first billing date on or after D (the period
holding D stands as billed). The *splits* are the days D (changes and the effective day of a
cancel) that fall strictly inside a period [s, e) of a prorating package: on D the engine
writes the change lines and cuts the period's grant (calc/changes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from billing_jobs.calc.calendar import NEVER, OPEN, Calendars, after, period_containing, to_days

_SHIFT = np.int64(1) << np.int64(25)  # days + _OFFSET fit in 25 bits (NEVER..OPEN)
_OFFSET = np.int64(1) << np.int64(24)
_MONEY = ("cost", "retail", "setup_cost", "setup_retail")


def _key(code: np.ndarray, day) -> np.ndarray:
    day = np.clip(np.asarray(day, dtype="int64"), NEVER, OPEN)
    return np.asarray(code, dtype="int64") * _SHIFT + (day + _OFFSET)


@dataclass
class Priced:
    """Terms of some book rows on a day, priced: one array per field."""

    customer_id: np.ndarray  # object
    customer_code: np.ndarray
    package_id: np.ndarray  # object
    qty: np.ndarray
    cost: np.ndarray
    retail: np.ndarray
    setup_cost: np.ndarray
    setup_retail: np.ndarray
    minutes: np.ndarray  # total free minutes per period (override, or version minutes x qty)
    prorate: np.ndarray
    destination: np.ndarray  # object


@dataclass
class Terms:
    """Segments of each book row (sorted by row, first day) and the price table."""

    seg_key: np.ndarray
    seg_customer: np.ndarray  # object
    seg_customer_code: np.ndarray
    seg_package: np.ndarray  # code into the package table
    seg_qty: np.ndarray
    seg_override: np.ndarray  # -1: no free-minute override
    price_key: np.ndarray
    price: dict  # column -> array over the price table rows
    pkg_id: np.ndarray  # object, by package code
    pkg_prorate: np.ndarray
    pkg_destination: np.ndarray  # object
    stop: np.ndarray  # per row: the first day without service (a cancel), OPEN when none
    split_row: np.ndarray  # sorted by (row, day)
    split_day: np.ndarray
    split_start: np.ndarray  # s of the period [s, e) the split day falls in
    split_end: np.ndarray  # e
    split_full: np.ndarray  # days of the uncut calendar period
    split_key: np.ndarray
    changed: bool  # any version or change at all

    def segment(self, rows: np.ndarray, day) -> np.ndarray:
        return np.searchsorted(self.seg_key, _key(rows, day), side="right") - 1

    def priced(self, rows: np.ndarray, day, price_day=None) -> Priced:
        rows = np.asarray(rows, dtype="int64")
        day = np.broadcast_to(np.asarray(day, dtype="int64"), rows.shape)
        price_day = day if price_day is None else np.broadcast_to(
            np.asarray(price_day, dtype="int64"), rows.shape)
        j = self.segment(rows, day)
        code = self.seg_package[j]
        v = np.searchsorted(self.price_key, _key(code, price_day), side="right") - 1
        qty = self.seg_qty[j]
        override = self.seg_override[j]
        minutes = np.where(override >= 0, override, self.price["free_minutes"][v] * qty)
        return Priced(self.seg_customer[j], self.seg_customer_code[j], self.pkg_id[code], qty,
                      *(self.price[c][v] for c in _MONEY), minutes.astype("int64"),
                      self.pkg_prorate[code], self.pkg_destination[code])

    def customer_codes_of(self, rows_mask: np.ndarray) -> np.ndarray:
        """The customer codes any segment of the rows in `rows_mask` holds (-1 dropped)."""
        codes = self.seg_customer_code[rows_mask[self.seg_key // _SHIFT]]
        return codes[codes >= 0]

    def pieces(self, rows: np.ndarray, ps: np.ndarray, pe: np.ndarray):
        """Periods (rows, [ps, pe)) cut at the splits strictly inside them:
        (parent position, piece start, piece end); a period without a split is one piece."""
        rows = np.asarray(rows, dtype="int64")
        lo = np.searchsorted(self.split_key, _key(rows, ps + 1), side="left")
        hi = np.searchsorted(self.split_key, _key(rows, pe), side="left")
        k = hi - lo
        counts = k + 1
        parent = np.repeat(np.arange(rows.size), counts)
        within = np.arange(parent.size) - np.repeat(np.cumsum(counts) - counts, counts)
        at = lo[parent] + within
        start = np.where(within == 0, ps[parent], self.split_day[np.maximum(at - 1, 0)]
                         if self.split_day.size else ps[parent])
        end = np.where(within == k[parent], pe[parent],
                       self.split_day[np.minimum(at, max(self.split_day.size - 1, 0))]
                       if self.split_day.size else pe[parent])
        return parent, start.astype("int64"), end.astype("int64")

    def splits_on(self, day: int) -> np.ndarray:
        """Positions in the split arrays of the splits on `day`."""
        return np.flatnonzero(self.split_day == day)


def _price_table(packages: pd.DataFrame, versions: pd.DataFrame | None):
    pkg = packages.sort_values("package_id", kind="stable").reset_index(drop=True)
    ids = pkg["package_id"].astype(str).to_numpy(dtype=object)
    base = {"code": np.arange(len(pkg), dtype="int64"),
            "day": np.full(len(pkg), NEVER, dtype="int64"),
            **{c: pkg[c].to_numpy(dtype="int64") for c in _MONEY},
            "free_minutes": pkg["free_minutes"].fillna(0).to_numpy(dtype="int64")}
    table = pd.DataFrame(base)
    if versions is not None and len(versions):
        code = pd.Index(ids).get_indexer(versions["package_id"].astype(str))
        keep = code >= 0
        v = versions[keep]
        table = pd.concat([table, pd.DataFrame({
            "code": code[keep].astype("int64"),
            "day": to_days(v["effective_from"].to_numpy()),
            **{c: v[c].to_numpy(dtype="int64") for c in _MONEY},
            "free_minutes": pd.to_numeric(v["free_minutes"]).fillna(0).to_numpy(dtype="int64"),
        })], ignore_index=True)
    table = table.sort_values(["code", "day"], kind="stable").reset_index(drop=True)
    key = _key(table["code"].to_numpy(), table["day"].to_numpy())
    price = {c: table[c].to_numpy(dtype="int64") for c in (*_MONEY, "free_minutes")}
    return (pkg, ids, key, price)


def _segments(rows: pd.DataFrame, pkg_ids: np.ndarray, customer_ids: np.ndarray, ch: pd.DataFrame,
              ch_row: np.ndarray, ch_day: np.ndarray, codes_of) -> pd.DataFrame:
    """One row per (book row, first day): the base terms from NEVER, then each change
    applied in (day, effective_from, change_id) order; NA fields carry the terms before."""
    n = len(rows)
    override = pd.to_numeric(rows["free_minutes"]).astype("Float64").fillna(-1)
    base = pd.DataFrame({
        "row": np.arange(n, dtype="int64"), "day": np.full(n, NEVER, dtype="int64"),
        "raw": np.full(n, NEVER, dtype="int64"), "order": np.full(n, -1, dtype="int64"),
        "qty": rows["quantity"].to_numpy(dtype="float64"),
        "package": pd.Index(pkg_ids).get_indexer(rows["package_id"].astype(str)).astype("float64"),
        "override": override.to_numpy(dtype="float64"),
        "customer": rows["customer_id"].astype(object).to_numpy(),
    })
    if len(ch):
        pkg = ch["package_id"].astype(object)
        pcode = np.where(pkg.isna().to_numpy(), np.nan,
                         pd.Index(pkg_ids).get_indexer(pkg.fillna("").astype(str))
                         .astype("float64"))
        pcode = np.where(pcode < 0, np.nan, pcode)  # an unknown package: unchanged
        cust = ch["customer_id"].astype(object)
        changes = pd.DataFrame({
            "row": ch_row, "day": ch_day, "raw": to_days(ch["effective_from"].to_numpy()),
            "order": ch["change_id"].to_numpy(dtype="int64"),
            "qty": pd.to_numeric(ch["quantity"]).astype("Float64").to_numpy(
                dtype="float64", na_value=np.nan),
            "package": pcode,
            "override": pd.to_numeric(ch["free_minutes"]).astype("Float64").to_numpy(
                dtype="float64", na_value=np.nan),
            "customer": cust.where(cust.notna(), None).to_numpy(),
        })
        base = pd.concat([base, changes], ignore_index=True)
        seg = base.sort_values(["row", "day", "raw", "order"], kind="stable").reset_index(
            drop=True)
        filled = seg.groupby("row", sort=False)[["qty", "package", "override", "customer"]].ffill()
        seg[["qty", "package", "override", "customer"]] = filled
        base = seg.drop_duplicates(["row", "day"], keep="last").reset_index(drop=True)
    seg = base  # without changes: one segment per row, already in row order
    seg["customer_code"] = codes_of(seg["customer"].astype(str), customer_ids)
    return seg


def build_terms(rows: pd.DataFrame, cal: Calendars, start: np.ndarray, eff_end: np.ndarray,
                prorate_stub: np.ndarray, minimum_spend: np.ndarray, packages: pd.DataFrame,
                customer_ids: np.ndarray, versions: pd.DataFrame | None,
                changes: pd.DataFrame | None, codes_of) -> Terms:
    """`rows`: the book's assignment rows (voided ones already left out); `eff_end`: each
    row's effective end before any cancel (SPEC 3, the original package's minimum term)."""
    n = len(rows)
    pkg, pkg_ids, price_key, price = _price_table(packages, versions)
    ch = changes if changes is not None else pd.DataFrame()
    if len(ch):
        ch_row = pd.Index(rows["assignment_id"].astype(str)).get_indexer(
            ch["assignment_id"].astype(str))
        ch = ch[ch_row >= 0].reset_index(drop=True)
        ch_row = ch_row[ch_row >= 0].astype("int64")
    else:
        ch_row = np.zeros(0, dtype="int64")
    raw_day = to_days(ch["effective_from"].to_numpy()) if len(ch) else np.zeros(0, "int64")
    pkg_prorate = pkg["prorate"].to_numpy(dtype=bool)

    def terms_with(seg: pd.DataFrame) -> Terms:
        return Terms(
            seg_key=_key(seg["row"].to_numpy(), seg["day"].to_numpy()),
            seg_customer=seg["customer"].to_numpy(dtype=object),
            seg_customer_code=seg["customer_code"].to_numpy(dtype="int64"),
            seg_package=seg["package"].to_numpy(dtype="float64").astype("int64"),
            seg_qty=seg["qty"].to_numpy(dtype="float64").astype("int64"),
            seg_override=seg["override"].to_numpy(dtype="float64").astype("int64"),
            price_key=price_key, price=price, pkg_id=pkg_ids, pkg_prorate=pkg_prorate,
            pkg_destination=pkg["destination"].fillna("").astype(str).to_numpy(dtype=object),
            stop=np.where(eff_end >= OPEN, OPEN, eff_end + 1).astype("int64"),
            split_row=np.zeros(0, "int64"), split_day=np.zeros(0, "int64"),
            split_start=np.zeros(0, "int64"), split_end=np.zeros(0, "int64"),
            split_full=np.zeros(0, "int64"), split_key=np.zeros(0, "int64"),
            changed=bool(len(ch)) or (versions is not None and len(versions) > 0))

    # pass 1: raw days, to read the package in force on the first day of the period holding D
    raw = terms_with(_segments(rows, pkg_ids, customer_ids, ch, ch_row, raw_day, codes_of))
    if not len(ch):
        return raw
    sub = cal.subset(ch_row)
    held = period_containing(sub, raw_day, eff_end[ch_row], prorate_stub[ch_row])
    s = np.where(held.valid, held.start, raw_day)
    prorating = raw.pkg_prorate[raw.seg_package[raw.segment(ch_row, s)]]
    # without proration a change waits for the first billing date on or after D
    day = np.where(prorating | (raw_day <= start[ch_row]), raw_day, after(sub, raw_day - 1))
    terms = terms_with(_segments(rows, pkg_ids, customer_ids, ch, ch_row, day, codes_of))

    # cancels: service stops on the earliest cancel day, never inside the minimum term
    cancel = ch["cancel"].to_numpy(dtype=bool)
    stop = terms.stop.copy()
    if cancel.any():
        first_cancel = np.full(n, OPEN, dtype="int64")
        np.minimum.at(first_cancel, ch_row[cancel], day[cancel])
        floor = eff_end_floor(start, eff_end, rows)
        stop = np.minimum(stop, np.maximum(first_cancel, floor + 1))
    terms.stop = stop

    # splits: the distinct change days (and each cancel's stop) strictly inside a period
    # of a prorating package (the package in force on the period's first day)
    cut = np.flatnonzero(stop < OPEN)
    s_row = np.concatenate([ch_row[~cancel], cut])
    s_day = np.concatenate([day[~cancel], stop[cut]])
    both = np.unique(_key(s_row, s_day))
    s_row = both // _SHIFT
    s_day = both % _SHIFT - _OFFSET
    sub = cal.subset(s_row)
    held = period_containing(sub, s_day, eff_end[s_row], prorate_stub[s_row])
    pro = terms.pkg_prorate[terms.seg_package[terms.segment(s_row, held.start)]]
    inside = (held.valid & (held.start < s_day) & (s_day < held.end) & pro
              & (s_day <= stop[s_row]))
    full = held.full  # a start stub's: the days of its calendar period
    keep = np.flatnonzero(inside)
    terms.split_row, terms.split_day = s_row[keep], s_day[keep]
    terms.split_start, terms.split_end = held.start[keep], held.end[keep]
    terms.split_full = full[keep]
    terms.split_key = _key(terms.split_row, terms.split_day)
    return terms


def eff_end_floor(start: np.ndarray, eff_end: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
    """The minimum term's last day: start + minimum_days - 1 (at least the start)."""
    min_days = rows["minimum_days"].fillna(0).to_numpy(dtype="int64")
    return start + np.maximum(min_days, 1) - 1
