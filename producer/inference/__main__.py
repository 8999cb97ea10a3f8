"""``python -m producer.inference``: the shared inference worker (see ``producer.inference.main``)."""

import sys

from producer.inference.main import main

if __name__ == "__main__":
    sys.exit(main())
