"""Hypothesis profiles: `ci` (the default) is derandomized, `nightly` draws afresh and more.

* `ci`: every run draws the same examples (a seed derived from each test), so a run that
  passed passes again on the same code, and a failure prints `@reproduce_failure(...)`.
* `nightly` (`make test-nightly`, HYPOTHESIS_PROFILE=nightly): random seeds and ten times
  the examples; a failure prints its seed (`--hypothesis-seed=N` replays it) and its blob.

Tests ask `examples(n)` for their example counts, so the profile scales them.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = {"ci": 1, "nightly": 10}

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("nightly", derandomize=False, database=None, print_blob=True)


def load() -> None:
    if PROFILE not in SCALE:
        raise RuntimeError(f"HYPOTHESIS_PROFILE={PROFILE!r}: use one of {', '.join(SCALE)}")
    settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """`n` examples under `ci`, ten times that under `nightly`."""
    return n * SCALE.get(PROFILE, 1)
