"""``python -m gateway``: run one gateway process (see ``--help``)."""

import sys

from gateway.server import main

sys.exit(main())
