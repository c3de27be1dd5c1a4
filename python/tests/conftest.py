import sys
from pathlib import Path

# Run against the source tree (the library comes from STEM_LIBRARY, e.g. a
# CMake build) unless the package is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
