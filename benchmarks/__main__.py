"""Run every benchmark in turn: ``python -m benchmarks [NAME ...]``.

Each benchmark measures Millstream against a baseline in the same run and writes
``benchmarks/results/<name>.json``. Names: the ``bench_<name>.py`` files in this folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        print(f"== benchmarks.bench_{name}", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.bench_{name}"], cwd=HERE.parent)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
