"""Run the CPU benchmarks one after the other (`make bench`): peers (large and small trials),
overhead, scale.

    .venv/bin/python benchmarks/run_all.py                 # full sizes (~50-60 min on 2 cores)
    .venv/bin/python benchmarks/run_all.py --only peers-small,overhead
    .venv/bin/python benchmarks/run_all.py --quick         # tiny sizes, a few minutes

Each writes benchmarks/results/<name>.json and <name>.md; this script then prints the Markdown
tables. The GPU benchmark (gpu.py) runs on the lent GPU machine, not here.
Peers need the `bench` extra (`pip install -e .[bench]`): without Ray Tune or Hyperopt installed
those tools are left out of the peers run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import overhead  # noqa: E402
import peers  # noqa: E402
import scale  # noqa: E402

QUICK = {
    "peers": ["--rows", "20000", "--trials", "4", "--max-rounds", "20"],
    "peers-small": ["--rows", "20000", "--trials", "4", "--max-rounds", "20"],
    "overhead": ["--trials", "20", "--breakdown-n", "10"],
    "scale": ["--sizes", "20000,80000", "--memory-sizes", "40000,160000", "--rounds", "10"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(QUICK), help=f"comma-separated, some of {','.join(QUICK)}")
    p.add_argument("--quick", action="store_true", help="tiny sizes, results under benchmarks/results/quick/")
    a = p.parse_args(argv)
    out = common.RESULTS / "quick" if a.quick else common.RESULTS
    names = [n for n in a.only.split(",") if n]
    unknown = [n for n in names if n not in QUICK]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(QUICK)}")
    for name in names:
        args = list(QUICK[name]) if a.quick else []
        if a.quick:
            args += ["--out-dir", str(out)]
        if name == "peers":  # the large-trial regime: every peer that is installed
            have = [t for t, mod in (("ray", "ray.tune"), ("hyperopt", "hyperopt")) if _installed(mod)]
            args += ["--tools", ",".join(t for t in peers.TOOLS if t in ("tuneflow", "optuna", *have))]
        if name == "peers-small":  # the small-trial regime: pool (the limit), tuneflow, optuna
            args = ["--regime", "small", *args]
        print(f"== {name} {' '.join(args)}", flush=True)
        started = time.perf_counter()
        {"peers": peers.main, "peers-small": peers.main, "overhead": overhead.main, "scale": scale.main}[name](args)
        print(f"== {name} done in {time.perf_counter() - started:.0f} s\n", flush=True)
        print((out / f"{name}.md").read_text(), flush=True)
    return 0


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
