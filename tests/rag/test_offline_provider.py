"""The offline provider answers LightRAG's real prompts in the formats LightRAG parses."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from lightrag.prompt import PROMPTS

from lightkeeper.rag.providers.offline import (
    COMPLETE,
    TUPLE,
    HashEmbedder,
    OfflineLLM,
    extract_records,
    extractive_answer,
    keywords_json,
)

TEXT = ("Keeper Mara Voss tends Gull Point Light on Verran Island. "
        "The Lensgrinders Guild built the great lens for Gull Point Light.")


def test_delimiters_are_lightrags():
    assert TUPLE == PROMPTS["DEFAULT_TUPLE_DELIMITER"] == "<|#|>"
    assert COMPLETE == PROMPTS["DEFAULT_COMPLETION_DELIMITER"] == "<|COMPLETE|>"


def test_extraction_records_have_lightrags_shape():
    out = extract_records(TEXT)
    lines = out.splitlines()
    assert lines[-1] == COMPLETE
    entities = [line.split(TUPLE) for line in lines if line.startswith("entity")]
    relations = [line.split(TUPLE) for line in lines if line.startswith("relation")]
    assert all(len(e) == 4 for e in entities) and all(len(r) == 5 for r in relations)
    names = {e[1] for e in entities}
    assert {"Mara Voss", "Gull Point Light", "Verran Island", "Lensgrinders Guild"} <= names
    pairs = {frozenset((r[1], r[2])) for r in relations}
    assert frozenset(("Mara Voss", "Gull Point Light")) in pairs
    # relations only between extracted entities; deterministic
    assert all(r[1] in names and r[2] in names for r in relations)
    assert extract_records(TEXT) == out


def test_extraction_respects_row_limits():
    out = extract_records(TEXT, max_total=2, max_entities=1)
    rows = [line for line in out.splitlines() if line != COMPLETE]
    assert len(rows) <= 2
    assert sum(1 for r in rows if r.startswith("entity")) <= 1


def test_answers_lightrag_extraction_prompt_and_gleaning():
    system = PROMPTS["entity_extraction_system_prompt"].replace("{tuple_delimiter}", TUPLE)
    user = PROMPTS["entity_extraction_user_prompt"].format(
        max_total_records=40, max_entity_records=20, completion_delimiter=COMPLETE,
        language="English", heading_context_block="", input_text=TEXT)
    llm = OfflineLLM()
    reply = asyncio.run(llm(user, system_prompt=system))
    assert "entity<|#|>Mara Voss<|#|>Person" in reply and reply.endswith(COMPLETE)
    glean = PROMPTS["entity_continue_extraction_user_prompt"].format(
        max_total_records=40, max_entity_records=20, completion_delimiter=COMPLETE,
        language="English")
    assert asyncio.run(llm(glean, system_prompt=system)) == COMPLETE


def test_keywords_prompt_gets_the_json_lightrag_expects():
    prompt = PROMPTS["keywords_extraction"].format(
        examples="", query="Who commands the ferry Marigold?", language="English")
    reply = json.loads(asyncio.run(OfflineLLM()(prompt)))
    assert set(reply) == {"high_level_keywords", "low_level_keywords"}
    assert "Marigold" in reply["low_level_keywords"]
    assert reply["high_level_keywords"]
    assert json.loads(keywords_json("Who leads the Lensgrinders Guild?"))["high_level_keywords"]


def test_extractive_answer_picks_the_relevant_sentence():
    context = ("Document Chunks:\n\n```json\n"
               + json.dumps({"reference_id": "1", "content": "The sky was grey. "
                             "Captain Ilya Brenn commands the ferry Marigold."}) + "\n"
               + json.dumps({"reference_id": "2", "content": "Bread is baked at dawn."})
               + "\n```\n\nReference Document List:\n\n```\n[1] ferries.txt\n[2] bread.txt\n```\n\n")
    answer = extractive_answer("Who commands the ferry Marigold?", context, max_sentences=1)
    assert answer.startswith("Captain Ilya Brenn commands the ferry Marigold.")
    assert "[1] ferries.txt" in answer and "bread" not in answer


def test_embedder_is_deterministic_normalised_and_ranks_by_shared_words():
    emb = HashEmbedder(64)
    vecs = asyncio.run(emb(["ferry Marigold captain", "ferry Marigold captain",
                            "the ferry Marigold sails", "bread baked dawn"]))
    assert vecs.shape == (4, 64)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs[0], vecs[1])
    assert float(vecs[0] @ vecs[2]) > float(vecs[0] @ vecs[3])
