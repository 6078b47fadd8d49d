"""Guard against a Qt binding that corrupts ``None``'s reference count (PySide6 6.12.0 on Python 3.11).

Such a binding drops one reference to ``None`` on every void Qt call (``setText``, ``setValue``);
on Python < 3.12, where ``None`` is not immortal, the process aborts with "Fatal Python error:
none_dealloc" once enough calls were made: after a few minutes of a napari session, or at the end
of the test suite. This test fails early with the cause instead.
"""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.napari


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_void_qt_calls_keep_none_alive(qtbot):
    from qtpy import API_NAME, QT_VERSION
    from qtpy.QtWidgets import QLabel

    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(1000):
        label.setText("x")
    lost = before - sys.getrefcount(None)
    assert lost < 100, (
        f"{API_NAME} (Qt {QT_VERSION}) loses a reference to None on every void call ({lost} per 1000): "
        "the process will abort with 'none_dealloc'. Use PySide6-Essentials<6.12 on Python 3.11 "
        "(6.11.3 is fine), or another Qt binding."
    )
