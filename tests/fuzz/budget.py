"""How much generated input each fuzz property gets: ``CELLSHIP_FUZZ_EXAMPLES`` (unset: the
CI budget), shared by the hypothesis profile and schemathesis's config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

PROFILE = "cellship-fuzz"
CI_EXAMPLES = 60  # per property; the REST tier runs it per operation, with and without auth


def examples(ci: int = CI_EXAMPLES) -> int:
    """Examples per property: ``$CELLSHIP_FUZZ_EXAMPLES`` when set, else ``ci``."""
    raw = os.environ.get("CELLSHIP_FUZZ_EXAMPLES", "").strip()
    return int(raw) if raw else ci


def exploring() -> bool:
    """A longer run (``CELLSHIP_FUZZ_EXAMPLES`` set) explores new random input each time;
    CI's run is derandomized: the same examples every run, so a red CI is a real
    regression, not the luck of the draw."""
    return bool(os.environ.get("CELLSHIP_FUZZ_EXAMPLES", "").strip())


def register_profile() -> None:
    # hypothesis also caches constants and unicode tables under .hypothesis/: kept in the
    # temporary directory, so a test run leaves nothing in the tree
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "cellship-hypothesis")
    settings.register_profile(
        PROFILE, max_examples=examples(), deadline=None, database=None, print_blob=True,
        derandomize=not exploring(),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large])
    settings.load_profile(PROFILE)
