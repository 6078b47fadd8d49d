from napari_tomoml.progress import Progress, run_to_end


def _steps(n):
    for i in range(n):
        yield Progress(i + 1, n, "step", {"i": i})
    return "result"


def test_run_to_end_returns_the_generator_result_and_reports_each_step():
    seen = []
    assert run_to_end(_steps(3), seen.append) == "result"
    assert [p.done for p in seen] == [1, 2, 3]
    assert seen[-1].fraction == 1.0 and seen[0].data == {"i": 0}


def test_silent_and_terminal_modes(capsys):
    assert run_to_end(_steps(2)) == "result"
    assert run_to_end(_steps(2), progress=True) == "result"
