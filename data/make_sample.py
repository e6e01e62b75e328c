"""Write the churn sample (tasks.data.sample) as CSV.

    python data/make_sample.py --rows 250000 --out data/generated/churn.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tasks.data.sample import make_churn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("data/generated/churn.csv"))
    parser.add_argument("--files", type=int, default=1, help="split the rows over this many CSV files")
    args = parser.parse_args()
    df = make_churn(args.rows, args.seed)
    if args.files == 1:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
        print(f"wrote {len(df)} rows to {args.out}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(df, args.files)):
        part.to_csv(args.out / f"part-{i:03d}.csv", index=False)
    print(f"wrote {len(df)} rows in {args.files} files to {args.out}")


if __name__ == "__main__":
    main()
