"""The request and response types of every call and job the agent serves.

(No ``from __future__ import annotations`` here: Python 3.11 reads ``NotRequired`` only from
evaluated annotations when it computes a TypedDict's required keys.)

One module per package that serves them (``agent``, ``alerts``, ``rag``, ``tuning``,
``backup``, ``zones``). They sit in core, below every package, because both sides of the API
use them: the package's ``calls.py`` annotates its handlers with them (``def call_stats(
services: Services, params: StatsRequest) -> StatsResponse``) and the CLI and the console,
which may import only core, read the answers through them instead of guessing field names.
``tests/test_contracts.py`` checks that every registered handler is annotated with these types
and that real answers carry exactly the declared keys.

Requests are ``total=False`` except for the parameters a call cannot do without (it answers
400 when they are missing). In responses, ``NotRequired`` marks a key that only some answers
carry; every other key is always present (its value may be None where the type says so).
"""
