"""The launch-system tests need the ROS 2 launch stack (launch, launch_ros, launch_pytest).

A ROS 2 distro has it; a plain venv gets it from the vendored sources beside the
checkout (`scripts/setup.sh` installs them when `../shared/vendor` exists). Without
it these tests are skipped with one line saying why.
"""

import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("launch_pytest") is None or importlib.util.find_spec("launch_ros") is None:
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header(config):
        return ("tests/launch skipped: the ROS 2 launch stack (launch_pytest, launch_ros) is not installed "
                "in this venv; scripts/setup.sh installs it when ../shared/vendor is beside the checkout")
