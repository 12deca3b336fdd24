"""What `pip install .` installs: lenet_keras and its subpackages, the experiment definitions as
lenet_keras.experiments, and no top-level package another project's name could collide with."""

import configparser
import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


def _options():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    packages = cfg.get("options", "packages").split()
    package_dir = dict(line.replace(" ", "").split("=", 1)
                       for line in cfg.get("options", "package_dir").splitlines() if line.strip())
    return packages, package_dir


def test_setup_cfg_lists_every_package_folder_and_maps_experiments_under_lenet_keras():
    packages, package_dir = _options()
    folders = sorted(
        os.path.relpath(folder, REPO).replace(os.sep, ".")
        for folder, _, files in os.walk(os.path.join(REPO, "lenet_keras"))  # links not followed
        if "__init__.py" in files
    )
    assert sorted(packages) == sorted(folders + ["lenet_keras.experiments"])
    assert package_dir == {"lenet_keras.experiments": "experiments"}


def test_the_checkouts_lenet_keras_experiments_is_the_experiments_folder():
    """A command or pytest run in the clone imports the clone's lenet_keras/ first (its folder leads
    sys.path), so lenet_keras/experiments links to experiments/ for them."""
    from lenet_keras import experiments

    folder = os.path.realpath(os.path.join(REPO, "experiments"))
    assert os.path.realpath(os.path.join(REPO, "lenet_keras", "experiments")) == folder
    assert os.path.dirname(os.path.realpath(experiments.__file__)) == folder


@pytest.mark.slow  # builds the wheel (seconds)
def test_the_wheel_installs_experiments_as_lenet_keras_experiments_and_no_top_level_package(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheel"), REPO],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = os.listdir(tmp_path / "wheel")
    with zipfile.ZipFile(tmp_path / "wheel" / wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    tops = {name.split("/")[0] for name in names}
    assert tops == {"lenet_keras", wheel.split("-")[0] + "-" + wheel.split("-")[1] + ".dist-info"}
    assert "lenet_keras/experiments/tuned.py" in names
    # From outside the clone, with only the unpacked wheel ahead of this environment.
    probe = subprocess.run(
        [sys.executable, "-c",
         "import importlib.util, lenet_keras.experiments as e; print(e.__file__); "
         "print(importlib.util.find_spec('experiments'))"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    location, top_level = probe.stdout.split("\n")[:2]
    assert location == str(tmp_path / "site" / "lenet_keras" / "experiments" / "__init__.py")
    assert top_level == "None"


COMMANDS = {"train", "tune", "export", "predict", "report", "pipeline"}


def test_only_the_commands_import_the_experiments():
    """Data flows one way, experiment config -> library: a library module takes an ExperimentConfig
    and never resolves a name itself, so lenet_keras.experiments (which imports the TFX entry points
    lazily) can never form a cycle with it."""
    import ast

    importers = set()
    for folder, _, files in os.walk(os.path.join(REPO, "lenet_keras")):  # links not followed
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            for node in ast.walk(ast.parse(open(path).read())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
                         if isinstance(node, ast.ImportFrom) else [])
                if any(n == "lenet_keras.experiments" or n.startswith("lenet_keras.experiments.")
                       for n in names):
                    importers.add(module)
    assert importers and importers <= {f"lenet_keras.{command}" for command in COMMANDS}, importers
