"""``python -m nodetrace`` runs the command line."""

import sys

from nodetrace.cli import main

sys.exit(main())
