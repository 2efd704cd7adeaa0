from setuptools import find_packages, setup

package_name = "lwd_sim"

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
    description="Simulated G1 dual-arm robot (MuJoCo): task suite, scripted expert and teleoperator, offline data generation, sim_robot node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_robot_node = lwd_sim.sim_robot_node:main",
            "sim_operator_node = lwd_sim.sim_operator_node:main",
            "sim_clock = lwd_sim.sim_clock:main",
            "generate_offline = lwd_sim.generate_offline:main",
        ]
    },
)
