"""runbook-tui: executable runbooks in the terminal, with an audit trail."""

__version__ = "0.1.0"
