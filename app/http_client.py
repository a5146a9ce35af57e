"""Service-to-service HTTP: `ServiceHTTPClient` (one pooled client per upstream) and `ServiceClientManager`.

Every call runs inside an overall deadline (the remaining time goes to the upstream in `X-Faas-Deadline-Ms`),
each try inside a per-try timeout, and each try through the upstream's `Breaker`. Retries use `backoff`'s
exponential generator with full jitter, honour `Retry-After` (seconds or HTTP date, capped), happen only for
connect errors and 408/429/502/503/504, only for GET/HEAD/OPTIONS/PUT/DELETE or a request with an
`Idempotency-Key`, and only while the retry budget allows. Every try is signed afresh (app.signing) when a secret
is set: a new timestamp and nonce, so the upstream never takes a retry for a replay.
HTTP answers come back as responses (`raise_for_problem` turns a problem into its exception); transport failures,
an open breaker and a passed deadline raise `ServiceError`s, so a caller sees the same errors as in direct mode.
Their details name the service and the request id, never the upstream's address: that goes to the log.

What the breaker counts. The breaker stands for one question, "can this deployment serve anyone?", so that one
tenant's requests can never close it for the others. A try counts as a failure of the deployment when:
  - it could not connect (refused, unreachable, connect timeout);
  - no answer came within the per-try timeout (`FAAS_<NAME>_CLIENT_TIMEOUT`), or the connection broke before or
    during the answer;
  - the answer is 502, 503 or 504 and is not one of our problem documents (`application/problem+json`): a proxy,
    load balancer or the server in front of the app answered for a deployment that is down, missing or overloaded;
  - the answer is a 503 problem marked `X-Faas-Unavailable`: the deployment says it cannot serve anything now
    (its database is down, its memory of signed calls is full; `DeploymentUnavailable`).
Every other answer proves the deployment up and counts as a success: any 2xx-4xx, a 500 problem (an unexpected
error while handling that one request, e.g. its content broke a template), and a 502/503/504 problem without the
marker (something beyond the deployment failed for that request: an LLM provider, a third deployment, a breaker
of its own, the request's deadline). A try cut short by the call's own deadline, which is shorter than the per-try
timeout, decides nothing: a caller in a hurry says nothing about the deployment.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import backoff
import httpx
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from app import codec, context
from app.breaker import Breaker, CircuitOpen
from app.client_metrics import ClientMetrics
from app.errors import (
    PROBLEM_BASE,
    PROBLEM_MEDIA_TYPE,
    UNAVAILABLE_HEADER,
    ServiceError,
    Unavailable,
    UpstreamFailed,
    UpstreamTimeout,
    error_from_problem,
    with_request_id,
)
from app.http_transport import pooled_transport
from app.settings import ClientSettings, Secret, Settings
from app.signing import DEADLINE_HEADER, IDEMPOTENCY_HEADER, sign

log = logging.getLogger("faas.client")
_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def deployment_failed(response: httpx.Response) -> bool:
    """Whether an answer says the deployment itself is down or unavailable (see the module docstring)."""
    if response.status_code not in UNAVAILABLE_STATUSES:
        return False
    if UNAVAILABLE_HEADER in response.headers:
        return True
    media_type: str = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type != PROBLEM_MEDIA_TYPE


def without_credentials(text: str) -> str:
    """`text` with any `user:password@` of a URL in it masked: /health/ready is public, a URL's userinfo is not."""
    return _USERINFO.sub(r"\1***@", text)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class RetryBudget:
    """Retries allowed over a sliding window: `floor + ratio * requests`, so an outage cannot multiply load."""

    def __init__(self, ratio: float = 0.2, *, floor: int = 10, window: float = 10.0) -> None:
        self.ratio, self.floor, self.window = ratio, floor, window
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _prune(self, now: float) -> None:
        for q in (self._requests, self._retries):
            while q and q[0] <= now - self.window:
                q.popleft()

    def record_request(self) -> None:
        now = time.monotonic()
        self._prune(now)
        self._requests.append(now)

    def try_spend(self) -> bool:
        now = time.monotonic()
        self._prune(now)
        if len(self._retries) >= self.floor + self.ratio * len(self._requests):
            return False
        self._retries.append(now)
        return True


class _GiveUp(Exception):
    """A try failed in a way that ends the call: carries the error to raise."""

    def __init__(self, error: ServiceError) -> None:
        self.error = error


class ServiceHTTPClient:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        options: ClientSettings | None = None,
        secret: Secret | str | None = None,
        metrics: ClientMetrics | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.options = options = options or ClientSettings()
        self._secret = secret.get() if isinstance(secret, Secret) else secret
        self.metrics = metrics or ClientMetrics(CollectorRegistry())
        self.budget = budget or RetryBudget(options.retry_budget)
        self.breaker = Breaker(
            name,
            fail_max=options.breaker_failures,
            reset_timeout=options.breaker_reset,
            on_transition=self.metrics.transition,
        )
        self.metrics.transition(name, "closed", "closed")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
            transport=transport or pooled_transport(),
        )

    def get_headers(self, tenant_id: str | None = None) -> dict[str, str]:
        """Request id, traceparent, tenant and deadline of the current request (`request()` adds the signature)."""
        headers = {"X-Request-ID": context.current_request_id() or context.new_request_id()}
        tp = context.current_traceparent()
        if tp:
            headers["traceparent"] = tp
        if tenant_id:
            headers["X-Tenant-ID"] = tenant_id
        deadline = context.current_deadline()
        if deadline is not None:
            headers[DEADLINE_HEADER] = str(max(0, int((deadline - time.monotonic()) * 1000)))
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_data: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        """One call with retries; the response (any status) is fully read. `deadline` overrides the default."""
        return await self._call(method, path, json_data, params, headers, deadline, stream=False)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_data: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The response body chunk by chunk as it arrives (e.g. SSE). A problem status raises before any chunk.

        Retries apply only until the response headers arrive; `deadline` bounds that phase and is sent upstream.
        """
        response = await self._call(method, path, json_data, params, headers, deadline, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise_for_problem(response)
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            log.warning("%s broke off the stream of %s %s: %s: %s", self.name, method, path, type(exc).__name__, exc)
            raise UpstreamFailed(with_request_id(f"the {self.name} service broke off its answer")) from exc
        finally:
            await response.aclose()

    async def probe(self, path: str = "/health/live", wait: float = 1.0) -> dict[str, Any]:
        """Reachability for /health/ready: one plain try, outside the breaker and the retry budget. The report is
        public, so it holds no address; a failed probe is logged with the upstream's URL."""
        started = time.perf_counter()
        detail: dict[str, Any]
        try:
            response = await self._client.get(path, timeout=wait)
            ok, detail = response.status_code < 500, {"status": response.status_code}
        except httpx.HTTPError as exc:
            ok, detail = False, {"error": type(exc).__name__}
            log.warning("%s at %s is unreachable: %s: %s", self.name, without_credentials(self.base_url), *_why(exc))
        return {
            "ok": ok,
            "breaker": self.breaker.state,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            **detail,
        }

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the call loop ---------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        json_data: Any,
        params: Any,
        headers: dict[str, str] | None,
        deadline: float | None,
        *,
        stream: bool,
    ) -> httpx.Response:
        method = method.upper()
        if isinstance(json_data, BaseModel):
            body = codec.dump_model(json_data)
        elif isinstance(json_data, bytes):  # a body encoded by the caller, who sends its Content-Type (a form)
            body = json_data
        else:
            body = b"" if json_data is None else codec.dumps(json_data)
        sent = dict(headers) if headers is not None else self.get_headers(tenant_id=context.current_tenant_id())
        if body and not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
        repeatable = method in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in sent)
        start = time.monotonic()
        end = start + (deadline if deadline is not None else self.options.deadline)
        inherited = context.current_deadline()
        if inherited is not None:
            end = min(end, inherited)
        self.budget.record_request()
        waits = backoff.expo(base=2, factor=self.options.backoff_base, max_value=self.options.backoff_max)
        next(waits)  # backoff's generators yield None first (they are primed with send)
        tries = 0
        last_error: Exception | None = None
        while True:
            tries += 1
            remaining = end - time.monotonic()
            if remaining <= 0:
                self.metrics.giveup(self.name, "deadline")
                raise UpstreamTimeout(f"{self.name}: the deadline passed after {tries - 1} tries")
            response: httpx.Response | None = None
            try:
                response = await self._try(method, path, params, sent, body, remaining, stream=stream)
                reason = f"status_{response.status_code}" if response.status_code in RETRY_STATUSES else None
            except _GiveUp as give_up:
                self.metrics.giveup(self.name, give_up.error.slug)
                raise give_up.error from give_up.__cause__
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                reason, last_error = "connect", exc
            if reason is None:
                return response  # type: ignore[return-value]
            wait = None
            if response is not None:
                hinted = retry_after_seconds(response.headers.get("retry-after"))
                wait = None if hinted is None else min(hinted, self.options.retry_after_max)
            if wait is None:
                wait = backoff.full_jitter(next(waits))
            giveup = None
            if not repeatable:
                giveup = "not_idempotent"
            elif tries > self.options.retries:
                giveup = "exhausted"
            elif time.monotonic() + wait >= end:
                giveup = "deadline"
            elif not self.budget.try_spend():
                giveup = "budget"
            if giveup is not None:
                self.metrics.giveup(self.name, giveup)
                if response is not None:
                    return response
                log.warning(
                    "%s is unreachable at %s after %d tries (%s): %s: %s",
                    self.name,
                    without_credentials(self.base_url),
                    tries,
                    giveup,
                    *_why(last_error),
                )
                raise Unavailable(
                    with_request_id(f"the {self.name} service is unreachable; retry in a moment"),
                    headers={"Retry-After": "1"},
                ) from last_error
            if response is not None:
                await response.aclose()
            self.metrics.retry(self.name, reason)
            await asyncio.sleep(wait)

    async def _try(
        self,
        method: str,
        path: str,
        params: Any,
        headers: dict[str, str],
        body: bytes,
        remaining: float,
        *,
        stream: bool,
    ) -> httpx.Response:
        """One try, through the breaker. Raises ConnectError (retryable) or _GiveUp; returns any HTTP answer."""
        per_try = min(self.options.timeout, remaining)
        # A stream's body may outlast the deadline (it bounds the wait for the headers, below): past the headers
        # only the per-try timeout applies, as the longest silence between two chunks.
        timeout = httpx.Timeout(
            self.options.timeout if stream else per_try, connect=min(self.options.connect_timeout, per_try)
        )
        request = self._client.build_request(
            method,
            path,
            content=body or None,
            params=params,
            headers={**headers, DEADLINE_HEADER: str(max(1, int(remaining * 1000)))},
            timeout=timeout,
        )
        if self._secret:
            sent = request.headers
            request.headers.update(
                sign(
                    self._secret,
                    method=method,
                    target=request.url.raw_path.decode("ascii"),
                    host=sent.get("host", ""),
                    tenant=sent.get("x-tenant-id", ""),
                    request_id=sent.get("x-request-id", ""),
                    deadline=sent.get(DEADLINE_HEADER, ""),
                    idempotency_key=sent.get(IDEMPOTENCY_HEADER, ""),
                    body=body,
                )
            )
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self.breaker.guard():
                try:
                    async with asyncio.timeout(per_try):
                        response = await self._client.send(request, stream=True)
                        if not stream:
                            try:
                                await response.aread()
                            finally:
                                await response.aclose()
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    outcome = "connect_error"
                    raise  # the guard counts it: the deployment cannot be reached
                except (httpx.TimeoutException, TimeoutError) as exc:
                    outcome = "timeout"
                    if per_try < self.options.timeout:
                        self.breaker.abstain()  # the call's own deadline ran out first
                    log.warning("%s did not answer %s %s within %.3gs", self.name, method, path, per_try)
                    raise _GiveUp(
                        UpstreamTimeout(with_request_id(f"the {self.name} service did not answer in time"))
                    ) from exc
                except httpx.TransportError as exc:
                    outcome = "broken"
                    log.warning("%s broke off %s %s: %s: %s", self.name, method, path, *_why(exc))
                    raise _GiveUp(
                        UpstreamFailed(with_request_id(f"the {self.name} service broke off its answer"))
                    ) from exc
                outcome = str(response.status_code)
                if deployment_failed(response):
                    self.breaker.record_failure()
        except CircuitOpen as exc:
            outcome = "circuit_open"
            raise _GiveUp(exc) from None
        finally:
            self.metrics.attempt(self.name, method, outcome, time.perf_counter() - started)
        return response


def _where(response: httpx.Response) -> str:
    try:
        return f"{response.request.method} {response.request.url.path}"
    except RuntimeError:  # a response built without its request
        return "an upstream"


def _why(exc: BaseException | None) -> tuple[str, str]:
    return (type(exc).__name__, str(exc)) if exc is not None else ("", "")


def raise_for_problem(response: httpx.Response) -> httpx.Response:
    """Raise the `ServiceError` a problem response stands for (the same class the remote side raised)."""
    if response.status_code < 400:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not str(body.get("type", "")).startswith(PROBLEM_BASE):
        # Not a problem of ours (a proxy's error page, say): its text may name internal hosts, so it is logged.
        log.warning("%s answered HTTP %d: %.500s", _where(response), response.status_code, response.text)
        body = {"detail": with_request_id(f"an internal service answered HTTP {response.status_code}")}
    raise error_from_problem(response.status_code, body, dict(response.headers))


class ServiceClientManager:
    """One `ServiceHTTPClient` per upstream, built from the settings; the lifespan closes them all."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = ClientMetrics(registry or CollectorRegistry())
        self._clients: dict[str, ServiceHTTPClient] = {}

    def get_client(self, name: str, *, defaults: Mapping[str, float] | None = None) -> ServiceHTTPClient:
        """The client for upstream `name`; `defaults` are the plugin's own tuning (environment overrides win)."""
        client = self._clients.get(name)
        if client is None:
            url = self.settings.plugin(name).url
            if not url:
                raise KeyError(f"no URL for service {name!r}: set FAAS_{name.upper()}_URL")
            client = self._clients[name] = ServiceHTTPClient(
                name,
                url,
                options=self.settings.client(name, defaults),
                secret=self.settings.internal_secret,
                metrics=self.metrics,
            )
        return client

    def clients(self) -> dict[str, ServiceHTTPClient]:
        return dict(self._clients)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
