import sys

from ironpost_tui.cli import main

sys.exit(main())
