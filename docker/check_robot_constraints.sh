#!/usr/bin/env bash
# Check docker/robot-constraints.txt against the package index without Docker: for each variant of
# docker/robot.Dockerfile, pip's resolver (dry run, no install) resolves what that variant
# pip-installs, under the constraints, for the image's interpreter (CPython 3.12, manylinux wheels
# only, x86_64 or aarch64), and this fails unless every package it would install is pinned there and
# numpy is the distro's pinned one (no requirement asks for another).
#   docker/check_robot_constraints.sh [x86_64|aarch64]       (needs pip >= 22.2 and the index)
# The name lists below are the Dockerfile's pip installs (tests/docker checks that they agree).
set -euo pipefail
ARCH="${1:-x86_64}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSTRAINTS="$HERE/robot-constraints.txt"
PY="${PYTHON:-python3}"
PYVER="$(sed -n 's/^# python: //p' "$CONSTRAINTS")"

BASE="onnx opencv-python-headless"
SIM="mujoco tqdm"
CPU="onnxruntime"
GPU="onnxruntime-gpu nvidia-cuda-runtime nvidia-cuda-nvrtc nvidia-cublas nvidia-cufft nvidia-curand nvidia-cudnn-cu13"

platforms=()
for glibc in 2_39 2_38 2_35 2_34 2_31 2_28 2_27 2_26 2_17; do platforms+=(--platform "manylinux_${glibc}_${ARCH}"); done
platforms+=(--platform "manylinux2014_${ARCH}")
[[ "$ARCH" == x86_64 ]] && platforms+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0
check() {  # check VARIANT NAMES...
  local variant=$1
  shift
  # shellcheck disable=SC2086
  if ! "$PY" -m pip install --dry-run --ignore-installed --quiet --disable-pip-version-check \
      --report "$tmp/$variant.json" --target "$tmp/target" --only-binary=:all: \
      --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" "${platforms[@]}" \
      -c "$CONSTRAINTS" "$@" numpy 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); then
    echo "FAIL $variant: no cp${PYVER/./} $ARCH set satisfies robot-constraints.txt"
    status=1
    return
  fi
  "$PY" - "$tmp/$variant.json" "$CONSTRAINTS" "$variant" <<'EOF' || status=1
import json, re, sys

report, constraints, variant = sys.argv[1:]
def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()
pins = {}
for line in open(constraints):
    line = line.split("#")[0].strip()
    if "==" in line:
        name, version = line.split("==")
        pins[norm(name)] = version.strip()
got = {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in json.load(open(report))["install"]}
unpinned = sorted(n for n in got if n not in pins)
wrong = sorted(n for n, v in got.items() if n in pins and pins[n] != v)
ok = not unpinned and not wrong and got.get("numpy") == pins["numpy"]
print(("ok  " if ok else "FAIL") + f" {variant}: " + " ".join(f"{n}=={v}" for n, v in sorted(got.items())))
if unpinned:
    print(f"     not pinned in robot-constraints.txt: {unpinned}")
if wrong:
    print(f"     resolved to other versions than pinned: {wrong}")
sys.exit(0 if ok else 1)
EOF
}

# shellcheck disable=SC2086
check "cpu" $BASE $CPU
# shellcheck disable=SC2086
check "gpu" $BASE $GPU
# shellcheck disable=SC2086
check "sim-cpu" $BASE $SIM $CPU
exit $status
