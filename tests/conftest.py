import sys
from pathlib import Path

# make tests/_helpers.py importable as `_helpers` (the benchmarks reuse it too)
sys.path.insert(0, str(Path(__file__).resolve().parent))
