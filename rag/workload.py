"""Workloads on the shipped corpus: demo seeding, the demo's gentle background traffic, bench.

Everything is deterministic for a given seed: which documents, which questions, which modes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightkeeper.logs import get_logger
from lightkeeper.rag import corpus
from lightkeeper.rag.runtime import MODES, RagRuntime

log = get_logger("workload")

QUERY_MODES = tuple(m for m in MODES if m != "bypass")

# Demo users and the topics their knowledge bases are built from. Their ids have no '-':
# LightRAG's server keeps only letters, digits and '_' in a workspace name.
DEMO_USERS: dict[str, tuple[str, ...]] = {
    "harbour_office": ("ferries", "weather"),
    "keepers_school": ("keepers", "weather"),
    "lens_workshop": ("lenses", "keepers"),
    "archivist": ("keepers", "lenses", "ferries", "weather"),
}
# The demo users served by `lightkeeper serve` (their workload goes through the REST API);
# the others use the library runtime.
SERVED_USERS: tuple[str, ...] = ("harbour_office", "keepers_school")

_BULLETIN_SUBJECTS = ("Gull Point Light", "Tarn Rock Light", "Selby Cove Light", "the Narrows",
                      "Port Aubel", "the ferry Marigold", "the steamer Heron",
                      "the Ashgrove Glassworks", "the Lensgrinders Guild", "Brannock Mill")
_BULLETIN_PEOPLE = ("Keeper Mara Voss", "Keeper Jonas Quill", "Pilot Nadia Orsk",
                    "Captain Ilya Brenn", "Forecaster Elias Mund", "Master Tobias Renn",
                    "Captain Lotte Weir", "Engineer Rosalind Hale")
_BULLETIN_EVENTS = ("reported a broken storm shutter", "logged a fresh north-west gale",
                    "asked for two barrels of lamp fuel", "sighted drifting ice",
                    "repaired a cracked prism", "counted forty fishing boats at dawn",
                    "measured the highest tide of the season", "found a leak in the oil store")


def bulletin(n: int) -> tuple[str, str]:
    """A deterministic short 'news bulletin' document (text, file path) numbered ``n``."""
    rnd = random.Random(n)
    subject = rnd.choice(_BULLETIN_SUBJECTS)
    person = rnd.choice(_BULLETIN_PEOPLE)
    event = rnd.choice(_BULLETIN_EVENTS)
    other = rnd.choice(_BULLETIN_PEOPLE)
    text = (f"Bulletin {n}. {person} {event} at {subject}. "
            f"The Weather Office forwarded the report to the Lighthouse Board. "
            f"{other} confirmed the report from {rnd.choice(_BULLETIN_SUBJECTS)} "
            f"on day {n % 28 + 1} of the month.")
    return text, f"bulletins/bulletin-{n:05d}.txt"


def documents_for(topics: tuple[str, ...]) -> list[corpus.Document]:
    return [d for d in corpus.documents() if d.topic in topics]


def bench_documents(k: int) -> list[tuple[str, str]]:
    """``k`` documents: the corpus first, then bulletins."""
    docs = [(d.text, d.file_path) for d in corpus.documents()][:k]
    n = 0
    while len(docs) < k:
        docs.append(bulletin(10_000 + n))
        n += 1
    return docs


# -- demo ---------------------------------------------------------------------------------
async def seed_demo(rt: RagRuntime, batch: int = 3,
                    progress: Callable[[str, int, int], None] | None = None,
                    users: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Insert each demo user's documents (in small batches, so there are several operations).
    Documents already present are skipped by LightRAG (ids come from the content)."""
    summary: dict[str, Any] = {}
    for user, topics in DEMO_USERS.items():
        if users is not None and user not in users:
            continue
        docs = documents_for(topics)
        failed: list[str] = []
        for i in range(0, len(docs), batch):
            part = docs[i:i + batch]
            res = await rt.insert(user, [d.text for d in part], [d.file_path for d in part])
            failed += res["failed"]
            if progress:
                progress(user, min(i + batch, len(docs)), len(docs))
        summary[user] = {"documents": len(docs), "failed": failed}
    return summary


async def first_queries(rt: RagRuntime, users: tuple[str, ...] | None = None) -> int:
    """One question per user and mode, so every latency chart has a point right away."""
    qs = corpus.questions()
    n = 0
    for i, user in enumerate(DEMO_USERS):
        if users is not None and user not in users:
            continue
        for j, mode in enumerate(QUERY_MODES):
            await rt.query(user, qs[(i * 5 + j) % len(qs)], mode)
            n += 1
    return n


async def background(rt: RagRuntime, stop: asyncio.Event, rate: float = 1.0,
                     seed: int = 7, served: dict[str, Any] | None = None,
                     users: list[str] | None = None) -> None:
    """A gentle, endless mix for the demo: mostly queries, some inserts, a few deletes.

    ``rate`` is the mean number of operations per second (Poisson arrivals). A user in
    ``served`` (user -> ``rest_workload.Served``) is driven over its server's REST API; the
    others (of ``users``, default all demo users) through the library runtime ``rt``."""
    served = served or {}
    rnd = random.Random(seed)
    users = list(users if users is not None else DEMO_USERS)
    questions = corpus.questions()
    inserted: dict[str, list[str]] = {u: [] for u in users}
    n = int(time.time()) % 100_000
    while not stop.is_set():
        user = rnd.choice(users)
        roll = rnd.random()
        srv = served.get(user)
        try:
            if roll < 0.08:
                n += 1
                text, path = bulletin(n)
                if srv is not None:
                    await srv.insert([text], [path.rsplit("/", 1)[-1]])
                    inserted[user].append(path.rsplit("/", 1)[-1])
                else:
                    res = await rt.insert(user, [text], [path])
                    inserted[user] += res["ids"]
            elif roll < 0.10 and len(inserted[user]) > 3:
                if srv is not None:
                    if await srv.delete_named(inserted[user][0]):
                        inserted[user].pop(0)
                else:
                    await rt.delete(user, inserted[user].pop(0))
            elif srv is not None:
                await srv.query(rnd.choice(questions), rnd.choice(QUERY_MODES))
            else:
                await rt.query(user, rnd.choice(questions), rnd.choice(QUERY_MODES))
        except Exception as exc:  # noqa: BLE001  recorded in the spool as an error; the demo keeps going
            log.debug("workload.op_failed", user=user, error=f"{type(exc).__name__}: {exc}")
        try:
            await asyncio.wait_for(stop.wait(), timeout=rnd.expovariate(rate))
        except TimeoutError:
            pass


# -- bench --------------------------------------------------------------------------------
def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class BenchResult:
    run_id: str
    params: dict[str, Any]
    timings: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, seconds: float, ok: bool) -> None:
        self.timings.setdefault(key, []).append(seconds)
        if not ok:
            self.errors[key] = self.errors.get(key, 0) + 1

    def summary(self) -> dict[str, Any]:
        ops: dict[str, Any] = {}
        for key in sorted(self.timings):
            values = sorted(self.timings[key])
            ops[key] = {
                "count": len(values),
                "errors": self.errors.get(key, 0),
                "p50_s": quantile(values, 0.50),
                "p95_s": quantile(values, 0.95),
                "p99_s": quantile(values, 0.99),
                "mean_s": sum(values) / len(values),
                "max_s": values[-1],
            }
        ingest_n = sum(len(v) for k, v in self.timings.items() if k == "insert")
        query_n = sum(len(v) for k, v in self.timings.items() if k.startswith("query"))
        ingest_s = self.phases.get("ingest_s", 0.0)
        query_s = self.phases.get("query_s", 0.0)
        return {
            "run_id": self.run_id,
            "ops": ops,
            "ingest_s": ingest_s,
            "query_s": query_s,
            "ingest_docs_per_s": (self.params["docs"] / ingest_s) if ingest_s else None,
            "ingest_ops_per_s": (ingest_n / ingest_s) if ingest_s else None,
            "queries_per_s": (query_n / query_s) if query_s else None,
        }


async def run_bench(rt: RagRuntime, result: BenchResult, *, docs: int, queries: int,
                    concurrency: int, users: int, modes: tuple[str, ...], seed: int,
                    batch: int = 1) -> BenchResult:
    """Ingest ``docs`` documents spread over ``users`` users, then ``queries`` queries across
    ``modes``, each phase with ``concurrency`` operations in flight. Latencies are measured
    here, around each runtime call."""
    names = [f"bench-{i}" for i in range(users)]
    rnd = random.Random(seed)
    all_docs = bench_documents(docs)
    work: list[tuple[str, list[tuple[str, str]]]] = []
    for i in range(0, len(all_docs), batch):
        work.append((names[(i // batch) % users], all_docs[i:i + batch]))

    async def run_phase(items: list[Any], fn: Callable[[Any], Any]) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)

        async def worker() -> None:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await fn(item)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))

    async def do_insert(item: tuple[str, list[tuple[str, str]]]) -> None:
        user, part = item
        t0 = time.perf_counter()
        ok = True
        try:
            res = await rt.insert(user, [t for t, _ in part], [p for _, p in part])
            ok = not res["failed"]
        except Exception:  # noqa: BLE001  the bench counts it as a failed insert (spool records the error)
            ok = False
        result.add("insert", time.perf_counter() - t0, ok)

    qs = corpus.questions()
    query_items = [(names[rnd.randrange(users)], rnd.choice(qs), modes[i % len(modes)])
                   for i in range(queries)]

    async def do_query(item: tuple[str, str, str]) -> None:
        user, question, mode = item
        t0 = time.perf_counter()
        ok = True
        try:
            await rt.query(user, question, mode)
        except Exception:  # noqa: BLE001  the bench counts it as a failed query (spool records the error)
            ok = False
        result.add(f"query:{mode}", time.perf_counter() - t0, ok)

    t0 = time.perf_counter()
    await run_phase(work, do_insert)
    result.phases["ingest_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    await run_phase(query_items, do_query)
    result.phases["query_s"] = time.perf_counter() - t0
    return result
