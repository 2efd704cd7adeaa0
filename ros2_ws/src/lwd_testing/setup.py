from setuptools import find_packages, setup

package_name = "lwd_testing"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="lwd maintainers",
    maintainer_email="maintainers@lwd-robotics.dev",
    description="Test fixtures for lwd: small real ONNX policies, a fake robot, a topic probe, a teleop helper and a two-process DDS smoke test.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "fake_robot_node = lwd_testing.fake_robot_node:main",
            "probe_node = lwd_testing.probe_node:main",
            "teleop_helper_node = lwd_testing.teleop_helper_node:main",
            "ros_smoke = lwd_testing.ros_smoke:main",
        ]
    },
)
