"""Packaging for tf-vqvae.

`training/` and `export/` live at the top of the repository (the design card's
layout) but install as `tf_vqvae.training` and `tf_vqvae.export`: `package_dir`
maps them, so site-packages holds one top-level name, `tf_vqvae`.
"""

import pathlib
import re

from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"',
    (HERE / "tf_vqvae" / "version.py").read_text(),
).group(1)

setup(
    name="tf-vqvae",
    version=VERSION,
    description=(
        "VQ-VAE (van den Oord et al., 2017) for TensorFlow/Keras: quantizers, "
        "PixelCNN prior, training CLI, SavedModel and TFLite export."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=["tf_vqvae", "tf_vqvae.training", "tf_vqvae.export"],
    package_dir={
        "tf_vqvae": "tf_vqvae",
        "tf_vqvae.training": "training",
        "tf_vqvae.export": "export",
    },
    install_requires=[
        "tensorflow>=2.21",
        "keras>=3.14",
        "tensorflow-probability>=0.25",
        "tf-keras>=2.21",
        "tensorflow-datasets>=4.9",
        "tensorboard>=2.21",
        "ai-edge-litert>=2.3",
        "scikit-image>=0.22",
        "pillow>=10",
        "scipy>=1.11",
        # eSpeak NG 1.52 (library and voice data) for the speech corpus;
        # pinned: the corpus is byte-identical only for one version.
        "espeakng-loader==0.2.4",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6"],
        "serving": ["tensorflow-serving-api>=2.21"],
    },
    entry_points={"console_scripts": ["vqvae=tf_vqvae.training.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
