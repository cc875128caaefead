from agi_bridge.cli import main

raise SystemExit(main())
