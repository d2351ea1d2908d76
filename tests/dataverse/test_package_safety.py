"""Hostile packages are refused with a stable code, within bounded decompressed bytes and memory.

Every malicious zip is built here with zipfile (and raw header patches where zipfile would refuse to write the
lie). Each refusal runs under tracemalloc and must peak at 50 MB or less.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import stat
import struct
import tarfile
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from alm_portal.dataverse.package import (
    MAX_ENTRIES,
    PackageError,
    PackageErrorCode,
    ZipLimits,
    read_solution_folder,
    read_solution_zip,
    scan_zip,
)
from alm_portal.dataverse.package.zipsafety import check_entry_name

MEMORY_CEILING = 50 * 1024 * 1024
MIB = 1024 * 1024

SOLUTION_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<ImportExportXml version="9.2.24032.204" SolutionPackageVersion="9.2" languagecode="1033" generatedBy="CrmLive">
  <SolutionManifest>
    <UniqueName>Crafted</UniqueName>
    <LocalizedNames><LocalizedName description="Crafted" languagecode="1033" /></LocalizedNames>
    <Version>1.0.0.0</Version>
    <Managed>0</Managed>
    <Publisher>
      <UniqueName>tester</UniqueName>
      <CustomizationPrefix>tst</CustomizationPrefix>
      <CustomizationOptionValuePrefix>10000</CustomizationOptionValuePrefix>
    </Publisher>
    <RootComponents />
    <MissingDependencies />
  </SolutionManifest>
</ImportExportXml>"""
CUSTOMIZATIONS_XML = b"<ImportExportXml><Entities /><Languages><Language>1033</Language></Languages></ImportExportXml>"
CONTENT_TYPES_XML = (
    b'<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="xml" ContentType="application/octet-stream" /></Types>'
)
ROOT_FILES = {
    "solution.xml": SOLUTION_XML,
    "customizations.xml": CUSTOMIZATIONS_XML,
    "[Content_Types].xml": CONTENT_TYPES_XML,
}

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ImportExportXml><SolutionManifest><UniqueName>&lol9;</UniqueName></SolutionManifest></ImportExportXml>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ImportExportXml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ImportExportXml><SolutionManifest><UniqueName>&xxe;</UniqueName></SolutionManifest></ImportExportXml>"""
PLAIN_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ImportExportXml SYSTEM "http://example.invalid/solution.dtd">
<ImportExportXml />"""


def build_zip(
    entries: dict[str, bytes] | None = None,
    *,
    roots: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A solution zip: the three root files (overridable) plus ``entries``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in {**(roots if roots is not None else ROOT_FILES), **(entries or {})}.items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_with_streamed_entry(name: str, chunk: bytes, chunks: int) -> bytes:
    """A solution zip with one large entry written chunk by chunk (the test never holds it whole)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for root_name, data in ROOT_FILES.items():
            archive.writestr(root_name, data)
        with archive.open(name, "w", force_zip64=False) as entry:
            for _ in range(chunks):
                entry.write(chunk)
    return out.getvalue()


def patch_declared_size(data: bytes, name: str, *, file_size: int) -> bytes:
    """Make both headers of ``name`` lie about its uncompressed size (CRC and compressed size stay true)."""
    patched = bytearray(data)
    encoded = name.encode()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
        start_dir = archive.start_dir
    assert patched[info.header_offset + 30 : info.header_offset + 30 + len(encoded)] == encoded
    struct.pack_into("<L", patched, info.header_offset + 22, file_size)
    central = patched.index(b"PK\x01\x02", start_dir)
    while patched[central + 46 : central + 46 + len(encoded)] != encoded:
        central = patched.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<L", patched, central + 24, file_size)
    return bytes(patched)


def element_flood(count: int, *, seed: int = 3) -> bytes:
    """customizations.xml with `count` tiny elements whose attributes vary, so the zip stays far under the
    compression-ratio rule (about 3.5:1), as the review's 21:1 file did."""
    rng = random.Random(seed)
    parts = [b"<ImportExportXml><Entities />"]
    parts += [b'<c n="%06x"/>' % rng.getrandbits(24) for _ in range(count)]
    parts.append(b"<Languages><Language>1033</Language></Languages></ImportExportXml>")
    return b"".join(parts)


def flood_zip(count: int) -> bytes:
    return build_zip(roots={**ROOT_FILES, "customizations.xml": element_flood(count)})


def refusal(data: bytes, limits: ZipLimits | None = None) -> tuple[PackageError, int]:
    """Read ``data``, expecting a refusal; return it with the traced memory peak in bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(PackageError) as refused:
            read_solution_zip(data, limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_CEILING, f"peak {peak} bytes"
    assert refused.value.message and str(refused.value.code) in str(refused.value)
    return refused.value, peak


def test_the_crafted_baseline_is_accepted() -> None:
    manifest = read_solution_zip(build_zip({"WebResources/new_script": b"alert(1)"}))

    assert (manifest.unique_name, manifest.version.text) == ("Crafted", "1.0.0.0")


# --- not a zip ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"PK",
        b"%PDF-1.7\n" + b"x" * 100,
        gzip.compress(SOLUTION_XML),
        b"MZ\x90\x00" + build_zip(),  # a self-extractor stub in front of a real zip
        b"PK\x03\x04" + b"\x00" * 200,  # right magic, no central directory
    ],
    ids=["empty", "two-bytes", "pdf", "gzip", "prefixed-zip", "magic-only"],
)
def test_not_a_zip(data: bytes) -> None:
    error, _ = refusal(data)

    assert error.code == PackageErrorCode.NOT_A_ZIP


# --- entry count ----------------------------------------------------------------------------------------------


def _many_entries(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in ROOT_FILES.items():
            archive.writestr(name, data)
        for index in range(count - len(ROOT_FILES)):
            archive.writestr(f"f/{index}", b"")
    return out.getvalue()


def test_more_than_5000_entries_is_refused_with_the_default_limit() -> None:
    assert MAX_ENTRIES == 5_000
    read_solution_zip(_many_entries(5_000))  # the limit itself is allowed

    error, _ = refusal(_many_entries(5_001))

    assert error.code == PackageErrorCode.TOO_MANY_ENTRIES


def test_an_end_record_that_understates_the_entry_count_is_caught_while_walking_the_directory() -> None:
    data = bytearray(_many_entries(60))
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 3, 3)  # claim 3 entries

    error, _ = refusal(bytes(data), ZipLimits(max_entries=50))

    assert error.code == PackageErrorCode.TOO_MANY_ENTRIES


# --- decompressed size and ratio, counted while reading -------------------------------------------------------


def test_zip_bomb_whose_header_understates_its_size_is_stopped_by_the_ratio_rule() -> None:
    bomb = patch_declared_size(zip_with_streamed_entry("bomb.xml", b"\0" * MIB, 64), "bomb.xml", file_size=1_000)

    error, peak = refusal(bomb)  # default limits: 1 GiB, 100:1 after 64 KiB

    assert error.code == PackageErrorCode.COMPRESSION_RATIO
    assert error.details["entry"] == "bomb.xml"
    assert int(str(error.details["entry_decompressed_bytes"])) <= 64 * 1024 + 64 * 1024
    assert peak < 5 * MIB


def test_zip_bomb_is_stopped_at_the_total_limit_when_the_ratio_is_allowed() -> None:
    bomb = patch_declared_size(zip_with_streamed_entry("bomb.xml", b"\0" * MIB, 32), "bomb.xml", file_size=1_000)
    limits = ZipLimits(max_total_bytes=4 * MIB, max_compression_ratio=1_000_000)

    error, _ = refusal(bomb, limits)

    assert error.code == PackageErrorCode.TOO_LARGE
    decompressed = int(str(error.details["decompressed_bytes"]))
    assert 4 * MIB < decompressed <= 4 * MIB + 64 * 1024  # stopped within one chunk of the limit, not at 32 MiB


def test_many_honest_entries_add_up_past_the_total_limit() -> None:
    entries = {f"WebResources/new_{index}": os.urandom(300 * 1024) for index in range(5)}

    error, _ = refusal(build_zip(entries, compression=zipfile.ZIP_STORED), ZipLimits(max_total_bytes=MIB))

    assert error.code == PackageErrorCode.TOO_LARGE


def test_a_header_that_admits_to_too_much_is_refused_before_inflating() -> None:
    data = patch_declared_size(build_zip({"big.xml": b"<x/>"}), "big.xml", file_size=0xFFFF0000)

    error, _ = refusal(data)

    assert error.code == PackageErrorCode.TOO_LARGE
    assert "decompressed_bytes" not in error.details


def test_high_ratio_entry_is_refused_with_small_limits() -> None:
    data = build_zip({"Workflows/flow.json": b" " * 400_000})

    error, _ = refusal(data, ZipLimits(ratio_grace_bytes=1_024))

    assert error.code == PackageErrorCode.COMPRESSION_RATIO


def test_header_that_overstates_size_without_content_is_corrupt() -> None:
    data = patch_declared_size(build_zip({"a.xml": b"<a/>"}), "a.xml", file_size=10)

    error, _ = refusal(data)

    assert error.code == PackageErrorCode.CORRUPT_ENTRY


def test_damaged_crc_is_corrupt() -> None:
    data = bytearray(build_zip({"WebResources/new_x": b"payload" * 100}, compression=zipfile.ZIP_STORED))
    position = data.index(b"payload")
    data[position] ^= 0xFF

    error, _ = refusal(bytes(data))

    assert error.code == PackageErrorCode.CORRUPT_ENTRY


# --- names and attributes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../evil.xml", "WebResources/../../evil", "/etc/passwd", "C:\\x", "C:/x", "a\\b", "sub/.."],
    ids=["dotdot", "nested-dotdot", "absolute", "drive-backslash", "drive-slash", "backslash", "trailing-dotdot"],
)
def test_unsafe_names_are_refused(name: str) -> None:
    error, _ = refusal(build_zip({name: b"x"}))

    assert error.code == PackageErrorCode.UNSAFE_NAME
    assert error.details["entry"] == name


def test_an_empty_name_is_unsafe() -> None:
    with pytest.raises(PackageError) as refused:
        check_entry_name("")

    assert refused.value.code == PackageErrorCode.UNSAFE_NAME


def test_nul_in_a_name_is_refused() -> None:
    data = build_zip({"WebResources/evilXname.js": b"x"}).replace(b"evilXname", b"evil\x00name")

    error, _ = refusal(data)

    assert error.code == PackageErrorCode.UNSAFE_NAME
    assert "NUL" in error.message


def test_symlink_entries_are_refused() -> None:
    link = zipfile.ZipInfo("WebResources/new_link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in ROOT_FILES.items():
            archive.writestr(name, data)
        archive.writestr(link, b"/etc/passwd")

    error, _ = refusal(out.getvalue())

    assert error.code == PackageErrorCode.SYMLINK


def test_duplicate_names_differing_only_in_case_are_refused() -> None:
    error, _ = refusal(build_zip({"Solution.xml": SOLUTION_XML}))

    assert error.code == PackageErrorCode.DUPLICATE_NAME


def test_encrypted_entries_are_refused() -> None:
    data = bytearray(build_zip({"WebResources/new_x": b"x"}))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = 0
        while (position := data.find(signature, position)) >= 0:
            data[position + flags_at] |= 0x01
            position += 4

    error, _ = refusal(bytes(data))

    assert error.code == PackageErrorCode.ENCRYPTED_ENTRY


def test_unsupported_compression_is_refused() -> None:
    error, _ = refusal(build_zip({"WebResources/new_x": b"x" * 100}, compression=zipfile.ZIP_BZIP2))

    assert error.code == PackageErrorCode.UNSUPPORTED_COMPRESSION


# --- nested archives ------------------------------------------------------------------------------------------


def _tar_bytes() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("inner.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"inner"))
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("inner.zip", b"not even a zip"),
        ("payload.7z", b"x"),
        ("payload.rar", b"x"),
        ("payload.cab", b"x"),
        ("payload.tar.gz", b"x"),
        ("payload.tar", b"x"),
        ("WebResources/new_innocent", build_zip()),
        ("WebResources/new_gzip", gzip.compress(b"hello" * 100)),
        ("WebResources/new_tar", _tar_bytes()),
        ("WebResources/new_7z", b"7z\xbc\xaf\x27\x1c" + b"\x00" * 40),
        ("WebResources/new_rar", b"Rar!\x1a\x07\x00" + b"\x00" * 40),
        ("WebResources/new_cab", b"MSCF" + b"\x00" * 40),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_nested_archives_are_refused_by_name_and_by_magic_bytes(name: str, data: bytes) -> None:
    error, _ = refusal(build_zip({name: data}))

    assert error.code == PackageErrorCode.NESTED_ARCHIVE
    assert error.details["entry"] == name


def test_canvas_app_documents_are_zips_and_are_allowed() -> None:
    manifest = read_solution_zip(build_zip({"CanvasApps/new_app_DocumentUri.msapp": build_zip()}))

    assert "CanvasApps/new_app_DocumentUri.msapp" in {file.path for file in manifest.files}


def test_the_package_allowlist_is_configurable() -> None:
    error, _ = refusal(
        build_zip({"CanvasApps/new_app_DocumentUri.msapp": build_zip()}), ZipLimits(allowed_package_suffixes=())
    )

    assert error.code == PackageErrorCode.NESTED_ARCHIVE


# --- root files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["solution.xml", "customizations.xml", "[Content_Types].xml"])
def test_each_root_file_is_required(missing: str) -> None:
    roots = {name: data for name, data in ROOT_FILES.items() if name != missing}

    error, _ = refusal(build_zip({f"Other/{missing}": ROOT_FILES[missing]}, roots=roots))

    assert error.code == PackageErrorCode.MISSING_ROOT_FILE
    assert error.details["missing"] == [missing]
    assert missing in error.message


def test_an_empty_zip_misses_every_root_file() -> None:
    out = io.BytesIO()
    zipfile.ZipFile(out, "w").close()

    error, _ = refusal(out.getvalue())

    assert error.code == PackageErrorCode.MISSING_ROOT_FILE
    assert len(error.details["missing"]) == 3


# --- XML ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("root_file", list(ROOT_FILES))
@pytest.mark.parametrize(
    "payload",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, PLAIN_DTD, b"<ImportExportXml>", b"\xff\xfe\x00<"],
    ids=["billion-laughs", "xxe", "dtd", "unclosed", "garbage"],
)
def test_xml_bombs_dtds_and_malformed_xml_are_refused(root_file: str, payload: bytes) -> None:
    error, peak = refusal(build_zip(roots={**ROOT_FILES, root_file: payload}))

    assert error.code == PackageErrorCode.INVALID_XML
    assert peak < 5 * MIB


def test_dtd_in_an_environment_variable_file_is_refused() -> None:
    error, _ = refusal(
        build_zip({"environmentvariabledefinitions/x/environmentvariabledefinition.xml": BILLION_LAUGHS})
    )

    assert error.code == PackageErrorCode.INVALID_XML


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (b"<Version>1.0.0.0</Version>", b"<Version>one</Version>", PackageErrorCode.INVALID_VERSION),
        (b"<Version>1.0.0.0</Version>", b"", PackageErrorCode.INVALID_MANIFEST),
        (b"<Managed>0</Managed>", b"<Managed>7</Managed>", PackageErrorCode.INVALID_MANIFEST),
        (b"<UniqueName>Crafted</UniqueName>", b"", PackageErrorCode.INVALID_MANIFEST),
    ],
)
def test_solution_xml_without_identity_is_refused(old: bytes, new: bytes, code: PackageErrorCode) -> None:
    error, _ = refusal(build_zip(roots={**ROOT_FILES, "solution.xml": SOLUTION_XML.replace(old, new)}))

    assert error.code == code


@pytest.mark.parametrize("values", [b"[" * 50_000, b"{not json", b"\xff\xfe{}"], ids=["deep", "syntax", "encoding"])
def test_invalid_json_in_a_values_file_is_refused(values: bytes) -> None:
    definition = (
        b'<environmentvariabledefinition schemaname="tst_x"><type>100000000</type></environmentvariabledefinition>'
    )
    error, _ = refusal(
        build_zip(
            {
                "environmentvariabledefinitions/tst_x/environmentvariabledefinition.xml": definition,
                "environmentvariabledefinitions/tst_x/environmentvariablevalues.json": values,
            }
        )
    )

    assert error.code == PackageErrorCode.INVALID_MANIFEST


# --- sources --------------------------------------------------------------------------------------------------


class _OneWayStream(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_non_seekable_streams_are_read_through_a_bounded_spool() -> None:
    data = build_zip({"WebResources/new_x": b"x"})

    assert read_solution_zip(_OneWayStream(data)).unique_name == "Crafted"
    with pytest.raises(PackageError) as refused:
        read_solution_zip(_OneWayStream(data), limits=ZipLimits(max_total_bytes=100))
    assert refused.value.code == PackageErrorCode.TOO_LARGE


def test_scan_zip_reports_every_entry_with_its_hash() -> None:
    scan = scan_zip(build_zip({"WebResources/new_x": b"abc"}))

    sizes = {entry.name: entry.size for entry in scan.entries}
    assert sizes["WebResources/new_x"] == 3
    assert scan.decompressed_bytes == sum(sizes.values())
    assert scan.contents == {}


# --- unpacked folders -----------------------------------------------------------------------------------------


def _folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def test_folder_without_other_solution_xml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError) as refused:
        read_solution_folder(_folder(tmp_path, {"Other/Customizations.xml": CUSTOMIZATIONS_XML}))

    assert refused.value.code == PackageErrorCode.MISSING_ROOT_FILE


def test_folder_needs_only_solution_xml(tmp_path: Path) -> None:
    manifest = read_solution_folder(_folder(tmp_path, {"Other/Solution.xml": SOLUTION_XML}))

    assert manifest.unique_name == "Crafted"


def test_folder_with_a_dtd_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError) as refused:
        read_solution_folder(_folder(tmp_path, {"Other/Solution.xml": BILLION_LAUGHS}))

    assert refused.value.code == PackageErrorCode.INVALID_XML


@pytest.mark.parametrize("target_is_dir", [False, True])
def test_folder_with_a_symlink_is_refused(tmp_path: Path, target_is_dir: bool) -> None:
    root = _folder(tmp_path / "src", {"Other/Solution.xml": SOLUTION_XML})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.xml").write_bytes(b"<secret/>")
    (root / "WebResources").mkdir()
    (root / "WebResources" / "link").symlink_to(outside if target_is_dir else outside / "secret.xml")

    with pytest.raises(PackageError) as refused:
        read_solution_folder(root)

    assert refused.value.code == PackageErrorCode.SYMLINK


def test_folder_limits(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"Other/Solution.xml": SOLUTION_XML, **{f"f/{i}": b"x" * 100 for i in range(10)}})

    for limits, code in (
        (ZipLimits(max_entries=5), PackageErrorCode.TOO_MANY_ENTRIES),
        (ZipLimits(max_total_bytes=500), PackageErrorCode.TOO_LARGE),
    ):
        with pytest.raises(PackageError) as refused:
            read_solution_folder(root, limits=limits)
        assert refused.value.code == code


def test_no_refusal_leaves_files_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing is ever extracted: reading a hostile zip creates no files in the working or temp directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    hostile: list[Callable[[], bytes]] = [
        lambda: build_zip({"../evil.xml": b"<x/>"}),
        lambda: build_zip({"inner.zip": build_zip()}),
        lambda: patch_declared_size(zip_with_streamed_entry("bomb.xml", b"\0" * MIB, 8), "bomb.xml", file_size=10),
    ]
    for make in hostile:
        refusal(make())

    assert list(tmp_path.iterdir()) == []
