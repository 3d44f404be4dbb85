"""`python -m authsvc ...` is `authsvc ...`."""

import sys

from authsvc.cli import main

sys.exit(main())
