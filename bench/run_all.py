"""Run every benchmark under bench/ and print one table (see bench/_common.py).

python bench/run_all.py [NAME...]      # make bench: against throw-away PostgreSQL (scripts/with_services.py)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

if __name__ == "__main__":
    sys.exit(_common.run(sys.argv[1:]))
