"""The posting gate (SPEC section 6): computed lines must be postable, or nothing is posted.

`gate(result, inputs)` runs Great Expectations suites over the computed due lines, the
free-minute grants and per-customer totals, and raises `GateError` naming every failed
expectation with the first offending keys and their count. It returns None when all pass.

Checks:
- due lines: keys present; kind in the allowed set; amount and cost whole micros, >= 0 and
  <= 1e12 units; amount and cost multiples of the currency's minor unit; posting key
  (assignment_id, kind, period_start) unique; currency equals the customer's currency; the
  line's customer is its assignment's customer; period_start inside the assignment's
  service window [start_date, effective_end] (effective_end = max(end_date,
  start_date + minimum_days - 1), open when there is no end date); a minimum_spend amount
  at most its commitment, retail x quantity (the largest its assignment's terms hold);
- grants: keys present; grant key (assignment_id, period_start) unique; seconds >= 0;
  inside the service window;
- totals: per (customer, currency) the total of the line amounts equals the sum of the
  per-kind subtotals, added up exactly (Python integers), so an int64 overflow or a lost
  line cannot pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing_jobs.checks import _coerce as co
from billing_jobs.checks.evaluator import evaluate
from billing_jobs.checks.rules import Rule
from billing_jobs.core.money import MAX_MICROS, MICRO_DIGITS, minor_digits_series
from billing_jobs.core.errors import GateError
from billing_jobs.core.vocab import CREDIT_KINDS, DUE_KINDS, GRANT_KEY, POSTING_KEY, LineKind

#: lines whose period_start may lie past the service window's end: a free-minute credit covers
#: late calls of a period that has ended; a change line splits a period billed before a cancel
#: moved the end into it (SPEC 10)
_WINDOW_FREE = (LineKind.FREE_MINUTES_CREDIT, LineKind.CHANGE_CREDIT, LineKind.CHANGE_CHARGE)

EXAMPLES = 5
MAX_UNITS = MAX_MICROS // 1_000_000


def _key_text(frame: pd.DataFrame, cols: tuple[str, ...]) -> pd.Series:
    parts = []
    for c in cols:
        s = frame[c]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            parts.append(s.dt.strftime("%Y-%m-%d").fillna("?").astype(str))
        else:
            parts.append(s.astype(object).where(s.notna(), "?").astype(str))
    out = parts[0]
    for p in parts[1:]:
        out = out + ", " + p
    return "(" + out + ")"


def _window(frame: pd.DataFrame, inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(assignment known, customer matches, period_start inside the service window)."""
    a = inputs.assignments
    p = inputs.packages
    n = len(frame)
    if a is None or len(a) == 0:
        return np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    a_idx = pd.Index(a["assignment_id"].astype(str))
    pos = a_idx.get_indexer(frame["assignment_id"].astype(str))
    known = pos >= 0
    safe = np.where(known, pos, 0)
    start = a["start_date"].astype("datetime64[s]").to_numpy()[safe]
    end = a["end_date"].astype("datetime64[s]").to_numpy()[safe]
    cust = a["customer_id"].astype(str).to_numpy()[safe]
    min_days = np.zeros(n, dtype="int64")
    if p is not None and len(p):
        ppos = pd.Index(p["package_id"].astype(str)).get_indexer(
            a["package_id"].astype(str).to_numpy()[safe])
        md = p["minimum_days"].to_numpy(dtype="int64")
        min_days = np.where(ppos >= 0, md[np.where(ppos >= 0, ppos, 0)], 0)
    min_end = start + (min_days - 1).astype("timedelta64[D]")
    open_end = np.isnat(end)
    eff_end = np.where(open_end, end, np.maximum(end, min_end))
    ps = frame["period_start"].astype("datetime64[s]").to_numpy()
    inside = known & ~np.isnat(ps) & (ps >= start) & (open_end | (ps <= eff_end))
    line_customer = frame["customer_id"].astype(str).to_numpy()
    same_customer = known & ((line_customer == cust) | _transferred_to(frame, inputs))
    return known, same_customer, inside


def _transferred_to(frame: pd.DataFrame, inputs) -> np.ndarray:
    """Lines on a customer a recorded change moved the assignment to (SPEC 10 transfers)."""
    changes = getattr(inputs, "changes", None)
    if changes is None or not len(changes) or not changes["customer_id"].notna().any():
        return np.zeros(len(frame), dtype=bool)
    moved = changes[changes["customer_id"].notna()]
    pairs = pd.MultiIndex.from_arrays([moved["assignment_id"].astype(str),
                                       moved["customer_id"].astype(str)])
    keys = pd.MultiIndex.from_arrays([frame["assignment_id"].astype(str),
                                      frame["customer_id"].astype(str)])
    return keys.isin(pairs)


def _window_rules(check: pd.DataFrame, frame: pd.DataFrame, inputs, what: str) -> list[Rule]:
    known, same_customer, inside = _window(frame, inputs)
    check["assignment__known"] = known
    check["customer__matches"] = same_customer | ~known
    free = frame["kind"].astype(str).isin(_WINDOW_FREE).to_numpy() \
        if "kind" in frame.columns else np.zeros(len(frame), dtype=bool)
    check["window__inside"] = inside | ~known | free
    return [
        Rule(f"every {what} belongs to a validated assignment", "true", "assignment__known"),
        Rule(f"{what} customer is the assignment's customer", "true", "customer__matches"),
        Rule(f"{what} period_start inside the assignment's service window "
             "[start_date, max(end_date, start_date + minimum_days - 1)]", "true",
             "window__inside"),
    ]


def _money_checks(check: pd.DataFrame, lines: pd.DataFrame, col: str, digits: np.ndarray
                  ) -> list[Rule]:
    vals, bad = co.integers(lines[col])
    check[col] = vals
    check[col + "__whole"] = ~bad & vals.notna().to_numpy()
    v = vals.to_numpy(dtype="int64", na_value=0)
    check[col + "__max"] = v <= MAX_MICROS
    step = 10 ** (MICRO_DIGITS - digits)
    check[col + "__minor"] = (v % step) == 0
    return [
        Rule(f"{col} is a whole number of micros", "true", col + "__whole"),
        Rule(f"{col} >= 0", "between", col, min_value=0),
        Rule(f"{col} <= {MAX_UNITS} units", "true", col + "__max"),
        Rule(f"{col} is a multiple of the currency's minor unit", "true", col + "__minor"),
    ]


def _commitment_bound(lines: pd.DataFrame, inputs) -> tuple[np.ndarray, np.ndarray]:
    """Per line, the largest retail and quantity its assignment's terms can hold: the line's
    own unit_price and quantity, the package's retail and the assignment's quantity, and those
    of every price version and change the assignment has (a split period's commitment is a
    weighted mean of its pieces' retail x quantity, so it never exceeds max retail x max
    quantity; with no versions or changes the bound is the line's retail x quantity)."""
    n = len(lines)
    retail = pd.to_numeric(lines.get("unit_price", pd.Series(0, index=lines.index)),
                           errors="coerce").fillna(0).to_numpy(dtype="int64").copy()
    qty = pd.to_numeric(lines.get("quantity", pd.Series(0, index=lines.index)),
                        errors="coerce").fillna(0).to_numpy(dtype="int64").copy()
    a, p = inputs.assignments, inputs.packages
    if a is None or not len(a) or p is None or not len(p) or not n:
        return retail, qty
    changes = getattr(inputs, "changes", None)
    versions = getattr(inputs, "versions", None)
    pairs = [a[["assignment_id", "package_id"]]]
    qtys = [a[["assignment_id", "quantity"]]]
    if changes is not None and len(changes):
        pairs.append(changes.loc[changes["package_id"].notna(), ["assignment_id", "package_id"]])
        qtys.append(changes.loc[changes["quantity"].notna(), ["assignment_id", "quantity"]])
    prices = [p[["package_id", "retail"]]]
    if versions is not None and len(versions):
        prices.append(versions[["package_id", "retail"]])
    price = pd.concat(prices, ignore_index=True)
    price = price.assign(package_id=price["package_id"].astype(str),
                         retail=pd.to_numeric(price["retail"], errors="coerce").fillna(0)
                         .astype("int64")).groupby("package_id")["retail"].max()
    pk = pd.concat(pairs, ignore_index=True).astype(str)
    pk["retail"] = price.reindex(pk["package_id"]).fillna(0).to_numpy(dtype="int64")
    max_retail = pk.groupby("assignment_id")["retail"].max()
    q = pd.concat(qtys, ignore_index=True)
    max_qty = (pd.to_numeric(q["quantity"], errors="coerce").fillna(0).astype("int64")
               .groupby(q["assignment_id"].astype(str).to_numpy()).max())
    ids = lines["assignment_id"].astype(str)
    retail = np.maximum(retail, max_retail.reindex(ids).fillna(0).to_numpy(dtype="int64"))
    qty = np.maximum(qty, max_qty.reindex(ids).fillna(0).to_numpy(dtype="int64"))
    return retail, qty


def _commitment_rule(check: pd.DataFrame, lines: pd.DataFrame, inputs) -> list[Rule]:
    """A minimum-spend line is a shortfall: never above its commitment, retail x quantity
    (#28 item 4: a negative spend once made it 15.00 on a 10.00 commitment)."""
    ms = (lines["kind"].astype(str) == LineKind.MINIMUM_SPEND).to_numpy(dtype=bool)
    ok = np.ones(len(lines), dtype=bool)
    if ms.any():
        sub = lines[ms]
        retail, qty = _commitment_bound(sub, inputs)
        amount = pd.to_numeric(sub["amount"], errors="coerce").fillna(0).to_numpy(
            dtype="int64").clip(0, MAX_MICROS)
        # amount <= retail x qty without forming the product: ceil(amount / qty) <= retail
        safe_q = np.maximum(qty, 1)
        within = np.where(qty > 0, (amount + safe_q - 1) // safe_q <= retail, amount == 0)
        ok[ms] = within
    check["minimum_spend__within"] = ok
    return [Rule("minimum_spend amount <= retail x quantity of its line (a shortfall never "
                 "exceeds its commitment)", "true", "minimum_spend__within")]


def _line_rules(lines: pd.DataFrame, inputs) -> tuple[pd.DataFrame, list[Rule]]:
    check = pd.DataFrame(index=pd.RangeIndex(len(lines)))
    for c in ("customer_id", "assignment_id", "kind", "currency"):
        check[c] = co.text(lines[c])
    check["period_start"] = lines["period_start"].astype("datetime64[s]").to_numpy()
    rules = [Rule(f"{c} is present", "not_null", c)
             for c in ("customer_id", "assignment_id", "kind", "period_start", "currency")]
    rules.append(Rule("kind in " + "/".join(DUE_KINDS), "in_set", "kind",
                      value_set=DUE_KINDS))
    digits = minor_digits_series(check["currency"].fillna("")).to_numpy()
    # credits are <= 0: their amount is checked as its opposite (same range and minor unit)
    credit = check["kind"].isin(CREDIT_KINDS).fillna(False).to_numpy(dtype=bool)
    amount = pd.to_numeric(lines["amount"], errors="coerce")
    check["credit__sign"] = ~credit | (amount.fillna(0) <= 0).to_numpy(dtype=bool)
    rules.append(Rule(f"{'/'.join(CREDIT_KINDS)} amount <= 0", "true", "credit__sign"))
    # (a change_credit gives back the cost with the amount: its cost is <= 0 too, SPEC 10)
    cost = pd.to_numeric(lines["cost"], errors="coerce")
    signed = lines.assign(amount=lines["amount"].where(~credit, -amount),
                          cost=lines["cost"].where(~credit, -cost)) if credit.any() else lines
    rules += _money_checks(check, signed, "amount", digits)
    rules += _money_checks(check, signed, "cost", digits)
    rules.append(Rule("posting key (assignment_id, kind, period_start) is unique",
                      "compound_unique", columns=POSTING_KEY))
    cust = inputs.customers
    if cust is not None and len(cust):
        cur = pd.Series(cust["currency"].astype(str).to_numpy(),
                        index=cust["customer_id"].astype(str))
        cur = cur[~cur.index.duplicated()]
        expected = check["customer_id"].map(cur)
    else:
        expected = pd.Series(np.nan, index=check.index, dtype=object)
    check["currency__matches"] = (expected.notna() & (expected == check["currency"])
                                  ).to_numpy(dtype=bool)
    rules.append(Rule("line currency equals the customer's currency", "true",
                      "currency__matches"))
    rules += _window_rules(check, lines, inputs, "line")
    rules += _commitment_rule(check, lines, inputs)
    return check, rules


def _grant_rules(grants: pd.DataFrame, inputs) -> tuple[pd.DataFrame, list[Rule]]:
    check = pd.DataFrame(index=pd.RangeIndex(len(grants)))
    for c in ("customer_id", "assignment_id"):
        check[c] = co.text(grants[c])
    check["period_start"] = grants["period_start"].astype("datetime64[s]").to_numpy()
    vals, bad = co.integers(grants["seconds"])
    check["seconds"] = vals
    check["seconds__whole"] = ~bad & vals.notna().to_numpy()
    rules = [Rule(f"{c} is present", "not_null", c)
             for c in ("customer_id", "assignment_id", "period_start")]
    rules += [
        Rule("seconds is a whole number", "true", "seconds__whole"),
        Rule("seconds >= 0", "between", "seconds", min_value=0),
        Rule("grant key (assignment_id, period_start) is unique", "compound_unique",
             columns=GRANT_KEY),
    ]
    rules += _window_rules(check, grants, inputs, "grant")
    return check, rules


def _totals(lines: pd.DataFrame) -> tuple[pd.DataFrame, list[Rule]]:
    """Per (customer, currency): the int64 total of the amounts vs the per-kind subtotals
    added up as exact Python integers (an overflow, a lost or doubled line cannot pass)."""
    amount = pd.to_numeric(lines["amount"], errors="coerce").fillna(0).astype("int64")
    keys = pd.DataFrame({"customer_id": lines["customer_id"].astype(str),
                         "currency": lines["currency"].astype(str),
                         "kind": lines["kind"].astype(str), "amount": amount})
    direct = keys.groupby(["customer_id", "currency"], sort=True)["amount"].sum()
    exact: dict[tuple[str, str], int] = {}
    if float(amount.abs().astype("float64").sum()) < 2.0**62:
        # no int64 sum can overflow: the per-kind subtotals are exact
        by_kind = keys.groupby(["customer_id", "currency", "kind"], sort=True)["amount"].sum()
        for (c, cur, _k), v in by_kind.items():
            exact[(c, cur)] = exact.get((c, cur), 0) + int(v)
    else:  # huge amounts (the range rules fail too): add up exactly, line by line
        sub: dict[tuple[str, str, str], int] = {}
        for c, cur, k, a in keys.itertuples(index=False):
            sub[(c, cur, k)] = sub.get((c, cur, k), 0) + int(a)
        for (c, cur, _k), v in sub.items():
            exact[(c, cur)] = exact.get((c, cur), 0) + v
    check = pd.DataFrame({
        "customer_id": [i[0] for i in direct.index],
        "currency": [i[1] for i in direct.index],
        "total_direct": pd.Series([int(v) for v in direct.to_numpy()], dtype=object),
        "total_by_kind": pd.Series([exact[i] for i in direct.index], dtype=object),
    })
    return check, [Rule("per-customer totals reconcile (total of lines == sum of per-kind "
                        "subtotals)", "pair_equal", columns=("total_direct", "total_by_kind"))]


def _describe(table: str, rule: Rule, rows: pd.DataFrame, keys: tuple[str, ...]) -> str:
    shown = ", ".join(_key_text(rows.head(EXAMPLES), keys))
    more = f" and {len(rows) - EXAMPLES} more" if len(rows) > EXAMPLES else ""
    return (f"{rule.name} [{rule.gx_type} on {table}]: {len(rows)} failing, "
            f"e.g. {shown}{more}")


def gate(result, inputs) -> None:
    """Raise GateError unless the computed lines and grants are postable."""
    failures: list[str] = []
    lines = result.due_lines
    grants = result.grants
    needed = {"due_lines": (lines, ("customer_id", "assignment_id", "kind", "period_start",
                                    "amount", "cost", "currency")),
              "grants": (grants, ("customer_id", "assignment_id", "period_start", "seconds"))}
    for table, (frame, cols) in needed.items():
        if frame is None:
            continue
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise GateError(f"posting gate failed: {table} lacks columns {', '.join(missing)}")

    def run(what: str, suite: str, rows: pd.DataFrame, check, rules, key) -> None:
        for rule, pos in zip(rules, evaluate(check, rules, suite)):
            if len(pos):
                failures.append(_describe(what, rule, rows.iloc[pos], key))

    if lines is not None and len(lines):
        lines = lines.reset_index(drop=True)
        run("due_lines", "billing_gate_lines", lines, *_line_rules(lines, inputs),
            POSTING_KEY)
        tcheck, trules = _totals(lines)
        run("customer totals", "billing_gate_totals", tcheck, tcheck, trules,
            ("customer_id", "currency"))
    if grants is not None and len(grants):
        grants = grants.reset_index(drop=True)
        run("grants", "billing_gate_grants", grants, *_grant_rules(grants, inputs), GRANT_KEY)
    if failures:
        raise GateError("posting gate failed, nothing posted: " + "; ".join(failures))
