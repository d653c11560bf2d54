"""``python -m cellship.cli``: how cellship starts its own server processes."""

import sys

from cellship.cli.main import main

sys.exit(main())
