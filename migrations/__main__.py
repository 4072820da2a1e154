"""``python -m migrations [REVISION]``: bring the configured database to REVISION (default head).

Exit status 2 names an unknown revision. ``recomb migrate`` and ``recomb up`` run this module.
"""

from __future__ import annotations

import argparse
import logging
import sys

from alembic.util import CommandError

from app.logs import configure_logging
from app.settings import get_settings
from migrations import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrations", description=__doc__)
    parser.add_argument(
        "revision",
        nargs="?",
        default="head",
        help="target: a revision id, head (the default), base (no tables), or a step such as -1 or +1",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        before, after = migrate(settings.resolved_database_url, args.revision)
    except CommandError as error:
        print(f"recomb migrate: {error}", file=sys.stderr)
        return 2
    logging.getLogger("recomb").info("database schema at revision %s (was %s)", after or "base", before or "base")
    return 0


if __name__ == "__main__":
    sys.exit(main())
