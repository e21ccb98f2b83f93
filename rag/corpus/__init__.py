"""The shipped demo corpus: 36 short original documents about a fictional lighthouse service
(the Saltmere Archipelago), grouped in four topics, and questions about them.

Written for lightkeeper's demo and bench workloads; it is data, not documentation.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Document:
    id: str
    topic: str
    title: str
    text: str

    @property
    def file_path(self) -> str:
        return f"saltmere/{self.id}-{self.title.lower().replace(' ', '-')}.txt"


@functools.cache
def documents() -> tuple[Document, ...]:
    data = json.loads((HERE / "docs.json").read_text(encoding="utf-8"))
    return tuple(Document(d["id"], d["topic"], d["title"], d["text"])
                 for d in data["documents"])


@functools.cache
def topics() -> dict[str, str]:
    return dict(json.loads((HERE / "docs.json").read_text(encoding="utf-8"))["topics"])


@functools.cache
def questions() -> tuple[str, ...]:
    data = json.loads((HERE / "questions.json").read_text(encoding="utf-8"))
    return tuple(data["questions"])


def by_topic(topic: str) -> list[Document]:
    return [d for d in documents() if d.topic == topic]
