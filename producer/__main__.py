"""``python -m producer``: see ``producer.service.main``."""

import sys

from producer.service import main

if __name__ == "__main__":
    sys.exit(main())
