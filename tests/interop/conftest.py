"""The interop tier: toykit against the real TransformerLens, SAELens and transformers.

These libraries are not toykit dependencies, so the tier runs in a venv of its own
(``make interop`` builds .venv-lens; ``make test`` runs the tier there). In a venv without
them, nothing here is collected. At the end of a run, the largest differences found per
checkpoint and hook class are printed (and written to $INTEROP_REPORT if set).
"""

import importlib.util
import json
import os
from collections import defaultdict

import pytest

REQUIRED = ("transformer_lens", "sae_lens", "transformers")
if not all(importlib.util.find_spec(name) for name in REQUIRED):
    collect_ignore_glob = ["test_*.py"]

# {(checkpoint, dtype): {hook class: max |difference|}}
MAX_DIFFS: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)


@pytest.fixture
def record_diff():
    """record_diff(checkpoint, dtype, hook_class, value): keep the largest difference seen."""
    def record(checkpoint: str, dtype: str, hook_class: str, value: float) -> None:
        table = MAX_DIFFS[(checkpoint, dtype)]
        table[hook_class] = max(table.get(hook_class, 0.0), float(value))
    return record


def pytest_terminal_summary(terminalreporter):
    if not MAX_DIFFS:
        return
    terminalreporter.section("largest |toykit - TransformerLens| per checkpoint and hook class")
    for (checkpoint, dtype), table in sorted(MAX_DIFFS.items()):
        cells = ", ".join(f"{name} {value:.1e}" for name, value in sorted(table.items()))
        terminalreporter.write_line(f"{checkpoint} ({dtype}): {cells}")
    path = os.environ.get("INTEROP_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({f"{c} ({d})": t for (c, d), t in sorted(MAX_DIFFS.items())}, f, indent=1, sort_keys=True)
