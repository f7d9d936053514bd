"""``python -m speechunits`` is the same as the ``speechunits`` command."""

import sys

from speechunits.cli import main

sys.exit(main())
