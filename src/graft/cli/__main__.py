from graft.cli import main

raise SystemExit(main())
