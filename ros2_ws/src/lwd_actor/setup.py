from glob import glob

from setuptools import find_packages, setup

package_name = "lwd_actor"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    # The dashboard's page (python -m lwd_actor.dashboard): served from the installed package.
    package_data={"lwd_actor.dashboard": ["static/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*")),
        ("share/" + package_name + "/config", glob("config/*")),
    ],
    install_requires=["setuptools"],
    # Onboard GPU inference: the CUDA 13 / cuDNN 9 runtime that onnxruntime-gpu 1.31 is built
    # against, from NVIDIA's wheels (what `onnxruntime-gpu[cuda,cudnn]` pulls in, plus cuBLAS,
    # which cuDNN needs). Not installed in the dev venv; docs/actor.md, "GPU inference".
    extras_require={
        "cuda": [
            "nvidia-cuda-runtime~=13.0",
            "nvidia-cuda-nvrtc~=13.0",
            "nvidia-cublas~=13.0",
            "nvidia-cufft~=12.0",
            "nvidia-curand~=10.0",
            "nvidia-cudnn-cu13~=9.0",
        ]
    },
    zip_safe=True,
    maintainer="lwd maintainers",
    maintainer_email="maintainers@lwd-robotics.dev",
    description="Onboard lwd runtime (30 Hz chunked joint-position control from an ONNX flow policy, pedal takeover, labelling and episode recording) and its bring-up (launch files, parameter files, fleet description, venv supervisor, the simulated fleet's main job).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "actor_node = lwd_actor.actor_node:main",
            "episode_cli = lwd_actor.episode_cli:main",
            "fleet = lwd_actor.bringup.main:main",
            "fleet_launch = lwd_actor.bringup.venv_launch:main",
            "dashboard = lwd_actor.dashboard.__main__:main",
        ]
    },
)
