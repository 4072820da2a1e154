"""What a person files work under: an optional name, one experiment and a few tags.

Jobs, checkpoints and reports carry them; a job's outputs, report and child
jobs inherit the job's. The rules are written once here and used by every
body that takes them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=/-]*$"
MAX_TAGS = 20
MAX_TAG_CHARS = 64
MAX_EXPERIMENT_CHARS = 100
MAX_NAME_CHARS = 200
DEFAULT_EXPERIMENT = "default"
LABEL_RULE = "letters, digits and _ . : = / - (starting with a letter or digit), at most {max_chars} characters"
TAGS_DESCRIPTION = (
    f"at most {MAX_TAGS} tags, each {LABEL_RULE.format(max_chars=MAX_TAG_CHARS)}; repeats are dropped; "
    "list filters take `tag=` (repeatable, all must match)"
)
EXPERIMENT_DESCRIPTION = (
    f"the experiment this belongs to ({LABEL_RULE.format(max_chars=MAX_EXPERIMENT_CHARS)}); "
    "list filters take `experiment=`"
)
NAME_DESCRIPTION = "a name for people to recognise it by"


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS, pattern=LABEL_PATTERN)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_unique)]


def _unique_or_none(tags: list[str] | None) -> list[str] | None:
    return None if tags is None else _unique(tags)


# Tags of a multipart form, where they may be left out: the list is the outermost type, which is how FastAPI
# (before 0.16x) knows to collect every repeat of the field rather than expect one value.
FormTags = Annotated[list[Tag] | None, Field(max_length=MAX_TAGS), AfterValidator(_unique_or_none)]
Experiment = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXPERIMENT_CHARS, pattern=LABEL_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
