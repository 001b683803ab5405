"""`python -m meshes_gateway`."""

from meshes_gateway.cli import main

raise SystemExit(main())
