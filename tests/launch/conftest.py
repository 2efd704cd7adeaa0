"""The launch-system tests need the ROS 2 launch stack (launch, launch_ros, launch_pytest).

A ROS 2 distro has it; a plain venv gets it from the vendored sources beside the
checkout (`scripts/setup.sh` installs them when `../shared/vendor` exists). Without
it each test file here is skipped with one line saying why (launchstack.py imports the stack).
"""
