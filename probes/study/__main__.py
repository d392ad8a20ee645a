from probes.study.cli import main

raise SystemExit(main())
