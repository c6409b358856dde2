"""Where the test material lives: inside the repository, so a fresh clone passes with nothing beside it."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
SEED = TESTS / "seed" / "DEPLOYMENT.md"
CORPUS = TESTS / "corpus"
RUNBOOKS = REPO / "runbooks"
