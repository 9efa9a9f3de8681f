"""`python -m chalice_realtime.cli`: the same as the `chalice-realtime` command."""

import sys

from . import main

sys.exit(main())
