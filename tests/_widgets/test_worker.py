"""The one worker bridge: progress, results, errors as notifications, cancel."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("napari")

from napari_tomoml._widgets import _worker  # noqa: E402
from napari_tomoml.errors import InputError  # noqa: E402
from napari_tomoml.progress import Progress  # noqa: E402

pytestmark = pytest.mark.napari


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(_worker, "show_error", shown.append)
    monkeypatch.setattr(_worker, "show_info", lambda msg: None)
    return shown


def steps(n, value):
    for i in range(n):
        yield Progress(i + 1, n, "step")
    return value


def failing_steps(exc):
    yield Progress(1, 2, "about to fail")
    raise exc


def slow_steps():
    for i in range(1000):
        time.sleep(0.01)
        yield Progress(i + 1, 1000, "slow")
    return "never"


def test_runs_generator_and_returns_result(qtbot, errors):
    runner = _worker.TaskRunner()
    qtbot.addWidget(runner)
    results, seen = [], []
    with qtbot.waitSignal(runner.done, timeout=10_000) as blocker:
        runner.run(steps, 3, 42, on_result=results.append, on_progress=seen.append)
    assert blocker.args == ["ok"]
    assert results == [42]
    assert [p.done for p in seen] == [1, 2, 3]
    assert runner.progress_value == (1, 1)
    assert not runner.running and not errors


def test_plain_function_works_too(qtbot, errors):
    runner = _worker.TaskRunner()
    qtbot.addWidget(runner)
    results = []
    with qtbot.waitSignal(runner.done, timeout=10_000):
        runner.run(lambda a, b=0: a + b, 1, b=2, on_result=results.append)
    assert results == [3]


@pytest.mark.parametrize(
    "exc, expected",
    [(InputError("theta has 3 angles for 4 projections"), "theta has 3 angles for 4 projections"),
     (RuntimeError("CUDA out of memory"), "RuntimeError: CUDA out of memory")],
)
def test_errors_become_notifications(qtbot, errors, exc, expected):
    runner = _worker.TaskRunner()
    qtbot.addWidget(runner)
    results, failures = [], []
    with qtbot.waitSignal(runner.done, timeout=10_000) as blocker:
        runner.run(failing_steps, exc, on_result=results.append, on_error=failures.append)
    assert blocker.args == ["error"]
    assert errors == [expected]
    assert failures == [exc] and results == []
    assert expected in runner.status_text


def test_cancel_stops_at_next_yield(qtbot, errors):
    runner = _worker.TaskRunner()
    qtbot.addWidget(runner)
    results = []
    runner.run(slow_steps, on_result=results.append)
    assert runner.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: runner.progress_value[0] > 0, timeout=5_000)
    with qtbot.waitSignal(runner.done, timeout=10_000) as blocker:
        runner.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert results == [] and not errors
    assert runner.status_text == "cancelled"


def test_custom_cancel_lets_the_task_finish(qtbot, errors):
    import threading

    stop = threading.Event()

    def stoppable():
        i = 0
        while not stop.is_set():
            i += 1
            time.sleep(0.01)
            yield Progress(i, 10_000, "running")
        return i

    runner = _worker.TaskRunner()
    qtbot.addWidget(runner)
    results = []
    runner.run(stoppable, on_result=results.append, on_cancel=stop.set)
    qtbot.waitUntil(lambda: runner.progress_value[0] > 0, timeout=5_000)
    with qtbot.waitSignal(runner.done, timeout=10_000) as blocker:
        runner.cancel_button.click()
    assert blocker.args == ["ok"] and results and results[0] > 0


def test_second_task_while_running_is_refused(qtbot, errors):
    runner = _worker.TaskRunner()
    qtbot.addWidget(runner)
    runner.run(slow_steps)
    with pytest.raises(_worker.TomomlError):
        runner.run(steps, 1, 1)
    with qtbot.waitSignal(runner.done, timeout=10_000):
        runner.cancel()


def test_run_quiet_reports_errors_to_callback(qtbot):
    results, failures, finished = [], [], []
    _worker.run_quiet(failing_steps, InputError("bad row"), on_result=results.append,
                      on_error=failures.append, on_finish=lambda: finished.append(True))
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    assert results == [] and str(failures[0]) == "bad row"
