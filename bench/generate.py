"""Write a synthetic VoIP-carrier dataset (the import CSVs) for benchmarks and demos.

    python -m bench.generate --customers 100000 --assignments 1000000 --calls 10000000 \\
        --seed 1 --out /tmp/bench-data [--as-of 2026-01-31] [--months 13]

`--calls` are the calls of the 30 days up to `--as-of`; `--months N` (default 1) keeps that
month identical and adds as many calls for each of the N-1 earlier 30-day months (history).

Writes customers.csv, packages.csv, assignments.csv and usage.csv (calls streamed in chunks,
so memory stays bounded) and prints the size of each file and the time taken.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

from billing_jobs.demo.sample_data import as_of_default, write_sample


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=_non_negative, default=1_000)
    parser.add_argument("--assignments", type=_non_negative, default=10_000)
    parser.add_argument("--calls", type=_non_negative, default=100_000)
    parser.add_argument("--seed", type=_non_negative, default=1)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--as-of", type=_date, default=None,
                        help="last day of the calls; starts spread over the 13 months before "
                             "(default: today, UTC)")
    parser.add_argument("--months", type=_non_negative, default=1,
                        help="months (30 days) of call history, each with --calls calls; "
                             "the last month is the same whatever N (default 1)")
    args = parser.parse_args(argv)
    if args.months < 1:
        parser.error("--months must be >= 1")
    as_of = args.as_of or as_of_default()
    if (args.assignments or args.calls) and not args.customers:
        parser.error("--assignments/--calls need --customers >= 1")

    t0 = time.perf_counter()
    paths = write_sample(args.out, args.customers, args.assignments, args.calls, args.seed, as_of,
                         months=args.months)
    elapsed = time.perf_counter() - t0

    print(f"as of {as_of.isoformat()}, seed {args.seed}: {args.customers} customers, "
          f"{args.assignments} assignments, {args.calls} calls a month x {args.months} month(s)")
    total = 0
    for name, path in paths.items():
        size = path.stat().st_size
        total += size
        print(f"  {path}  {_size(size)}")
    print(f"  total {_size(total)} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
