"""Tomographic reconstruction on torch: projector pair, FBP, iterative solvers, centre, rings.

Geometry and the rotation-centre convention (tomopy's) are described in
:mod:`napari_tomoml.recon.geometry`.

>>> from napari_tomoml.recon import fbp, find_center  # doctest: +SKIP
>>> rec = fbp(proj, theta, center=find_center(proj, theta))  # doctest: +SKIP
"""

from .center import center_stack, find_center
from .fbp import fbp
from .iterative import cgls, sirt, solve
from .projector import backproject, project
from .rings import remove_stripes

__all__ = [
    "project",
    "backproject",
    "fbp",
    "find_center",
    "center_stack",
    "sirt",
    "cgls",
    "solve",
    "remove_stripes",
]
