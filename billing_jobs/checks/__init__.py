"""Input validation and the posting gate (SPEC section 6), with Great Expectations."""

from billing_jobs.checks.gate import gate
from billing_jobs.checks.inputs import validate_inputs

__all__ = ["gate", "validate_inputs"]
