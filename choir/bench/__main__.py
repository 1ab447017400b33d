from choir.bench.cli import main

raise SystemExit(main())
