"""A remote model behind an HTTP JSON predict endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

import numpy as np

from bastion.core.errors import TargetError
from bastion.core.targets.base import BlackBoxTarget
from bastion.core.threat import OutputKind

__all__ = ["HttpTarget"]


class HttpTarget(BlackBoxTarget):
    """A model served over HTTP(S): POST ``{"inputs": [...]}``, read scores or labels back.

    The request body is ``{input_key: batch}`` with the batch as nested lists of the input
    shape. The response is a JSON object whose ``output_key`` holds (N, C) scores or (N,)
    labels, per ``output_kind``.

    Args:
        url: the predict endpoint.
        headers: extra request headers (an API key, say); never logged or reported.
        timeout: seconds to wait for each request.
    """

    def __init__(
        self,
        url: str,
        *,
        num_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        input_shape: Sequence[int] | None = None,
        output_kind: OutputKind | str = OutputKind.PROBABILITIES,
        input_key: str = "inputs",
        output_key: str = "outputs",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        batch_size: int = 256,
        query_budget: int | None = None,
    ) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TargetError(f"not an http(s) URL: {url!r}")
        # the name goes into reports: keep credentials and query strings out of it
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        super().__init__(
            output_kind=OutputKind(output_kind),
            num_classes=num_classes,
            bounds=bounds,
            input_shape=input_shape,
            query_budget=query_budget,
            batch_size=batch_size,
            name=f"{parsed.scheme}://{host}{port}{parsed.path}",
        )
        self.url = url
        self.input_key = input_key
        self.output_key = output_key
        self._headers = {"Content-Type": "application/json", **dict(headers or {})}
        self.timeout = timeout

    def _predict_numpy(self, x: np.ndarray) -> np.ndarray:
        body = json.dumps({self.input_key: x.tolist()}).encode()
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise TargetError(f"{self.name} answered HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise TargetError(f"cannot reach {self.name}: {exc.reason}") from exc
        except (TimeoutError, ConnectionError) as exc:
            raise TargetError(f"cannot reach {self.name}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise TargetError(f"{self.name} did not answer JSON: {exc}") from exc
        if not isinstance(payload, dict) or self.output_key not in payload:
            raise TargetError(f"{self.name} answered without the key {self.output_key!r}")
        try:
            out = np.asarray(payload[self.output_key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TargetError(
                f"{self.name} answered {self.output_key!r} that is not numeric"
            ) from exc
        if len(out) != len(x):
            raise TargetError(f"{self.name} answered {len(out)} outputs for {len(x)} inputs")
        return out
