"""`python -m devserver`: run the whole app locally (see `devserver.supervisor`)."""

import sys

from devserver.supervisor import main

sys.exit(main())
