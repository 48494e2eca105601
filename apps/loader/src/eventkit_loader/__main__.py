"""``python -m eventkit_loader`` = ``eventkit-loader``."""

import sys

from eventkit_loader.cli import main

sys.exit(main())
