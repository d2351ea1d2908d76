"""Limits on the XML of a package (alm_portal/dataverse/package/xmlsafe.py): bytes and elements per package,
nesting depth per document, counted while the XML is fed to the parser so memory stays flat however much an
upload holds; and every real package of the corpus still reads under the defaults.

Finding 3 of the security review: a 1.9 MB zip whose customizations.xml held 10 million tiny elements (ratio
21:1, under the bomb limit) grew a web worker by 893 MB, linearly in elements.
"""

from __future__ import annotations

import random
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from alm_portal.dataverse.package import (
    MAX_XML_BYTES,
    MAX_XML_DEPTH,
    MAX_XML_ELEMENTS,
    PackageError,
    PackageErrorCode,
    XmlFeed,
    XmlLimits,
    ZipLimits,
    parse_xml,
    read_solution_folder,
    read_solution_zip,
    reversion_package,
)
from tests.dataverse.test_package_safety import ROOT_FILES, SOLUTION_XML, build_zip, element_flood, flood_zip

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
CORPUS_ZIPS = sorted((CORPUS / "solutions").glob("*.zip"))
CORPUS_FOLDERS = sorted(path for path in (CORPUS / "unpacked").iterdir() if path.is_dir())
MIB = 1024 * 1024


def traced(call) -> tuple[object, int]:
    """(result or the PackageError raised, peak traced bytes)."""
    tracemalloc.start()
    try:
        try:
            outcome: object = call()
        except PackageError as refused:
            outcome = refused
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak


def document_stats(data: bytes) -> tuple[int, int]:
    """(elements, deepest nesting) of one document, counted with the product's own feed."""
    feed = XmlFeed(source="corpus", limits=XmlLimits(max_bytes=1 << 40, max_elements=1 << 40, max_depth=1 << 20))
    feed.feed(data)
    root = feed.close()
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node)
    return feed.budget.elements, deepest


# --- the defaults come from the corpus --------------------------------------------------------------------------


def test_the_defaults_leave_about_eight_times_the_largest_corpus_package():
    largest_bytes = largest_elements = deepest = 0
    for path in CORPUS_ZIPS:
        with zipfile.ZipFile(path) as archive:
            xml = [info for info in archive.infolist() if info.filename.lower().endswith(".xml")]
            package_bytes = sum(info.file_size for info in xml)
            package_elements = 0
            for info in xml:
                elements, depth = document_stats(archive.read(info))
                package_elements += elements
                deepest = max(deepest, depth)
        largest_bytes = max(largest_bytes, package_bytes)
        largest_elements = max(largest_elements, package_elements)
    assert (largest_bytes, largest_elements, deepest) < (2 * MIB, 32_000, 21)  # what xmlsafe.py states
    assert 6 * largest_bytes <= MAX_XML_BYTES <= 10 * largest_bytes
    assert 6 * largest_elements <= MAX_XML_ELEMENTS <= 10 * largest_elements
    assert 2 * deepest <= MAX_XML_DEPTH


@pytest.mark.parametrize("path", CORPUS_ZIPS, ids=[path.name for path in CORPUS_ZIPS])
def test_every_corpus_zip_reads_under_the_default_limits(path: Path):
    assert read_solution_zip(path).unique_name


@pytest.mark.parametrize("path", CORPUS_FOLDERS, ids=[path.name for path in CORPUS_FOLDERS])
def test_every_corpus_folder_reads_under_the_default_limits(path: Path):
    assert read_solution_folder(path).unique_name


# --- each limit -------------------------------------------------------------------------------------------------


def test_too_many_elements_are_refused_while_parsing():
    error = traced(lambda: read_solution_zip(flood_zip(MAX_XML_ELEMENTS + 10)))[0]
    assert isinstance(error, PackageError)
    assert error.code == PackageErrorCode.XML_TOO_LARGE
    assert error.details == {"file": "customizations.xml", "limit_of": "elements", "limit": MAX_XML_ELEMENTS}
    assert f"{MAX_XML_ELEMENTS:,} elements" in error.message


def test_the_element_limit_itself_is_allowed():
    small = ZipLimits(xml=XmlLimits(max_elements=1_000))
    baseline = sum(document_stats(data)[0] for data in ROOT_FILES.values())
    read_solution_zip(
        build_zip(roots={**ROOT_FILES, "customizations.xml": element_flood(1_000 - baseline)}), limits=small
    )
    with pytest.raises(PackageError) as refused:
        read_solution_zip(
            build_zip(roots={**ROOT_FILES, "customizations.xml": element_flood(1_001 - baseline)}), limits=small
        )
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE


def test_nesting_deeper_than_the_limit_is_refused():
    deep = b"<ImportExportXml>" + b"<a>" * MAX_XML_DEPTH + b"</a>" * MAX_XML_DEPTH + b"</ImportExportXml>"
    with pytest.raises(PackageError) as refused:
        read_solution_zip(build_zip(roots={**ROOT_FILES, "customizations.xml": deep}))
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE
    assert refused.value.details["limit_of"] == "depth"
    fits = b"<ImportExportXml>" + b"<a>" * (MAX_XML_DEPTH - 1) + b"</a>" * (MAX_XML_DEPTH - 1) + b"</ImportExportXml>"
    parse_xml(fits, source="customizations.xml")


def test_xml_bytes_past_the_limit_are_refused_as_they_arrive():
    # One element with a long text: few elements, many bytes.
    big = b"<ImportExportXml><Description>" + b"x" * (2 * MIB) + b"</Description></ImportExportXml>"
    limits = ZipLimits(xml=XmlLimits(max_bytes=MIB))
    with pytest.raises(PackageError) as refused:
        read_solution_zip(build_zip(roots={**ROOT_FILES, "customizations.xml": big}), limits=limits)
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE
    assert refused.value.details["limit_of"] == "bytes"


def test_the_limits_count_the_whole_package_not_each_document():
    # 40 environment variable definitions of 100 elements each: every document is small, the package is not.
    definition = (
        b"<environmentvariabledefinition schemaname='tst_x'>" + b"<a/>" * 99 + b"</environmentvariabledefinition>"
    )
    entries = {
        f"environmentvariabledefinitions/tst_v{index}/environmentvariabledefinition.xml": definition
        for index in range(40)
    }
    limits = ZipLimits(xml=XmlLimits(max_elements=2_000))
    with pytest.raises(PackageError) as refused:
        read_solution_zip(build_zip(entries), limits=limits)
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE
    assert refused.value.details["limit_of"] == "elements"
    assert str(refused.value.details["file"]).startswith("environmentvariabledefinitions/")


def test_a_values_file_kept_in_memory_counts_against_the_byte_limit():
    entries = {"environmentvariabledefinitions/tst_v/environmentvariablevalues.json": b" " * (2 * MIB)}
    with pytest.raises(PackageError) as refused:
        read_solution_zip(build_zip(entries), limits=ZipLimits(xml=XmlLimits(max_bytes=MIB)))
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE


def test_an_unpacked_folder_obeys_the_same_limits(tmp_path: Path):
    (tmp_path / "Other").mkdir()
    (tmp_path / "Other" / "Solution.xml").write_bytes(SOLUTION_XML)
    (tmp_path / "Other" / "Customizations.xml").write_bytes(element_flood(5_000))
    with pytest.raises(PackageError) as refused:
        read_solution_folder(tmp_path, limits=ZipLimits(xml=XmlLimits(max_elements=1_000)))
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE
    assert refused.value.details["file"] == "Other/Customizations.xml"


def test_re_versioning_obeys_the_same_limits(tmp_path: Path):
    with pytest.raises(PackageError) as refused:
        reversion_package(
            flood_zip(3_000), "1.0.0.1", tmp_path / "out.zip", limits=ZipLimits(xml=XmlLimits(max_elements=1_000))
        )
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE
    assert not (tmp_path / "out.zip").exists()


def test_parse_xml_takes_chunks_and_still_refuses_entities():
    chunks = [b"<r>", b"<a/>" * 10, b"</r>"]
    assert len(parse_xml(chunks, source="x.xml")) == 10
    with pytest.raises(PackageError) as refused:
        parse_xml([b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]>', b"<r>&e;</r>"], source="x.xml")
    assert refused.value.code == PackageErrorCode.INVALID_XML


# --- memory stays flat however many elements are offered ---------------------------------------------------------


def test_reading_an_element_flood_peaks_the_same_at_twice_the_elements():
    first, first_peak = traced(lambda: read_solution_zip(flood_zip(300_000)))
    second, second_peak = traced(lambda: read_solution_zip(flood_zip(600_000)))
    assert isinstance(first, PackageError) and isinstance(second, PackageError)
    assert first.code == second.code == PackageErrorCode.XML_TOO_LARGE
    # Both stop at the same element count: the second offered twice as much and used no more memory.
    assert second_peak <= first_peak * 1.05 + MIB, (first_peak, second_peak)
    assert second_peak <= 128 * MIB


def test_a_reader_that_keeps_every_file_is_bounded_by_the_zip_limits_not_the_xml_ones():
    """An unpacker keeps every entry (web resources, canvas apps): those bytes are not XML it parses, so only
    the zip's own limits apply to them; the documents it parses still obey XmlLimits."""
    from alm_portal.dataverse.package import scan_zip

    binary = random.Random(7).randbytes(2 * MIB)
    limits = ZipLimits(xml=XmlLimits(max_bytes=MIB))
    scan = scan_zip(build_zip({"WebResources/big.bin": binary}), limits=limits, retain=lambda name: True)
    assert scan.contents["WebResources/big.bin"] == binary
    with pytest.raises(PackageError) as refused:
        parse_xml(b"<a>" + b"x" * (2 * MIB) + b"</a>", source="big.xml", limits=limits.xml)
    assert refused.value.code == PackageErrorCode.XML_TOO_LARGE
