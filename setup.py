"""Packaging: the package list is discovered from the folders (setup.cfg holds everything else).

Three folders make one import package: ``dirac_like/`` (the core), ``services/`` (installed as
``dirac_like.services``) and ``agents/`` (installed as ``dirac_like.agents``). Every folder with an
``__init__.py`` below them is a package of the wheel: nothing to list by hand, nothing to forget.
"""

from setuptools import find_packages, setup

LAYERS = {
    "dirac_like": "dirac_like",
    "dirac_like.services": "services",
    "dirac_like.agents": "agents",
}


def discover() -> list[str]:
    """Every package under the three folders, by its installed name."""
    packages = []
    for name, folder in LAYERS.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(folder)]
    return sorted(set(packages))


setup(packages=discover(), package_dir=LAYERS)
