"""/api/search's answers when the request is fine but the search is not: the index's fault is a 5xx, never a 400."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from qa.errors import CorruptIndexError, ModelError
from qa.web.api import router

DAMAGED = "index/gen-000001/meta.sqlite is damaged (database disk image is malformed). Rebuild it with `qa build`."


class Failing:
    """A library whose searches fail as a damaged index (or a model that won't load) makes them fail."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def search(self, question, k=5, highlight=False, where=None):
        raise self.error

    def article_sources(self):
        return ["Wire"]


@pytest.mark.parametrize(("error", "status"), [(CorruptIndexError(DAMAGED), 503), (ModelError("no model"), 500)])
def test_a_search_that_fails_on_the_server_side_is_a_5xx_with_the_message(error, status):
    """Review finding 20: a damaged index at search time was a 400, as if the request were bad."""
    api = FastAPI()
    api.include_router(router(Failing(error)))
    response = TestClient(api).post("/api/search", json={"question": "Who traveled to Mexico City?"})
    assert response.status_code == status and response.json() == {"error": str(error)}


def test_a_bad_question_is_still_a_400():
    api = FastAPI()
    api.include_router(router(Failing(CorruptIndexError(DAMAGED))))
    response = TestClient(api).post("/api/search", json={"question": "  ", "k": 3})
    assert response.status_code == 400 and "empty" in response.json()["error"]
