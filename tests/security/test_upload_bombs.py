"""Hostile packages sent through the upload API (POST /api/v1/versions/) are refused with the package
reader's own message, within bounded decompressed bytes and memory, and leave nothing behind.

The crafted files come from the reader's tests (tests/dataverse/test_package_safety.py); here they go the
whole way: multipart body, DRF, the upload service, the reader, the error handler.
"""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from alm_portal.dataverse.package import PackageError, PackageErrorCode, read_solution_zip
from tests.dataverse.test_package_safety import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    MIB,
    ROOT_FILES,
    build_zip,
    flood_zip,
    patch_declared_size,
    zip_with_streamed_entry,
)

pytestmark = pytest.mark.django_db

# The whole request (parsing the multipart body included) may not grow Python's heap past this.
MEMORY_CEILING = 50 * MIB
DEFAULT_GRACE = 64 * 1024  # the reader inflates at most this much of an entry before judging its ratio


def ratio_bomb() -> bytes:
    """64 MiB of zeros in ~64 KiB, whose headers claim 1,000 bytes."""
    return patch_declared_size(zip_with_streamed_entry("bomb.xml", b"\0" * MIB, 64), "bomb.xml", file_size=1_000)


def admitted_giant() -> bytes:
    """Headers that honestly declare ~4 GiB: refused from the directory, before inflating anything."""
    return patch_declared_size(build_zip({"big.xml": b"<x/>"}), "big.xml", file_size=0xFFFF0000)


def nested_bomb() -> bytes:
    """A bomb inside a zip inside the package."""
    return build_zip({"Other/inner.zip": ratio_bomb()})


def zip_slip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in ROOT_FILES.items():
            archive.writestr(name, data)
        archive.writestr("../../etc/cron.d/evil", b"* * * * * root sh")
    return out.getvalue()


def with_root(name: str, payload: bytes) -> bytes:
    return build_zip(roots={**ROOT_FILES, name: payload})


CRAFTED: dict[str, tuple[Callable[[], bytes], PackageErrorCode]] = {
    "ratio-bomb": (ratio_bomb, PackageErrorCode.COMPRESSION_RATIO),
    "declared-giant": (admitted_giant, PackageErrorCode.TOO_LARGE),
    "nested-archive": (nested_bomb, PackageErrorCode.NESTED_ARCHIVE),
    "zip-slip": (zip_slip, PackageErrorCode.UNSAFE_NAME),
    "billion-laughs": (lambda: with_root("solution.xml", BILLION_LAUGHS), PackageErrorCode.INVALID_XML),
    "xxe": (lambda: with_root("customizations.xml", EXTERNAL_ENTITY), PackageErrorCode.INVALID_XML),
}


@pytest.fixture
def maker_api(make_user: Any, team: Any, token_for: Any, settings: Any) -> APIClient:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client = APIClient()
    maker = make_user("maker", "maker", team)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(maker, scopes=['read', 'request'])}")
    return client


def post_traced(client: APIClient, data: bytes) -> tuple[Any, int]:
    upload = io.BytesIO(data)
    upload.name = "package.zip"
    tracemalloc.start()
    try:
        response = client.post("/api/v1/versions/", {"file": upload}, format="multipart")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak


def readers_refusal(data: bytes) -> PackageError:
    with pytest.raises(PackageError) as refused:
        read_solution_zip(data)
    return refused.value


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_package_is_refused_by_the_api_with_the_readers_message(
    maker_api: APIClient, artifact_storage: Path, name: str
) -> None:
    from solutions.models import Solution, SolutionVersion

    build, code = CRAFTED[name]
    data = build()
    expected = readers_refusal(data)
    assert expected.code == code

    response, peak = post_traced(maker_api, data)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == expected.message
    assert error["details"] == {"file": [expected.message]}
    assert peak <= MEMORY_CEILING, f"peak {peak} bytes"
    assert not Solution.objects.exists() and not SolutionVersion.objects.exists()
    assert [path for path in artifact_storage.rglob("*") if path.is_file()] == []


def test_the_ratio_bomb_is_stopped_after_inflating_a_bounded_prefix(maker_api: APIClient) -> None:
    data = ratio_bomb()
    refusal = readers_refusal(data)

    response, peak = post_traced(maker_api, data)

    assert response.status_code == 400
    # 64 MiB were on offer; the reader inflated at most the grace window plus one chunk of it.
    assert int(str(refusal.details["entry_decompressed_bytes"])) <= 2 * DEFAULT_GRACE
    assert len(data) < MIB and peak < 10 * MIB


def test_an_element_flood_inside_every_zip_limit_is_refused_in_flat_memory(maker_api: APIClient) -> None:
    """Finding 3: customizations.xml of millions of tiny elements, compressed only about 3.5:1 (no zip limit
    applies), grew the web worker linearly in elements. Twice the elements must not cost more memory."""
    from solutions.models import Solution

    outcomes = []
    for count in (300_000, 600_000):
        data = flood_zip(count)
        assert len(data) < 3 * MIB  # a small upload, far under ALM_MAX_UPLOAD_BYTES
        response, peak = post_traced(maker_api, data)
        outcomes.append((response, peak))

    (_, smaller), (_, larger) = outcomes
    assert larger <= smaller * 1.05 + MIB, (smaller, larger)
    assert larger <= 128 * MIB, larger
    for response, _ in outcomes:
        assert response.status_code == 400, response.content
        assert response.json()["error"]["details"]["file"][0].startswith("The package's XML passes 250,000 elements")
    assert not Solution.objects.exists()
