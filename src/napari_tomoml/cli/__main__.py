"""``python -m napari_tomoml.cli``: the ``tomoml`` command."""

import sys

from . import main

sys.exit(main())
