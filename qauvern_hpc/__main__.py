from qauvern_hpc.cli import main

raise SystemExit(main())
