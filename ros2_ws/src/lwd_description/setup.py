from glob import glob

from setuptools import find_packages, setup

package_name = "lwd_description"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/urdf", glob("urdf/*")),
        ("share/" + package_name + "/robots", glob("robots/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="lwd maintainers",
    maintainer_email="maintainers@lwd-robotics.dev",
    description="Robot descriptions (robots/NAME.yaml + URDF: joints, limits, grippers, cameras, rates; the G1 dual arm by default) and the kinematic tables the URDF and the simulator come from.",
    license="Apache-2.0",
    entry_points={"console_scripts": []},
)
