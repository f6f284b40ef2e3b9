"""`POST /v1/feedback`: the HTTP twin of the Feedback RPC, mounted with the OpenAI facade (same token).

Body: `{"request_id": "...", "score": 0.8, "label": "good"}` (score and/or label). 200 with
`{"route", "model", "arm"}` the rating was counted against; 404 (`not_found_error`) for an id that is
unknown, expired or already rated; 400 for a malformed body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from tiergate.errors import InvalidRequest

if TYPE_CHECKING:
    from tiergate.server.http import Response
    from tiergate.sidecar import Sidecar

FEEDBACK_PATH = "/v1/feedback"


def parse_feedback(body: bytes) -> tuple[str, float | None, str]:
    """(request_id, score, label) from a JSON body.

    Raises:
        InvalidRequest: not a JSON object, or a field of the wrong type.
    """
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    request_id, score, label = data.get("request_id"), data.get("score"), data.get("label", "")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidRequest("request_id: a non-empty string is required")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise InvalidRequest("score: must be a number")
    if label is None:
        label = ""
    if not isinstance(label, str):
        raise InvalidRequest("label: must be a string")
    return request_id, None if score is None else float(score), label


def feedback_response(sidecar: Sidecar, body: bytes) -> Response:
    from tiergate.server.http import Response

    request_id, score, label = parse_feedback(body)
    served = sidecar.rate(request_id, score, label)
    answer = {"route": served.route, "model": served.model, "arm": served.arm}
    return Response(200, orjson.dumps(answer), "application/json")
