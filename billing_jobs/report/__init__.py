"""The report folder analysts open (SPEC §7): CSVs, summary.json, report.html."""

from billing_jobs.report.formatting import (
    CHARGES_COLUMNS,
    GRANTS_COLUMNS,
    REJECTED_COLUMNS,
    UTILISATION_CSV_COLUMNS,
)
from billing_jobs.report.writer import build_summary, headline, write_report

__all__ = [
    "CHARGES_COLUMNS", "GRANTS_COLUMNS", "REJECTED_COLUMNS", "UTILISATION_CSV_COLUMNS",
    "build_summary", "headline", "write_report",
]
