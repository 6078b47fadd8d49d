"""The npe2 manifest is valid, every command imports, and napari finds the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

ROOT = Path(__file__).resolve().parents[1]


def _manifest():
    return npe2.PluginManifest.from_distribution("napari-tomoml")


def test_manifest_is_installed_and_named():
    pm = _manifest()
    assert pm.name == "napari-tomoml"
    contributions = pm.contributions
    assert contributions.readers and contributions.writers and contributions.sample_data
    widgets = {w.display_name for w in contributions.widgets}
    assert {"Load scan", "Reconstruct", "Denoise", "Train TomoGAN"} <= widgets


def test_manifest_commands_import():
    pm = _manifest()
    pm.validate_imports()  # raises if any python_name does not resolve


def test_top_level_manifest_is_the_packaged_one():
    top = ROOT / "napari.yaml"
    packaged = ROOT / "src" / "napari_tomoml" / "napari.yaml"
    assert top.resolve() == packaged.resolve()


def test_npe2_validate_cli():
    exe = Path(sys.executable).with_name("npe2")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "npe2"]
    env = dict(os.environ)
    env.setdefault("XDG_CONFIG_HOME", str(ROOT / ".cache" / "xdg-config"))
    env.setdefault("XDG_CACHE_HOME", str(ROOT / ".cache" / "xdg-cache"))
    proc = subprocess.run(
        [*cmd, "validate", "napari-tomoml", "--imports"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout
