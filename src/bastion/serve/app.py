"""The HTTP edge of a :class:`~bastion.serve.gateway.Gateway`: FastAPI routes that read the
request, call the gateway and write its answer. No decision is made here.

Routes: ``POST /predict`` (bastion's HTTP-target JSON, ``predict`` scope), ``POST /feedback``
(delayed labels, ``feedback`` scope), ``GET /healthz`` (the process is up), ``GET /readyz``
(the database and the limits storage answer), ``GET /metrics`` (Prometheus; ``admin`` scope
unless the policy makes it public), ``GET /admin`` (the admin page: an admin key as a bearer
token or through its sign-in form), ``GET /admin/keys`` (``admin`` scope) and
``GET /openapi.json``. No interactive docs page: it
would load scripts from a CDN.
"""

from __future__ import annotations

import json
from typing import Any

from bastion._extras import require

require("fastapi")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import HTMLResponse, RedirectResponse, Response  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from bastion import __version__  # noqa: E402
from bastion.core.errors import BastionError  # noqa: E402
from bastion.serve.gateway import Answer, Denied, Gateway, new_request_id  # noqa: E402
from bastion.serve.keys import Scope  # noqa: E402
from bastion.serve.metrics import CONTENT_TYPE_LATEST  # noqa: E402

__all__ = ["create_app"]

_PREDICT_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "additionalProperties": False,
                    "properties": {
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "description": "A batch: one nested list of numbers per input, "
                            "of the model's input shape, within its bounds.",
                            "items": {},
                        }
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "Scores (one list per input) or labels, per the output policy.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"outputs": {"type": "array", "items": {}}},
                    }
                }
            },
        },
        "400": {"description": "The body is not a JSON object."},
        "401": {"description": "No API key, or not a valid one."},
        "403": {"description": "The key lacks the predict scope."},
        "413": {"description": "The body or the batch is over its limit."},
        "422": {"description": "The inputs are not numbers of the right shape within bounds."},
        "429": {"description": "Rate limit or query budget reached; see Retry-After."},
        "503": {"description": "Kill switch on, or the audit log cannot be written."},
    },
}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _render(answer: Answer) -> Response:
    return _json(answer.status, answer.body, answer.headers)


def _denied(exc: Denied, rid: str) -> Response:
    headers = {"X-Request-ID": rid}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return _json(exc.status, {"detail": str(exc)}, headers)


async def _read_capped(request: Request, cap: int) -> bytes | None:
    """The body, or None once it is known to pass ``cap`` (the rest is never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(gateway: Gateway) -> FastAPI:
    """The FastAPI application serving ``gateway``."""
    app = FastAPI(
        title="bastion gateway",
        version=__version__,
        description=f"A guarded model: {gateway.target.name}, answering "
        f"{gateway.output_kind.value}.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway

    def client_of(request: Request) -> str | None:
        return request.client.host if request.client else None

    @app.post("/predict", openapi_extra=_PREDICT_SCHEMA, summary="Predict a batch")
    async def predict(request: Request) -> Response:
        body = await _read_capped(request, gateway.input_spec.max_body_bytes)
        answer = await run_in_threadpool(
            gateway.predict,
            request.headers.get("authorization"),
            body,
            request_id=new_request_id(),
            client=client_of(request),
        )
        return _render(answer)

    @app.post("/feedback", summary="Delayed labels for answered requests (feedback scope)")
    async def feedback(request: Request) -> Response:
        body = await _read_capped(request, gateway.input_spec.max_body_bytes)
        answer = await run_in_threadpool(
            gateway.feedback,
            request.headers.get("authorization"),
            body,
            request_id=new_request_id(),
            client=client_of(request),
        )
        return _render(answer)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> Response:
        return _json(200, {"status": "ok"}, {"X-Request-ID": new_request_id()})

    @app.get("/readyz", summary="Readiness: database and limits storage reachable")
    async def readyz() -> Response:
        checks = await run_in_threadpool(gateway.ready)
        ok = all(checks.values())
        body = {"status": "ready" if ok else "not ready", "checks": dict(checks)}
        return _json(200 if ok else 503, body, {"X-Request-ID": new_request_id()})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        rid = new_request_id()
        if not gateway.policy.auth.public_metrics:
            try:
                await run_in_threadpool(
                    gateway.authorize, request.headers.get("authorization"), Scope.ADMIN
                )
            except Denied as exc:
                return _denied(exc, rid)
        await run_in_threadpool(gateway.refresh_metrics)
        return Response(
            gateway.metrics.render(),
            media_type=CONTENT_TYPE_LATEST,
            headers={"X-Request-ID": rid},
        )

    from bastion.serve import admin as admin_page

    sessions = admin_page.Sessions()
    html_headers = {
        "Content-Security-Policy": admin_page.CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    def page(html: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html, status_code=status, headers=dict(html_headers))

    def signed_in(request: Request) -> Any:
        """The admin key of the request's bearer token or session; None if neither."""
        if request.headers.get("authorization"):
            try:
                return gateway.authorize(request.headers.get("authorization"), Scope.ADMIN)
            except Denied:
                return None
        key_id = sessions.key_id(request.cookies.get(admin_page.COOKIE))
        if key_id is None:
            return None
        try:
            key = gateway.keys.find(key_id)
        except BastionError:
            return None
        return key if key.allows(Scope.ADMIN) else None

    @app.get("/admin", summary="The admin page (HTML; admin scope)", response_class=HTMLResponse)
    async def admin_home(request: Request) -> Response:
        key = await run_in_threadpool(signed_in, request)
        if key is None:
            return page(admin_page.render_login(), 401)
        html = await run_in_threadpool(admin_page.render_dashboard, gateway, key)
        return page(html)

    @app.post("/admin/login", summary="Sign in to the admin page with an admin key")
    async def admin_login(request: Request) -> Response:
        from urllib.parse import parse_qs

        body = await _read_capped(request, 4096)
        fields = parse_qs((body or b"").decode("utf-8", "replace"))
        secret = (fields.get("key") or [""])[0].strip()
        try:
            key = await run_in_threadpool(gateway.authorize, f"Bearer {secret}", Scope.ADMIN)
        except Denied as exc:
            message = (
                "that key does not have the admin scope"
                if exc.status == 403
                else "that is not a valid admin key"
            )
            return page(admin_page.render_login(message), exc.status)
        response = RedirectResponse("/admin", status_code=303, headers=dict(html_headers))
        response.set_cookie(
            admin_page.COOKIE,
            sessions.open(key),
            max_age=admin_page.SESSION_SECONDS,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/admin/logout", summary="Sign out of the admin page")
    async def admin_logout(request: Request) -> Response:
        sessions.close(request.cookies.get(admin_page.COOKIE))
        response = RedirectResponse("/admin", status_code=303, headers=dict(html_headers))
        response.delete_cookie(admin_page.COOKIE, path="/admin")
        return response

    @app.get("/admin/keys", summary="The API keys and their state (admin scope)")
    async def admin_keys(request: Request) -> Response:
        rid = new_request_id()
        try:
            await run_in_threadpool(
                gateway.authorize, request.headers.get("authorization"), Scope.ADMIN
            )
        except Denied as exc:
            return _denied(exc, rid)
        keys = await run_in_threadpool(gateway.keys.list)
        body = [
            {
                "key_id": k.key_id,
                "name": k.name,
                "scopes": sorted(s.value for s in k.scopes),
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
                "replaced_by": k.replaced_by,
            }
            for k in keys
        ]
        return _json(200, {"keys": body}, {"X-Request-ID": rid})

    return app
