"""Run in a subprocess with ALM_MODE=production: request pages, API and admin through the test client and
print what came back (status, headers, cookie attributes, body) as JSON for tests/security to judge.

The database is a throw-away SQLite file holding only the session table; nothing else is needed to
answer these requests.
"""

from __future__ import annotations

import json
import sys

import django


def main() -> None:
    django.setup()
    from django.conf import settings
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.test import Client

    settings.ROOT_URLCONF = "tests.security.urls"
    # Production reads a collectstatic manifest; the probe has not run collectstatic and needs no files.
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": plain}
    with connection.schema_editor() as editor:
        editor.create_model(Session)
    host = settings.ALLOWED_HOSTS[0]
    client = Client(HTTP_HOST=host, raise_request_exception=False)
    observed = {}
    for path in json.loads(sys.argv[1]):
        secure = not path.startswith("http:")
        path = path.removeprefix("http:")
        response = client.get(path, secure=secure)
        observed[("https:" if secure else "http:") + path] = {
            "status": response.status_code,
            "headers": dict(response.headers),
            "cookies": {
                name: {
                    "secure": bool(morsel["secure"]),
                    "httponly": bool(morsel["httponly"]),
                    "samesite": morsel["samesite"],
                    "path": morsel["path"],
                    "domain": morsel["domain"],
                }
                for name, morsel in response.cookies.items()
            },
            "body": response.content.decode(errors="replace")[:20000],
        }
    print(json.dumps(observed))


if __name__ == "__main__":
    main()
