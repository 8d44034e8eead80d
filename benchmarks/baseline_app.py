"""The baseline of ``api_read``: a bare FastAPI app with one sync endpoint.

Same route shape as ``GET /api/practitioners/{id}`` and the same JSON body (captured
from one real MedAlliance call and handed over in a file), but no middleware, no
authentication, no database and no audit. Served with
``uvicorn --factory benchmarks.baseline_app:create_app``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI

BODY_FILE_ENV = "MEDALLIANCE_BENCH_BASELINE_BODY"


def create_app(body_file: str | None = None) -> FastAPI:
    path = body_file or os.environ.get(BODY_FILE_ENV)
    if not path:
        raise RuntimeError(f"Set {BODY_FILE_ENV} to the JSON file the endpoint returns.")
    body: dict[str, Any] = json.loads(Path(path).read_bytes())

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/api/practitioners/{practitioner_id}")
    def get_practitioner(practitioner_id: uuid.UUID) -> dict[str, Any]:
        return body

    return app
