"""Suite-wide fixtures."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _isolate_qauvern_logging() -> Iterator[None]:
    """Code under test may configure the ``qauvern_hpc`` logger (the hooks' setup_logging adds a handler and
    sets INFO); without this, that state leaks into later tests and hides their DEBUG records."""
    logger = logging.getLogger("qauvern_hpc")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)
    logger.propagate = propagate
