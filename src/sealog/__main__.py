from sealog.cli import main

raise SystemExit(main())
