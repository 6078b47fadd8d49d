"""One declaration per task: for every registered task, the defaults of its ``tomoml`` command,
of its napari widget and of the Batch widget are the registry's."""

from __future__ import annotations

import pytest

from napari_tomoml import cli
from napari_tomoml.cli._common import task_options
from napari_tomoml.tasks.registry import ITERATIONS, get_task, task_names

pytestmark = pytest.mark.napari

# the single-file command line of each task (inputs need not exist: nothing is run)
COMMANDS = {
    "reconstruct": ["reconstruct", "scan.h5", "out.npy"],
    "denoise": ["denoise", "vol.npy", "out.npy"],
    "segment": ["segment", "vol.npy", "out.npy"],
    "align": ["align", "scan.h5", "out.npy"],
    "outliers": ["outliers", "stack.npy", "--out", "table.csv"],
}


def _widget(task: str, viewer):
    from napari_tomoml._widgets.align import AlignWidget
    from napari_tomoml._widgets.denoise import DenoiseWidget
    from napari_tomoml._widgets.outliers import OutliersWidget
    from napari_tomoml._widgets.reconstruct import ReconstructWidget
    from napari_tomoml._widgets.segment import SegmentWidget

    kinds = {"reconstruct": ReconstructWidget, "denoise": DenoiseWidget, "segment": SegmentWidget,
             "align": AlignWidget, "outliers": OutliersWidget}
    widget = kinds[task](viewer)
    # docked, the viewer owns and closes it: a free widget was garbage-collected while Qt
    # delivered an event to it (a segfault in a full run)
    viewer.window.add_dock_widget(widget)
    return widget


def test_every_task_has_a_command_and_a_widget():
    assert set(task_names()) == set(COMMANDS)  # a new task joins both tables below


@pytest.mark.parametrize("task", list(COMMANDS))
def test_cli_widget_and_batch_defaults_are_the_registrys(task, make_napari_viewer, monkeypatch):
    from napari_tomoml._widgets import segment

    # a fresh session: Segment offers a model trained earlier in the session (other tests) first
    monkeypatch.setattr(segment, "TRAINED", {})
    spec = get_task(task)
    declared = spec.resolve({})
    declared.pop("format", None)  # the command's output extension chooses it

    args = cli.build_parser().parse_args(COMMANDS[task])
    assert task_options(task, args) == declared

    widget = _widget(task, make_napari_viewer())
    shown = widget.task_options()
    assert shown and shown == {k: declared[k] for k in shown}

    batch = spec.widgets()  # the Batch widget's panel for the task
    assert spec.resolve(spec.widget_values(batch)) == spec.resolve({})


def test_iterations_follow_the_algorithm_in_every_front_end(make_napari_viewer):
    from napari_tomoml.tasks.reconstruct import DEFAULT_ITERATIONS

    assert DEFAULT_ITERATIONS is ITERATIONS
    widget = _widget("reconstruct", make_napari_viewer())
    for algorithm, n_iter in ITERATIONS.items():
        widget.algorithm_combo.setCurrentText(algorithm)
        assert widget.task_options()["n_iter"] == n_iter


def test_old_option_spellings_still_work():
    args = cli.build_parser().parse_args(["reconstruct", "s.h5", "o.npy", "--filter", "hann", "--no-normalize",
                                          "--n-iter", "7", "--memory", "3GiB"])
    options = task_options("reconstruct", args)
    assert (options["filter_name"], options["line_integrals"], options["n_iter"], options["memory"]) == (
        "hann", True, 7, "3GiB")
