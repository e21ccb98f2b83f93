"""How lightkeeper's file watchers (watchfiles) wake up.

A watcher's thread looks at its stop event every ``STEP_MS`` milliseconds. watchfiles' default,
50 ms, woke every watcher twenty times a second: most of an idle agent's CPU, and a steady cost in
every served LightRAG process. A stop waits at most this long, which is why the agent does not
join the user-directory watcher's thread.
"""

from __future__ import annotations

STEP_MS = 500
