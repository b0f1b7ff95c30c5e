"""The billing rules of SPEC sections 3 and 4: pure, vectorised, no I/O (`calc.billing.compute_billing`)."""
