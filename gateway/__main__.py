"""``python -m gateway``: run one gateway process (see ``--help``)."""

import sys

from gateway.main import main

sys.exit(main())
