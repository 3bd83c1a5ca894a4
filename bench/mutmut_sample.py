"""Print a fixed sample of mutmut mutant names: ``python -m bench.mutmut_sample PREFIX --every K``.

mutmut numbers the mutants of every function 1, 2, 3, ...; this prints the names numbered
1, 1 + K, 1 + 2K, ... (``--first F``: F, F + K, ...) of every function whose dotted name starts
with ``PREFIX`` (for example ``mf_pipeline.lib.validation.qa``), read from the
``mutants/**/*.meta`` files that a first ``mutmut run`` leaves. The sample is reproducible: it
depends only on the code, F and K, so a rerun after new tests runs the same mutants, and
another F gives a disjoint second sample. Feed it to mutmut::

    .venv/bin/mutmut run --max-children 2 $(python -m bench.mutmut_sample \\
        mf_pipeline.lib.validation.qa --every 10)

(docs/VALIDATION.md and docs/RESEARCH.md, "Mutation testing").
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

_NAME = re.compile(r"^(?P<function>.+)__mutmut_(?P<number>\d+)$")


def sample(prefix: str, every: int, first: int = 1, root: Path = Path("mutants")) -> list[str]:
    """Names of the sampled mutants under ``root`` whose name starts with ``prefix``."""
    if every < 1 or not 1 <= first <= every:
        raise ValueError(f"need 1 <= --first <= --every, got {first} and {every}")
    names = []
    for meta in sorted(root.rglob("*.py.meta")):
        for name in json.loads(meta.read_text())["exit_code_by_key"]:
            m = _NAME.match(name)
            number = int(m["number"]) if m else 0
            if name.startswith(prefix) and number >= first and (number - first) % every == 0:
                names.append(name)
    return sorted(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="dotted module prefix, e.g. mf_pipeline.lib.validation")
    parser.add_argument("--every", type=int, default=1, help="keep mutant 1 of every K")
    parser.add_argument("--first", type=int, default=1, help="first mutant number kept")
    parser.add_argument("--root", type=Path, default=Path("mutants"))
    args = parser.parse_args()
    names = sample(args.prefix, args.every, args.first, args.root)
    if not names:
        raise SystemExit(f"no mutants of {args.prefix!r} under {args.root}: run mutmut once")
    print("\n".join(names))


if __name__ == "__main__":
    main()
