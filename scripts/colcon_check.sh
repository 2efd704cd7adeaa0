#!/usr/bin/env bash
# What a ROS 2 user does with this workspace, checked in CI: colcon orders the packages (it refuses a
# dependency cycle), builds all of them (lwd_msgs with ament_cmake, the rest with ament_python) into
# an install space of their own, and from that install space the operators' command answers.
# Needs the project venv (scripts/setup.sh) for ament and the launch stack; installs colcon into it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LWD_VENV:-$REPO/.venv}"
log() { printf '[colcon] %s\n' "$*" >&2; }

"$VENV/bin/python" -m pip install -q -c "$REPO/constraints.txt" -r "$REPO/scripts/colcon-requirements.txt" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
colcon_() { "$VENV/bin/colcon" --log-base "$work/log" "$@"; }

log "dependency graph"
colcon_ graph --base-paths "$REPO/ros2_ws/src"
log "build"
start=$SECONDS
colcon_ build --base-paths "$REPO/ros2_ws/src" --build-base "$work/build" --install-base "$work/install" \
  --event-handlers console_direct- --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
  >"$work/build.out" 2>&1 || { tail -40 "$work/build.out"; exit 1; }
grep -E "^Summary" "$work/build.out" >&2 || true
log "built in $((SECONDS - start)) s"

# The built install space, not the editable one, answers the operators' command.
set +u
# shellcheck disable=SC1091
. "$work/install/setup.sh"
set -u
launch_file="$("$VENV/bin/python" -c 'from ament_index_python.packages import get_package_share_directory as d; print(d("lwd_actor"))')"
[[ "$launch_file" == "$work/install/"* ]] || { log "lwd_actor resolves to $launch_file, not the colcon install"; exit 1; }
args="$(ros2 launch lwd_actor fleet.launch.py --show-args)"
[[ "$args" == *"'num_robots'"* ]] || { log "ros2 launch lwd_actor fleet.launch.py --show-args: $args"; exit 1; }
executables="$(ros2 pkg executables lwd_actor)"
[[ "$executables" == *"lwd_actor actor_node"* ]] || { log "lwd_actor's executables: $executables"; exit 1; }
log "ok: colcon builds the workspace and ros2 launch lwd_actor fleet.launch.py answers from it"
