from glob import glob

from setuptools import find_packages, setup

package_name = "lwd_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*")),
        ("share/" + package_name + "/config", glob("config/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="lwd maintainers",
    maintainer_email="maintainers@lwd-robotics.dev",
    description="Fleet bring-up: the fleet description, parameter files, launch files, the venv supervisor, the progress monitor and the simulated fleet's main job.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "fleet = lwd_bringup.main:main",
            "fleet_launch = lwd_bringup.venv_launch:main",
        ]
    },
)
