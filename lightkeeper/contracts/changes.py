"""``changes.wait``: the long poll the console follows instead of re-fetching every pane."""

from __future__ import annotations

from typing import TypedDict

# What moves a topic (``TopicFeed.notify``):
#   jobs      a job was queued, started, logged or ended      progress  a job's progress moved
#   backups   a repository job ended (snapshots, statistics)   zones     a zone job or probe ran
#   tuning    a tuning version was applied or restored         events    an event was stored
#   alerts    an alert fired, changed or resolved              config    the agent reloaded
#   samples   a collection round or ingest batch landed in the store
TOPICS = ("jobs", "progress", "backups", "zones", "tuning", "events", "alerts", "config",
          "samples")


class ChangesWaitRequest(TypedDict, total=False):
    # topic -> the version the client last saw; the answer comes as soon as one differs
    since: dict[str, int]
    # the agent run those versions came from; another run answers at once, all topics moved
    epoch: str
    timeout: float  # seconds, 0 to 60 (default 25)


class ChangesWaitResponse(TypedDict):
    epoch: str
    versions: dict[str, int]  # every topic's version now
    moved: list[str]  # the topics of ``since`` that moved ([] after the timeout)
