"""Run the CPU benchmarks one after the other (`make bench`): peers, overhead, scale.

    .venv/bin/python benchmarks/run_all.py                 # full sizes (~30-40 min on 2 cores)
    .venv/bin/python benchmarks/run_all.py --only overhead,scale
    .venv/bin/python benchmarks/run_all.py --quick         # tiny sizes, a minute or two

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
    "overhead": ["--trials", "20", "--breakdown-n", "10"],
    "scale": ["--sizes", "20000,80000", "--memory-sizes", "40000,160000", "--rounds", "10"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="peers,overhead,scale")
    p.add_argument("--quick", action="store_true", help="tiny sizes, results under benchmarks/results/quick/")
    a = p.parse_args(argv)
    out = common.RESULTS / "quick" if a.quick else common.RESULTS
    for name in [n for n in a.only.split(",") if n]:
        args = list(QUICK[name]) if a.quick else []
        if a.quick:
            args += ["--out-dir", str(out)]
        if name == "peers":
            have = [t for t, mod in (("ray", "ray.tune"), ("hyperopt", "hyperopt")) if _installed(mod)]
            args += ["--tools", ",".join(t for t in peers.TOOLS if t in ("tuneflow", "optuna", *have))]
        print(f"== {name} {' '.join(args)}", flush=True)
        started = time.perf_counter()
        {"peers": peers.main, "overhead": overhead.main, "scale": scale.main}[name](args)
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
