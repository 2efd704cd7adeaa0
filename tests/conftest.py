import sys
from pathlib import Path

# Make tests/rosutil.py importable as `rosutil` from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
