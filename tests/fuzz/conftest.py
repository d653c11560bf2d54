"""The fuzz tier: generated hostile input against every place input enters (the REST API
from its openapi.yaml, serving payloads, %%train cells, event files).

Budgets: one hypothesis profile, ``cellship-fuzz``, sized so the whole tier adds a few
minutes to CI on two cores, derandomized (the same examples each CI run).
``CELLSHIP_FUZZ_EXAMPLES=N`` sets the examples per property directly (e.g. 2000 for an
overnight run) and draws new random input each run. No example database is kept
(``database=None``): a failure prints its minimal example, which becomes a plain
regression test, and no ``.hypothesis/`` directory appears in the tree.
"""

from __future__ import annotations

from tests.fuzz.budget import register_profile

register_profile()
