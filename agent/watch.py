"""``changes.wait``: a long poll that answers when a topic the client follows moves.

The console follows the topics its panes show (``agent.changes.TOPICS``) and refreshes only
what moved, instead of re-fetching every pane on a timer. The call runs on the event loop (the
API awaits it), so a waiting console holds no worker thread.
"""

from __future__ import annotations

from lightkeeper.agent.changes import TOPICS, TopicFeed
from lightkeeper.contracts.changes import ChangesWaitRequest, ChangesWaitResponse
from lightkeeper.services import CallError, CallFn, Services, float_param

MAX_WAIT_S = 60.0


def _since(params: ChangesWaitRequest) -> dict[str, int]:
    since = params.get("since")
    if since is None:
        return {}
    if not isinstance(since, dict):
        raise CallError("since must be an object of topic: version")
    unknown = sorted(set(since) - set(TOPICS))
    if unknown:
        raise CallError(f"unknown change topics {unknown}; known: {', '.join(TOPICS)}")
    for topic, version in since.items():
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise CallError(f"since[{topic!r}] must be a version (an integer >= 0), "
                            f"got {version!r:.40}")
    return since


async def changes_wait(services: Services, params: ChangesWaitRequest) -> ChangesWaitResponse:
    feed = getattr(services, "changes", None)
    if not isinstance(feed, TopicFeed):
        raise CallError("this agent does not publish changes", 503, "unavailable")
    since = _since(params)
    timeout = float_param(params, "timeout", 25.0, 0.0, MAX_WAIT_S) or 0.0
    epoch = params.get("epoch")
    if epoch is not None and not isinstance(epoch, str):
        raise CallError("epoch must be a string")
    if epoch and epoch != feed.epoch:  # another agent run: whatever the client holds is old
        moved = list(since)
    else:
        moved = await feed.moved(since, timeout) if since else []
    return {"epoch": feed.epoch, "versions": feed.versions(), "moved": moved}


CALLS: dict[str, CallFn] = {"changes.wait": changes_wait}
