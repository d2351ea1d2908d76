"""The answer to an unhandled exception: the plain 500 page, or the API's error shape under /api/.

Nothing from the exception reaches the client (no message, no traceback); the request id lets an
admin find the logged traceback.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error as page_server_error

MESSAGE = "The server could not finish this request. Nothing was half done; try again in a moment."


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        request_id = getattr(request, "request_id", None)
        return JsonResponse(
            {"error": {"code": "server_error", "message": MESSAGE, "details": {"request_id": request_id}}},
            status=500,
        )
    return page_server_error(request)
