"""Where the shared fixtures live: ../shared beside the checkout (CI lays it out the same way)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SEED = SHARED / "seed" / "DEPLOYMENT.md"
CORPUS = SHARED / "corpus"
RUNBOOKS = REPO / "runbooks"
