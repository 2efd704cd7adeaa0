from setuptools import find_packages, setup

package_name = "lwd_common"

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
    description="ROS-free pieces shared by robot, bridge and learner: the episode format and store, the msgpack-numpy codec, the ZeroMQ transport, the ONNX policy contract.",
    license="Apache-2.0",
    entry_points={"console_scripts": []},
)
