"""Hypothesis profiles: `ci` (the default, part of `make test`: derandomized, a few dozen examples
per property, under a minute in all) and `fuzz` (`make fuzz`: thousands, random, minutes)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, derandomize=True, database=None, deadline=5000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=2000, deadline=10000, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("TAML_FUZZ_PROFILE", "ci"))
