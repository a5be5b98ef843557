"""``python -m tunesmith``: the ``tunesmith`` command line."""
import sys

from tunesmith.tune.cli import main

sys.exit(main())
