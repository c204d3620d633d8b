"""`python -m lms.cli`: the same as the `lms` script."""

import sys

from lms.cli.main import main

sys.exit(main())
