#!/usr/bin/env bash
# Create or update the project venv: ROS 2 (rclpy + message packages) from PyPI
# wheels, the learner stack, lwd_msgs built by rosidl into the venv prefix, and
# the project's Python packages installed editable. Idempotent: when nothing it
# depends on changed, it returns in well under a second.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LWD_VENV:-$REPO/.venv}"
# The ROS 2 launch stack (launch, launch_ros, launch_pytest, ros2cli) is not on PyPI. Where its
# vendored sources sit beside the checkout (our CI and dev machines: ../shared/vendor) it is
# installed too; elsewhere the venv runs the fleet with its own supervisor (./lwd fleet).
ROS_LAUNCH_VENDOR="${LWD_ROS_LAUNCH_VENDOR:-$REPO/../shared/vendor}"
[[ -f "$ROS_LAUNCH_VENDOR/install_ros_launch.sh" ]] || ROS_LAUNCH_VENDOR=""
PY="${LWD_PYTHON:-python3.11}"
STAMP="$VENV/.lwd-setup-stamp"
log() { printf '[setup] %s\n' "$*" >&2; }

# Everything that changes what this script produces goes into the stamp.
inputs_hash() {
  (cd "$REPO" && {
    cat scripts/setup.sh requirements.txt constraints.txt
    find ros2_ws/src learner urdf -name package.xml -o -name setup.py -o -name setup.cfg \
         -o -name pyproject.toml -o -name CMakeLists.txt -o -name '*.msg' -o -name '*.srv' \
         -o -path '*/launch/*.py' -o -path '*/config/*.yaml' -o -path 'urdf/*' -o -path '*/robots/*' -o -path '*/resource/*' \
      | grep -v -e '/build/' -e '/install/' | LC_ALL=C sort | xargs cat
    echo "ros-launch-vendor:${ROS_LAUNCH_VENDOR:+yes}"
  } | sha256sum | cut -d' ' -f1)
}

want="$(inputs_hash)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  exit 0
fi

command -v "$PY" >/dev/null || { log "need $PY (the ROS 2 wheels on PyPI are built for CPython 3.11)"; exit 1; }
command -v cmake >/dev/null || { log "need cmake (apt-get install cmake g++)"; exit 1; }

start=$SECONDS
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
log "installing pinned dependencies (first run: 2-3 min, ~1.7 GB)"
"${PIP[@]}" install -q -r "$REPO/requirements.txt" -c "$REPO/constraints.txt" setuptools wheel \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# The ROS wheels' exported CMake files name include paths of the machine that
# built them; point them at this interpreter's headers and numpy's.
py_inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_inc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
{ grep -rlE '/opt/python/cp311-cp311/' "$VENV/share" --include='*.cmake' 2>/dev/null || true; } \
  | xargs -r sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g"

log "building lwd_msgs (rosidl) into $VENV"
build="$VENV/.build/lwd_msgs"
mkdir -p "$build"
cmake -S "$REPO/ros2_ws/src/lwd_msgs" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$VENV/bin/python" >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
AMENT_PREFIX_PATH="$VENV" cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 \
  || { tail -50 "$build/build.log"; exit 1; }
cmake --install "$build" >"$build/install.log" 2>&1 || { cat "$build/install.log"; exit 1; }

log "installing project packages (editable)"
pkgs=()
for d in "$REPO"/ros2_ws/src/*/ "$REPO"/learner/; do
  [[ -f "$d/setup.py" || -f "$d/pyproject.toml" ]] && pkgs+=(-e "$d")
done
"${PIP[@]}" install -q --no-deps --no-build-isolation "${pkgs[@]}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# Editable installs skip data_files, so the ament index would not know our packages: copy each
# package's index marker, package.xml, launch/, config/, urdf/ and robots/ into the venv prefix
# (share/<pkg>/...); console scripts already land in lib/<pkg>/ (setup.cfg).
log "registering the ROS packages in the venv's ament index"
for d in "$REPO"/ros2_ws/src/*/; do
  [[ -f "$d/setup.py" ]] || continue
  (cd "$d" && "$VENV/bin/python" setup.py -q install_data --install-dir "$VENV" >/dev/null 2>&1) \
    || { log "install_data failed in $d"; exit 1; }
done

if [[ -n "$ROS_LAUNCH_VENDOR" ]]; then
  log "installing the vendored ROS 2 launch stack from $ROS_LAUNCH_VENDOR"
  PIP_CONSTRAINT="$REPO/constraints.txt" bash "$ROS_LAUNCH_VENDOR/install_ros_launch.sh" "$VENV"
fi

"$VENV/bin/python" -c 'import rclpy, lwd_msgs.msg' || { log "rclpy/lwd_msgs import check failed"; exit 1; }
echo "$want" >"$STAMP"
log "ready in $((SECONDS - start)) s: $VENV"
