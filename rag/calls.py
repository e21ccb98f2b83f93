"""Calls the agent serves for the rag package (see lightkeeper/services.py).

``rag.users``: what each user's LightRAG directory holds (documents, entities, relations, size),
read from the files; the agent never opens LightRAG itself.
"""

from __future__ import annotations

from lightkeeper.contracts.rag import UsersRequest, UsersResponse
from lightkeeper.ids import InvalidUserId, validate_user_id
from lightkeeper.rag import inventory
from lightkeeper.services import CallError, CallFn, JobFn, Services


def users(services: Services, params: UsersRequest) -> UsersResponse:
    """params: ``user`` (optional, one user). Returns ``{"data_root", "users": [...]}``."""
    root = services.cfg.path("paths.data_root")
    user = params.get("user")
    if user:
        try:
            validate_user_id(str(user))
        except InvalidUserId as exc:
            raise CallError(str(exc)) from None
        if not (root / str(user)).is_dir():
            raise CallError(f"user {user!r} has no data under {root}", 404, "not_found")
        rows = [inventory.user_summary(root, str(user))]
    else:
        rows = inventory.users(root)
    return {"data_root": str(root), "users": rows}


CALLS: dict[str, CallFn] = {"rag.users": users}
JOBS: dict[str, JobFn] = {}
