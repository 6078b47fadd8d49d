import threading

import pytest
import torch

from napari_tomoml.recon._workers import run_serial


def test_runs_with_one_torch_thread_and_the_callers_autograd_mode():
    def probe():
        return threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled()

    threads = torch.get_num_threads()
    name, count, grad = run_serial(probe)
    assert count == 1 and grad
    assert name == ("tomoml-recon" if threads > 1 else threading.current_thread().name)
    with torch.no_grad():
        assert run_serial(probe)[2] is False
    assert torch.get_num_threads() == threads
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [threads]  # threads started afterwards keep torch's count


def test_errors_reach_the_caller():
    with pytest.raises(ZeroDivisionError):
        run_serial(lambda: 1 / 0)
    assert run_serial(sum, [1, 2]) == 3
