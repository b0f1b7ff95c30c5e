"""The billing rules of SPEC sections 3 and 4: pure, vectorised, no I/O."""

from billing_jobs.core.frames import BillingInputs, BillingResult

__all__ = ["BillingInputs", "BillingResult", "compute_billing"]


def compute_billing(inputs, run_date, tz: str = "UTC"):
    from billing_jobs.calc.billing import compute_billing as _compute

    return _compute(inputs, run_date, tz)
