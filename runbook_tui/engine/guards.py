"""The guards around a run, under the name the front ends import them by.

`lock.py` (who else runs this runbook), `trust.py` (may it run unattended) and `ownfiles.py`
(the private directory both keep their files in) hold the code.
"""

from __future__ import annotations

from runbook_tui.engine.lock import RunLock, describe_holder, lock_dir
from runbook_tui.engine.ownfiles import UnsafeFileError
from runbook_tui.engine.trust import TrustStatus, is_trusted, trust, trust_status

__all__ = ["RunLock", "TrustStatus", "UnsafeFileError", "describe_holder", "is_trusted", "lock_dir", "trust",
           "trust_status"]
