from gilstudy.cli import main

raise SystemExit(main())
