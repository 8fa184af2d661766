"""Where nlpseg keeps what it builds on the user's machine (converted models, caches)."""

from __future__ import annotations

import os
from pathlib import Path


def nlpseg_home() -> Path:
    """``$NLPSEG_HOME``, else the platform's user cache folder (e.g. ``~/.cache/nlpseg``)."""
    env = os.environ.get("NLPSEG_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("nlpseg"))


def models_dir() -> Path:
    """Folder for models nlpseg prepares itself (the converted bundled encoder)."""
    return nlpseg_home() / "models"
