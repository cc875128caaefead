import sys

from agi_bridge.cli import main

sys.exit(main())
