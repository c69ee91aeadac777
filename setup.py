"""pip install of the ROS-free psi0_ros library, training/ and the `psi0` command.

This is how a GPU cluster without ROS 2 installs psi0_ros. The ROS 2 package (messages, node
executables, launch files) is built from CMakeLists.txt by colcon or by scripts/setup.sh.
Exact versions for development and CI are pinned in constraints.txt.
"""

from glob import glob

from setuptools import find_packages, setup

setup(
    name="psi0_ros",
    version="0.1.0",
    description="Psi0 humanoid foundation model on a Unitree G1: ROS 2 stack, data pipeline, training",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["psi0_ros", "psi0_ros.*", "training", "training.*"]),
    data_files=[
        ("share/psi0_ros/config", sorted(glob("config/*.yaml"))),
        ("share/psi0_ros/launch", sorted(glob("launch/*.py"))),
        # the converter parses these to read psi0_ros types from bags that lack definitions (sqlite3)
        ("share/psi0_ros/msg", sorted(glob("msg/*.msg"))),
        ("share/psi0_ros", ["package.xml"]),
    ],
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "torch>=2.4",
        "transformers>=4.57",
        "safetensors>=0.4",
        "h5py>=3.9",
        "rosbags>=0.10",
        "pillow>=10",
        "simplejpeg>=1.7",  # episode JPEGs straight from the message buffer (libjpeg-turbo)
        "tqdm>=4.66",
        "tokenizers>=0.20",  # FAST action tokenizer (training/fast.py)
        "matplotlib>=3.8",  # training loss curves
        "tensorboard>=2.15",  # training metrics
        # `psi0 export`: torch.onnx's exporter needs onnx + onnxscript; onnxruntime runs and quantises
        "onnx>=1.17",
        "onnxscript>=0.5",
        "onnxruntime>=1.20",
        "peft>=0.13",  # per-task LoRA adapters of the action expert (docs/adapters.md)
    ],
    extras_require={
        "sim": ["mujoco>=3.2"],
        "lerobot": ["pyarrow>=15", "pandas>=2", "av>=12"],
        "unitree": ["cyclonedds>=0.10"],
        # mcap, zstandard: an independent bag writer and compressor for the tests; scipy: reference
        # numerics; urdf-parser-py: ROS's URDF parser
        "dev": ["pytest>=8", "ruff>=0.6", "urdf-parser-py>=0.0.4", "scipy>=1.11", "mcap>=1.1", "zstandard>=0.22"],
    },
    entry_points={"console_scripts": ["psi0=psi0_ros.cli:main"]},
)
