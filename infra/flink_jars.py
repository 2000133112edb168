"""Fetch the two jars the PyFlink job needs, from a PyPI wheel, with checksums.

PyFlink ships without the Kafka connector. The wheel ``shigawire-apache-flink-libraries`` (a
redistribution of Apache-licensed connector jars) carries flink-connector-kafka 4.0.1-2.0 and
kafka-clients 3.9.1. Only those two jars are taken: the wheel's other jars clash with the ones
apache-flink already ships. ``pip download`` fetches the wheel, each jar's SHA-256 is checked, and
the jars land in ``infra/flink/jars/`` (git-ignored). Idempotent: verified jars are not fetched again.

    python -m infra.flink_jars [--dest DIR] [--quiet]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from infra.exceptions import StackError

WHEEL = "shigawire-apache-flink-libraries==2.0.0.post1"
WHEEL_SHA256 = "aaa65537d3f0c0ff279185d8243024f0efd95788ba044bf249ba0f40b69289cd"
JARS = {
    # jar inside the wheel -> (file name here, SHA-256)
    "pyflink/lib/flink-connector-kafka.jar": (
        "flink-connector-kafka-4.0.1-2.0.jar",
        "842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228",
    ),
    "pyflink/lib/kafka-clients.jar": (
        "kafka-clients-3.9.1.jar",
        "7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9",
    ),
}
DEFAULT_DEST = Path(__file__).resolve().parent / "flink" / "jars"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def jar_paths(dest: Path = DEFAULT_DEST) -> list[Path]:
    """Paths of the verified jars; raises StackError naming the fix when they are missing."""
    paths = [dest / name for name, _ in JARS.values()]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        msg = f"Flink Kafka jars missing ({', '.join(missing)}): run `python -m infra.flink_jars`"
        raise StackError(msg)
    return paths


def ensure_jars(dest: Path = DEFAULT_DEST, quiet: bool = False) -> list[Path]:
    """Make sure both jars are in ``dest`` with the expected checksums."""
    dest.mkdir(parents=True, exist_ok=True)
    if all((dest / n).is_file() and _sha256(dest / n) == s for n, s in JARS.values()):
        return jar_paths(dest)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if res.returncode != 0 or not wheels:
            msg = f"pip download {WHEEL} failed: {res.stderr.strip()[-500:]}"
            raise StackError(msg)
        if _sha256(wheels[0]) != WHEEL_SHA256:
            msg = f"{wheels[0].name}: checksum mismatch; refusing to use it"
            raise StackError(msg)
        with zipfile.ZipFile(wheels[0]) as zf:
            for member, (name, sha) in JARS.items():
                target = dest / name
                target.write_bytes(zf.read(member))
                if _sha256(target) != sha:
                    target.unlink()
                    msg = f"{member}: checksum mismatch; refusing to use it"
                    raise StackError(msg)
                if not quiet:
                    print(f"verified {target}")
    return jar_paths(dest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        ensure_jars(args.dest, args.quiet)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
