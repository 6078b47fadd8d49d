import numpy as np
import pytest

from napari_tomoml.errors import InputError
from napari_tomoml.inference.inputs import check_finite, check_slices


def test_an_image_becomes_one_slice_and_lazy_data_stays_lazy():
    import dask.array as da

    assert check_slices(np.ones((16, 16))).shape == (1, 16, 16)
    lazy = da.ones((2, 16, 16), chunks=(1, 16, 16))
    assert check_slices(lazy) is lazy


@pytest.mark.parametrize("data, message", [
    (np.ones((4, 16, 16), complex), "real numbers"),
    (np.ones((2, 2, 16, 16)), "2-D slice"),
    (np.ones((0, 16, 16)), "is empty"),
    (np.ones((2, 4, 16)), "too small to segment"),
    (np.full((2, 16, 16), np.nan), "NaN"),
])
def test_bad_input_is_named(data, message):
    with pytest.raises(InputError, match=message):
        check_slices(data, what="image", purpose="segment")


def test_a_lazy_slice_is_checked_as_it_is_read():
    with pytest.raises(InputError, match="slice z=3 contains NaN"):
        check_finite(np.array([1.0, np.inf]), "slice z=3", "denoise")
