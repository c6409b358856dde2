"""`python -m runbook_tui` runs the same CLI as the `runbook-tui` script."""

from runbook_tui.cli import main

main()
