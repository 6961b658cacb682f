#!/usr/bin/env bash
# Install the lowest versions pyproject.toml allows for every core dependency into a fresh
# virtual environment and run the fast tests there (`make floors`). A floor that fails here
# must be raised in pyproject.toml: `pip install dforce` may pick exactly these versions.
#
#   bash scripts/check_floor_versions.sh            # venv in /tmp/dforce-floors, then the tests
#   bash scripts/check_floor_versions.sh --print    # only print the pins it would install
#
# Environment: PYTHON (interpreter for the venv, default python3), VENV (its folder),
# TORCH (how to ask for torch, default torch==<floor>; e.g. "torch==2.13.0 --index-url URL"
# for a CPU build). Tests: the default suite without the dev extras (diffusers, GluonTS,
# MuJoCo, ale-py: their tests skip, or are left out when they import them at the top).
# Every core dependency must have a floor (name>=version); one without fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-/tmp/dforce-floors}"

# name==floor for each [project].dependencies entry; a missing floor is an error
pins=$("$PYTHON" - <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
bad = []
for dep in deps:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?", dep)
    if not m:
        bad.append(dep)
        continue
    print(f"{m.group(1)}=={m.group(2)}")
if bad:
    sys.exit(f"check_floor_versions: no floor (name>=version) for: {', '.join(bad)}")
EOF
)
if [ "${1:-}" = --print ]; then echo "$pins"; exit 0; fi

torch_pin=$(echo "$pins" | grep -i '^torch==')
others=$(echo "$pins" | grep -vi '^torch==')
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q ${TORCH:-$torch_pin}
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q $others pytest
# the floors, not something newer, are what got installed
"$VENV/bin/python" - "$pins" <<'EOF'
import re, sys
from importlib.metadata import version
norm = lambda v: re.sub(r"(\.0+)+$", "", v.split("+")[0])   # 2.13.0+cpu == 2.13
wrong = []
for pin in sys.argv[1].split():
    name, floor = pin.split("==")
    got = version(name)
    if norm(got) != norm(floor):
        wrong.append(f"{name} {got} (floor {floor})")
if wrong:
    sys.exit(f"check_floor_versions: not the floors: {', '.join(wrong)}")
print("floors installed:", ", ".join(sys.argv[1].split()))
EOF

# test modules that import a dev extra at the top cannot be collected without it
skip=()
for f in tests/test_*.py; do
    if grep -qE '^(from|import) (diffusers|gluonts|mujoco|gymnasium|pandas|scipy|ale_py|lightning)' "$f"; then
        skip+=(--ignore="$f")
    fi
done
OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${skip[@]}" tests
