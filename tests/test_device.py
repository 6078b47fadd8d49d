import pytest
import torch

from napari_tomoml.device import resolve_device
from napari_tomoml.errors import InputError


def test_auto_picks_an_available_device():
    dev = resolve_device("auto")
    assert dev.type in {"cuda", "mps", "cpu"}
    if torch.cuda.is_available():
        assert dev.type == "cuda"


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_unavailable_accelerator_is_a_clear_error(name):
    available = torch.cuda.is_available() if name == "cuda" else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"{name} is available here")
    with pytest.raises(InputError, match="no|not available"):
        resolve_device(name)


def test_unknown_device_name():
    with pytest.raises(InputError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
