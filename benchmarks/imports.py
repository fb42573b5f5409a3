"""Start-up costs: ``import toykit`` in a fresh interpreter, and loading each shipped checkpoint.

Import time is measured in new Python processes (a module imports only once per process),
with ``import torch`` alone alongside for reference, since torch is most of it. Checkpoint
load time is ``toykit.pretrained.load(name, device="cpu")``, including its sha256 check, for
every name that ``toykit.pretrained.available()`` lists.

    .venv/bin/python -m benchmarks.imports [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import ROOT, figure, interleaved, median, time_calls
from toykit import pretrained

_TIMED_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str) -> float:
    """Seconds to import ``module`` in a new interpreter (the interpreter's own start excluded)."""
    out = subprocess.run([sys.executable, "-c", _TIMED_IMPORT.format(module=module)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    """{"figures": [...], "details": {...}}."""
    repeats = 2 if quick else 5
    seconds: dict[str, list[float]] = {"toykit": [], "torch": []}

    def timed(module: str):
        return lambda: seconds[module].append(import_seconds(module))

    # Alternate the two imports so that both meet the same disk cache and background load.
    interleaved({"toykit": timed("toykit"), "torch": timed("torch")}, rounds=repeats, warmup=0)
    toykit_s, torch_s = median(seconds["toykit"]), median(seconds["torch"])
    note = f"median of {repeats} fresh interpreters"
    figures = [
        figure("import toykit (fresh interpreter)", toykit_s, "s", note=f"{note}; includes torch"),
        figure("import torch alone (for reference)", torch_s, "s", note=note),
    ]
    details: dict = {"import_seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()}, "checkpoints": {}}
    for name in pretrained.available():
        entry = pretrained.manifest()[name]
        size = (pretrained.CHECKPOINT_DIR / entry["file"]).stat().st_size
        load_s = median(time_calls(lambda name=name: pretrained.load(name, device="cpu"), repeats=repeats, warmup=1))
        figures.append(figure(f"load checkpoint {name!r}", 1000 * load_s, "ms",
                              note=f"{size / 2**20:.2f} MiB, sha256 checked; median of {repeats}"))
        details["checkpoints"][name] = {"bytes": size, "load_seconds": round(load_s, 4)}
    return {"figures": figures, "details": details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    print(json.dumps(run(parser.parse_args().quick), indent=1))


if __name__ == "__main__":
    main()
