"""What the rag package serves (rag/calls.py)."""

from typing import TypedDict


class UsersRequest(TypedDict, total=False):
    user: str | None  # one user (404 when it has no directory); all users without


class UserSummary(TypedDict):
    """What a user's LightRAG directory holds, read from its files."""

    user: str
    documents: int
    documents_by_status: dict[str, int]
    entities: int
    relations: int
    size_bytes: int
    files: int
    modified: float | None


class UsersResponse(TypedDict):
    data_root: str
    users: list[UserSummary]
