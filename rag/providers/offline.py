"""The offline provider: a deterministic stand-in for the LLM and the embedding model.

**For demos and tests, not for answer quality.** It answers LightRAG's prompts by recognising
them and applying simple text rules, so real LightRAG working directories (chunks, a knowledge
graph, vector stores, an LLM cache) are built and queried without any model or network:

- entity extraction: capitalised phrases become entities (a type guessed from a few words such
  as *Guild* or *Harbor*), two entities in the same sentence become a relation; the reply uses
  LightRAG's record format (``entity<|#|>...``, ``relation<|#|>...``, ``<|COMPLETE|>``);
- keyword extraction: the JSON object LightRAG expects (capitalised phrases as low-level,
  other content words as high-level keywords);
- description summaries: the distinct descriptions joined and cut to length;
- answers: extractive, the sentences of the retrieved context that share the most words with
  the question, with the references LightRAG listed.

The embedder hashes words and word pairs into a fixed dimension and normalises. It mixes in a
constant component, so any two texts have a cosine of at least about 0.36 and ranking is by
shared words: LightRAG's cosine threshold therefore filters nothing in this mode.

Optional simulated latency (``rag.simulate_*``) makes a workload behave like a deployment whose
time is spent in the model: a fixed delay per LLM call plus a delay per output token, and a
delay per embedding call.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from lightrag.prompt import PROMPTS

TUPLE = PROMPTS["DEFAULT_TUPLE_DELIMITER"]
COMPLETE = PROMPTS["DEFAULT_COMPLETION_DELIMITER"]

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves out over
own same she should so some such than that the their theirs them themselves then there these they
this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yourself yourselves tell describe explain does did many much
one two three every each anyone someone something anything there's it's what's
""".split())

# Capitalised words that start sentences without naming anything.
LEADING_NOISE = frozenset("""
The A An In On At By For From To Of And But Or If When While After Before During Since Each Every
This That These Those It Its Their There Here Some Many Most All Both Once Then Today Yesterday
Who What Where Why How Which Whose Over Under Between Among Unlike Like As With Without Although
Because However Meanwhile Later Every Most Few Several Nobody Everyone
""".split())

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n{2,}")
_PHRASE = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:of|the|de|la|van|von)\s+[A-Z][\w'’-]*|\s+[A-Z][\w'’-]*)*")
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
_LIMITS = re.compile(r"at most (\d+) total rows and at most (\d+) entity rows")

_TYPE_WORDS = {
    "Organization": ("guild", "council", "company", "society", "institute", "bureau", "office",
                     "works", "union", "league", "consortium", "academy", "college", "trust",
                     "cooperative", "brotherhood", "order", "committee", "board", "foundry"),
    "Location": ("harbor", "harbour", "bay", "island", "isle", "valley", "street", "market",
                 "square", "port", "city", "reef", "cape", "lighthouse", "quarter", "point",
                 "cove", "hill", "river", "bridge", "station", "tower", "strait", "sound",
                 "head", "lane", "pier", "dock", "archipelago", "shoal", "light"),
    "Event": ("festival", "storm", "treaty", "fair", "race", "flood", "gale", "war", "night",
              "regatta", "blackout", "fire", "wreck", "accord", "season"),
    "Artifact": ("lens", "lamp", "engine", "ship", "vessel", "boat", "ledger", "chart", "bell",
                 "signal", "beacon", "horn", "register", "manual", "map", "log"),
}
_PERSON_TITLES = ("captain", "keeper", "mayor", "doctor", "dr", "professor", "elder", "master",
                  "mistress", "warden", "pilot", "sister", "brother", "lady", "lord", "sir",
                  "chair", "clerk", "instructor", "foreman", "apprentice", "astronomer",
                  "director", "harbourmaster", "harbormaster", "forecaster", "engineer",
                  "miller", "assistant")
_PLACE_FIRST = ("port", "cape", "mount", "lake", "fort", "saint", "st")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2]


def phrases(sentence: str) -> list[str]:
    """Capitalised phrases of a sentence, with sentence-start noise words removed."""
    found: list[str] = []
    for m in _PHRASE.finditer(sentence):
        words = m.group(0).split()
        while words and words[0] in LEADING_NOISE:
            words = words[1:]
        while words and words[-1].lower() in ("of", "the", "de", "la", "van", "von"):
            words = words[:-1]
        if not words:
            continue
        if len(words) >= 3 and words[0].lower() in _PERSON_TITLES:
            words = words[1:]  # "Keeper Mara Voss" and "Mara Voss" are one person
        name = " ".join(words).strip("'’-")
        if len(name) < 3 or name.upper() == name and len(name) < 4:
            continue
        if name not in found:
            found.append(name)
    return found


def entity_type(name: str) -> str:
    words = [w.lower().strip("'’") for w in name.split()]
    if words and words[0] in _PERSON_TITLES:
        return "Person"
    if words and words[0] in _PLACE_FIRST:
        return "Location"
    for etype, cues in _TYPE_WORDS.items():
        if words and words[-1] in cues:
            return etype
    if len(words) == 2 and all(w.isalpha() for w in words):
        return "Person"
    return "Concept"


def _clean(text: str, limit: int = 240) -> str:
    text = " ".join(text.replace(TUPLE, " ").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def extract_records(text: str, max_total: int = 100, max_entities: int = 60) -> str:
    """Entities and relations of ``text`` in LightRAG's record format."""
    sents = sentences(text)
    entities: dict[str, tuple[str, str]] = {}
    relations: dict[tuple[str, str], tuple[str, str]] = {}
    for sent in sents:
        names = [n for n in phrases(sent)]
        for n in names:
            if n not in entities and len(entities) < max_entities:
                entities[n] = (entity_type(n), _clean(sent))
        names = [n for n in names if n in entities]
        kws = [w for w in content_words(sent)
               if not any(w in n.lower().split() for n in names)][:2]
        keywords = ", ".join(kws) if kws else "related"
        pairs = 0
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                key = (a, b) if a < b else (b, a)
                if key not in relations and pairs < 3:
                    relations[key] = (keywords, _clean(sent))
                    pairs += 1
    lines: list[str] = []
    for name, (etype, desc) in entities.items():
        if len(lines) >= max_total:
            break
        lines.append(f"entity{TUPLE}{name}{TUPLE}{etype}{TUPLE}{desc}")
    for (a, b), (kw, desc) in relations.items():
        if len(lines) >= max_total:
            break
        lines.append(f"relation{TUPLE}{a}{TUPLE}{b}{TUPLE}{kw}{TUPLE}{desc}")
    lines.append(COMPLETE)
    return "\n".join(lines)


def keywords_json(query: str) -> str:
    low = phrases(query)
    low_words = {w.lower() for n in low for w in n.split()}
    high = [w for w in dict.fromkeys(content_words(query)) if w not in low_words][:6]
    if not low:
        low = high[:3]
    if not high:
        high = [w for w in dict.fromkeys(content_words(query))][:3] or \
            [n.lower() for n in low[:2]]
    return json.dumps({"high_level_keywords": high, "low_level_keywords": low[:6]})


def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    if i < 0:
        return None
    i += len(start)
    j = text.find(end, i)
    return text[i:] if j < 0 else text[i:j]


def _json_blocks(text: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for block in re.findall(r"```json\n(.*?)\n```", text, flags=re.S):
        for line in block.splitlines():
            line = line.strip().rstrip(",")
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    items.append(obj)
    return items


def extractive_answer(query: str, context: str, max_sentences: int = 3) -> str:
    """The context sentences that share the most content words with ``query``."""
    items = _json_blocks(context)
    qwords = set(content_words(query))
    candidates: list[tuple[int, int, str, str]] = []  # (-score, order, sentence, ref)
    order = 0
    for item in items:
        text = item.get("content") or item.get("description") or ""
        ref = str(item.get("reference_id") or "")
        for sent in sentences(str(text)):
            score = len(qwords & set(content_words(sent)))
            candidates.append((-score, order, _clean(sent, 400), ref))
            order += 1
    if not candidates:
        return ("The knowledge base has no context for this question (offline provider: "
                "answers are extracted from retrieved context only).")
    candidates.sort()
    chosen: list[tuple[str, str]] = []
    for _, _, sent, ref in candidates:
        if sent not in (c[0] for c in chosen):
            chosen.append((sent, ref))
        if len(chosen) >= max_sentences:
            break
    refs_block = _between(context, "Reference Document List", "\n```\n\n") or ""
    ref_lines = [line.strip() for line in refs_block.splitlines() if line.strip().startswith("[")]
    used = {r for _, r in chosen if r}
    body = " ".join(s for s, _ in chosen)
    refs = [line for line in ref_lines if line[1:].split("]", 1)[0] in used]
    out = body
    if refs:
        out += "\n\n### References\n\n" + "\n".join(f"- {line}" for line in refs[:5])
    return out


def summary(prompt: str, limit_chars: int = 1200) -> str:
    name = (_between(prompt, "Name: ", "\n") or "").strip()
    block = _between(prompt, "Description List:\n\n```\n", "\n```") or ""
    parts: list[str] = []
    for line in block.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
            desc = str(obj.get("description", "")) if isinstance(obj, dict) else str(obj)
        except ValueError:
            desc = line
        if desc and desc not in parts:
            parts.append(desc)
    text = " ".join(parts) or name
    return _clean(text, limit_chars)


@dataclass
class Latency:
    llm_ms: float = 0.0
    llm_ms_per_token: float = 0.0
    embed_ms: float = 0.0


class OfflineLLM:
    """An ``llm_model_func`` for LightRAG that answers its prompts without a model."""

    def __init__(self, latency: Latency | None = None) -> None:
        self.latency = latency or Latency()

    def respond(self, prompt: str, system_prompt: str | None) -> str:
        system = system_prompt or ""
        if "Based on the last extraction task" in prompt:
            return COMPLETE  # nothing was missed: the first pass is deterministic
        if "---Input Text---" in prompt and "Extract entities" in prompt:
            text = _between(prompt, "---Input Text---\n```\n", "\n```\n\n---Output---") or ""
            limits = _LIMITS.search(prompt)
            total, ents = (int(limits.group(1)), int(limits.group(2))) if limits else (100, 60)
            return extract_records(text, total, ents)
        if "expert keyword extractor" in prompt or "expert keyword extractor" in system:
            query = (_between(prompt + system, "User Query: ", "\n") or "").strip()
            return keywords_json(query)
        if "Description List:" in prompt and "synthesize" in prompt:
            return summary(prompt)
        if "---Context---" in system:
            return extractive_answer(prompt, system.split("---Context---", 1)[1])
        return ("The offline provider answers only from retrieved context; this request had "
                "none.")

    async def __call__(self, prompt: str, system_prompt: str | None = None,
                       history_messages: list[dict[str, Any]] | None = None,
                       **kwargs: Any) -> str:
        reply = self.respond(prompt, system_prompt)
        lat = self.latency
        if lat.llm_ms or lat.llm_ms_per_token:
            delay = lat.llm_ms + lat.llm_ms_per_token * (len(reply) / 4)
            await asyncio.sleep(delay / 1000.0)
        return reply


def _bucket(token: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(token.encode())
    return (h >> 1) % dim, (1.0 if h & 1 else -1.0)


class HashEmbedder:
    """A deterministic bag-of-words embedding: words and word pairs hashed into ``dim``."""

    def __init__(self, dim: int = 256, latency: Latency | None = None) -> None:
        if dim < 8:
            raise ValueError(f"embedding dimension {dim} too small for the offline embedder")
        self.dim = dim
        self.latency = latency or Latency()

    def embed_one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        words = [w.rstrip("s") if len(w) > 4 else w for w in content_words(text)]
        for w in words:
            i, s = _bucket(w, self.dim - 1)
            vec[i] += s
        for a, b in zip(words, words[1:], strict=False):
            i, s = _bucket(a + " " + b, self.dim - 1)
            vec[i] += 0.5 * s
        norm = float(np.linalg.norm(vec))
        if norm > 0:
            vec *= 0.8 / norm
        vec[self.dim - 1] = 0.6  # the constant component (see module docstring)
        return vec / float(np.linalg.norm(vec))

    async def __call__(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        if self.latency.embed_ms:
            await asyncio.sleep(self.latency.embed_ms / 1000.0)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.embed_one(t) for t in texts])
