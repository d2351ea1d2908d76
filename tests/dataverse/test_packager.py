"""The SolutionPackager-compatible unpacker and packer: XML writing, component placement, refusals and limits.

Fidelity against real SolutionPackager output and the whole corpus is in test_packager_fidelity.py; these tests
take one behaviour at a time, mostly on corpus zips changed in one place.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from alm_portal.dataverse.package import PackageError, PackageErrorCode, ZipLimits, read_solution_zip
from alm_portal.dataverse.package.xmlsafe import MAX_XML_DEPTH
from alm_portal.dataverse.packager import (
    PackageType,
    compare_packages,
    pack_files,
    pack_folder,
    unpack_solution,
    write_folder,
)
from alm_portal.dataverse.packager.xmldoc import parse_document, write_document

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SOLUTIONS = FIXTURES / "corpus" / "solutions"
PAIRS = FIXTURES / "unpack-pairs"


def _zip_with(source: Path, change: Callable[[dict[str, bytes]], None]) -> bytes:
    """A copy of a corpus zip with some entries changed (``change`` edits the name -> bytes map)."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _replace(entries: dict[str, bytes], name: str, old: bytes, new: bytes) -> None:
    assert old in entries[name], f"{old!r} not in {name}"
    entries[name] = entries[name].replace(old, new, 1)


def _written(text: str) -> str:
    return write_document(parse_document(text.encode("utf-8"), source="test.xml")).decode("utf-8")


# ---- XML as SolutionPackager writes it ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "zip_path", sorted(SOLUTIONS.glob("*.zip")) + sorted(PAIRS.glob("*/*.zip")), ids=lambda path: path.name
)
def test_the_writer_gives_back_dataverse_s_own_xml_byte_for_byte(zip_path: Path) -> None:
    # Dataverse writes solution.xml and customizations.xml with the same .NET XmlWriter settings as
    # SolutionPackager, so writing what we read must reproduce them (the declaration and BOM aside, which
    # SolutionPackager always writes). Three old exports leave a nested XML value unindented, which no writer
    # that indents can reproduce: those are compared after re-indenting.
    with zipfile.ZipFile(zip_path) as archive:
        for name in ("solution.xml", "customizations.xml"):
            original = archive.read(name)
            written = write_document(parse_document(original, source=name))
            body = original.removeprefix(b"\xef\xbb\xbf")
            if not body.startswith(b"<?xml"):
                written = written.split(b"\r\n", 1)[1]
            else:
                written = written.removeprefix(b"\xef\xbb\xbf")
            if b"<ControlDescriptionXML><controlDescriptions />" in original:
                body = body.replace(
                    b"<ControlDescriptionXML><controlDescriptions /></ControlDescriptionXML>",
                    b"<ControlDescriptionXML>\r\n            <controlDescriptions />"
                    b"\r\n          </ControlDescriptionXML>",
                )
            assert written == body, name


def test_written_xml_has_bom_declaration_crlf_two_space_indent_and_no_final_newline() -> None:
    written = _written("<a><b x='1'/><c></c><d>text</d></a>")

    assert written == (
        '\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n<a>\r\n  <b x="1" />\r\n  <c></c>\r\n  <d>text</d>\r\n</a>'
    )


def test_escaping_follows_xmlwriter_in_text_and_attributes() -> None:
    written = _written(
        "<a t=\"a&amp;b &lt;c&gt; &quot;q&quot; 's' &#xA;line &#9;tab\">1 &lt; 2 &gt; 0 &amp; \"q\" 's'</a>"
    )

    assert "t=\"a&amp;b &lt;c&gt; &quot;q&quot; 's' &#xA;line &#x9;tab\"" in written
    assert "1 &lt; 2 &gt; 0 &amp; \"q\" 's'</a>" in written


def test_mixed_content_is_not_indented_and_whitespace_only_text_is_dropped() -> None:
    written = _written("<a>\n    <b>one<i>two</i> three</b>\n    <c>   </c>\n</a>")

    assert written.endswith("<a>\r\n  <b>one<i>two</i> three</b>\r\n  <c></c>\r\n</a>")


def test_comments_cdata_processing_instructions_prefixes_and_preserved_space_survive() -> None:
    source = (
        "<?xml version='1.0'?><!-- before --><root xmlns:x='urn:x'><!-- inside --><x:item x:at='1'/>"
        "<code><![CDATA[if (a < b) {}]]></code><?hint keep me?><p xml:space='preserve'>  two  </p></root>"
    )
    written = _written(source)

    assert "<!-- before -->\r\n<root" in written
    assert '\r\n  <!-- inside -->\r\n  <x:item x:at="1" />' in written
    assert "<code><![CDATA[if (a < b) {}]]></code>" in written
    assert "<?hint keep me?>" in written
    assert '<p xml:space="preserve">  two  </p>' in written


def test_a_declared_single_byte_encoding_is_read_and_written_as_utf_8() -> None:
    data = '<?xml version="1.0" encoding="windows-1252"?><a>Café</a>'.encode("cp1252")

    assert "<a>Café</a>" in write_document(parse_document(data, source="a.xml")).decode("utf-8")


@pytest.mark.parametrize(
    "xml",
    [
        b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
        b'<!DOCTYPE a SYSTEM "http://example.com/a.dtd"><a/>',
        b"<a><b></a>",
    ],
    ids=["entity", "external-dtd", "malformed"],
)
def test_xml_is_parsed_by_the_package_reader_s_safe_parser_first(xml: bytes) -> None:
    with pytest.raises(PackageError) as refused:
        parse_document(xml, source="customizations.xml")

    assert refused.value.code is PackageErrorCode.INVALID_XML


def test_nesting_deeper_than_the_writer_walks_is_refused_not_a_crash() -> None:
    deep = b"<a>" * (MAX_XML_DEPTH + 1) + b"</a>" * (MAX_XML_DEPTH + 1)
    just_deep_enough = b"<a>" * MAX_XML_DEPTH + b"</a>" * MAX_XML_DEPTH

    with pytest.raises(PackageError) as refused:
        parse_document(deep, source="deep.xml")

    assert refused.value.code is PackageErrorCode.XML_TOO_LARGE and "deep" in refused.value.message
    assert refused.value.details["limit"] == MAX_XML_DEPTH
    assert write_document(parse_document(just_deep_enough, source="ok.xml")).count(b"<a>") == MAX_XML_DEPTH


# ---- where components go ---------------------------------------------------------------------------------------


def test_kinds_outside_the_reference_pairs_go_where_the_component_file_reference_puts_them() -> None:
    power = unpack_solution(SOLUTIONS / "Power365CRMSalesSolution_1_0_0_1_managed.zip").files
    start_menu = unpack_solution(SOLUTIONS / "StartMenu_1_4_managed.zip").files
    security = unpack_solution(SOLUTIONS / "ColumnLevelSecuritySampleSolution.zip").files
    control = unpack_solution(SOLUTIONS / "CodeInterpreterControlSolution.zip").files

    plugin = "PluginAssemblies/P365I_CRMSales-29148888-15B3-49A9-BE8F-E2DEA75A0D0E/P365I_CRMSales.dll"
    assert {plugin, plugin + ".data.xml"} <= set(power)
    assert "SdkMessageProcessingSteps/{0119cefc-eac0-ee11-9079-6045bd127823}.xml" in power
    assert b"<EntityMaps " in power["Other/EntityMaps.xml"]
    assert "Entities/p365i_Opportunity/Formulas/p365i_opportunity-p365i_totalamount.xaml" in power
    assert not any(path.startswith("Formulas/") for path in power)
    assert "WebResources/p365i_opportunity.js" in power  # moved from WebResources/p365i_opportunityjs<GUID>
    assert b"<RibbonDiffXml " in start_menu["Other/RibbonCustomization.xml"]
    assert "WebResources/dev1_/js/SiteMap.js.data.xml" in start_menu
    assert b"<FieldSecurityProfiles " in security["Other/FieldSecurityProfiles.xml"]
    assert "Controls/dev_CodeInterpreterSample.CodeInterpreterControl/ControlManifest.xml.data.xml" in control
    for files in (power, start_menu, security):
        customizations = files["Other/Customizations.xml"]
        for emptied in (b"<EntityMaps />", b"<RibbonDiffXml />", b"<FieldSecurityProfiles />"):
            assert emptied in customizations or emptied.replace(b" />", b">") not in customizations


def test_a_component_kind_nobody_splits_stays_in_customizations_xml_and_packs_back() -> None:
    novel = (
        b'<msdyn_novelthings><msdyn_novelthing msdyn_name="x"><payload a="1">keep me</payload>'
        b"</msdyn_novelthing></msdyn_novelthings>"
    )
    data = _zip_with(
        SOLUTIONS / "UpdateCreatedBy_1_0_0_1.zip",
        lambda entries: _replace(entries, "customizations.xml", b"<Languages>", novel + b"<Languages>"),
    )

    unpacked = unpack_solution(data)
    packed = pack_files(unpacked.files)

    assert b'<payload a="1">keep me</payload>' in unpacked.files["Other/Customizations.xml"]
    assert [difference.entry for difference in compare_packages(data, packed.data)] == ["[Content_Types].xml"]


def test_both_reports_managed_content_that_a_both_folder_does_not_keep() -> None:
    unmanaged = SOLUTIONS / "IncidentReporting_1_0_0_2.zip"
    managed = _zip_with(
        SOLUTIONS / "IncidentReporting_1_0_0_1_managed.zip",
        lambda entries: _replace(
            entries, "customizations.xml", b"<IsCustomizable>1</IsCustomizable>", b"<IsCustomizable>0</IsCustomizable>"
        ),
    )

    both = unpack_solution(managed, package_type=PackageType.BOTH, managed_source=unmanaged)  # either order

    assert both.managed_differences_not_kept  # not silently dropped: the command prints each as a warning
    assert all(not path.endswith("_managed.xml") for path in both.managed_differences_not_kept)


def test_both_needs_one_unmanaged_and_one_managed_zip_of_the_same_version() -> None:
    with pytest.raises(PackageError, match="not the same solution version"):
        unpack_solution(
            SOLUTIONS / "IncidentReporting_1_0_0_4.zip",
            package_type=PackageType.BOTH,
            managed_source=SOLUTIONS / "IncidentReporting_1_0_0_5_managed.zip",
        )
    with pytest.raises(PackageError, match="one unmanaged and one managed"):
        unpack_solution(
            SOLUTIONS / "IncidentReporting_1_0_0_4.zip",
            package_type=PackageType.BOTH,
            managed_source=SOLUTIONS / "IncidentReporting_1_0_0_2.zip",
        )
    with pytest.raises(PackageError, match="needs the managed zip"):
        unpack_solution(SOLUTIONS / "IncidentReporting_1_0_0_4.zip", package_type=PackageType.BOTH)
    with pytest.raises(PackageError, match="cannot be unpacked as managed"):
        unpack_solution(SOLUTIONS / "IncidentReporting_1_0_0_4.zip", package_type=PackageType.MANAGED)


def test_the_order_of_a_table_s_forms_and_views_does_not_change_its_content_hash_but_a_form_s_layout_does() -> None:
    source = SOLUTIONS / "IncidentReporting_1_0_0_4.zip"

    def swap_views(entries: dict[str, bytes]) -> None:
        text = entries["customizations.xml"]
        views = re.findall(rb"<savedquery>.*?</savedquery>", text, re.DOTALL)
        entries["customizations.xml"] = (
            text.replace(views[0], b"\0").replace(views[1], views[0]).replace(b"\0", views[1])
        )

    def swap_tabs(entries: dict[str, bytes]) -> None:
        _replace(entries, "customizations.xml", b'verticallayout="true"', b'verticallayout="false"')

    def table(data: Path | bytes) -> str:
        return next(t.content_hash for t in read_solution_zip(data).tables if t.key == "csa_csincident")

    assert table(_zip_with(source, swap_views)) == table(source)
    assert table(_zip_with(source, swap_tabs)) != table(source)


# ---- refusals ---------------------------------------------------------------------------------------------------


def test_a_web_resource_name_that_would_climb_out_of_the_folder_is_refused() -> None:
    data = _zip_with(
        SOLUTIONS / "SecondaryRecordSource_SampleSolution_1_23091_1_managed.zip",
        lambda entries: _replace(
            entries,
            "customizations.xml",
            b"<Name>new_SecondaryRecordSource</Name>",
            b"<Name>new_/../../../evil.js</Name>",
        ),
    )

    with pytest.raises(PackageError) as refused:
        unpack_solution(data)

    assert refused.value.code is PackageErrorCode.UNSAFE_NAME


def test_a_zip_entry_that_escapes_is_refused_by_the_zip_reader() -> None:
    data = _zip_with(SOLUTIONS / "UpdateCreatedBy_1_0_0_1.zip", lambda entries: entries.update({"../evil": b"x"}))

    with pytest.raises(PackageError) as refused:
        unpack_solution(data)

    assert refused.value.code is PackageErrorCode.UNSAFE_NAME


def test_names_that_only_differ_in_case_cannot_overwrite_each_other() -> None:
    def duplicate_role(entries: dict[str, bytes]) -> None:
        text = entries["customizations.xml"]
        role = re.search(rb"<Role [^>]*>.*?</Role>", text, re.DOTALL)
        assert role is not None
        twin = role.group(0).replace(b'name="CEO"', b'name="ceo"')
        entries["customizations.xml"] = text.replace(role.group(0), role.group(0) + twin)

    with pytest.raises(PackageError, match="would be written to"):
        unpack_solution(_zip_with(SOLUTIONS / "TravelRequestApprovalApp_1_0_0_6.solution.zip", duplicate_role))


def test_role_names_with_path_characters_stay_one_file_inside_roles() -> None:
    data = _zip_with(
        SOLUTIONS / "TravelRequestApprovalApp_1_0_0_6.solution.zip",
        lambda entries: _replace(entries, "customizations.xml", b'name="CEO"', b'name="Chief/Exec: *Officer*"'),
    )

    files = unpack_solution(data).files

    assert "Roles/Chief_Exec_ _Officer_.xml" in files
    assert [d.entry for d in compare_packages(data, pack_files(files).data)] == ["[Content_Types].xml"]


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        (ZipLimits(max_entries=10), PackageErrorCode.TOO_MANY_ENTRIES),
        (ZipLimits(max_total_bytes=100_000), PackageErrorCode.TOO_LARGE),
    ],
)
def test_unpack_and_pack_read_under_the_upload_limits(limits: ZipLimits, code: PackageErrorCode) -> None:
    source = SOLUTIONS / "TravelRequestApprovalApp_1_0_0_6.solution.zip"
    with pytest.raises(PackageError) as unpack_refused:
        unpack_solution(source, limits=limits)
    with pytest.raises(PackageError) as pack_refused:
        pack_folder(PAIRS / "termbuddy" / "unpacked", limits=limits)

    assert unpack_refused.value.code is code and pack_refused.value.code is code


@pytest.fixture
def unpacked_travel(tmp_path: Path) -> Path:
    folder = tmp_path / "travel"
    write_folder(unpack_solution(SOLUTIONS / "TravelRequestApprovalApp_1_0_0_6.solution.zip").files, folder)
    return folder


def test_pack_refuses_a_folder_holding_another_flavour(unpacked_travel: Path) -> None:
    with pytest.raises(PackageError, match="holds a unmanaged solution; it cannot be packed as managed"):
        pack_folder(unpacked_travel, package_type=PackageType.MANAGED)


def test_pack_refuses_managed_from_both_when_a_form_has_no_managed_twin(tmp_path: Path) -> None:
    folder = tmp_path / "both"
    both = unpack_solution(
        SOLUTIONS / "IncidentReporting_1_0_0_2.zip",
        package_type=PackageType.BOTH,
        managed_source=SOLUTIONS / "IncidentReporting_1_0_0_1_managed.zip",
    )
    write_folder(both.files, folder)
    (folder / "Entities/csa_csIncident/FormXml/main/{c4e67c30-2237-4aab-943b-51150dd6f93e}_managed.xml").unlink()

    with pytest.raises(PackageError, match="has no managed twin"):
        pack_folder(folder, package_type=PackageType.MANAGED)
    assert pack_folder(folder).package_type is PackageType.UNMANAGED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda folder: (folder / "Other" / "Notes.xml").write_text("<a/>"), "not a file this packer knows"),
        (lambda folder: (folder / "Roles" / "Extra.xml").write_text("<NotARole/>"), "must hold <Role>"),
        (
            lambda folder: (folder / "Other" / "Customizations.xml").write_bytes(
                (folder / "Other" / "Customizations.xml").read_bytes().replace(b"<Roles />", b"")
            ),
            "not referenced from Other/Customizations.xml",
        ),
        (
            lambda folder: (
                folder / "Workflows/SetRequestRulesName-80472D75-A762-ED11-9562-002248212F5A.xaml"
            ).unlink(),
            "is not in the folder",
        ),
        (lambda folder: (folder / "Other" / "Solution.xml").unlink(), "no Other/Solution.xml"),
        (lambda folder: (folder / "Roles" / "link.xml").symlink_to("/etc/passwd"), "symbolic link"),
        (lambda folder: os.mkfifo(folder / "Roles" / "pipe.xml"), "not a regular file"),
    ],
    ids=["unknown-other-file", "wrong-root", "unreferenced-files", "missing-content", "no-solution", "symlink", "fifo"],
)
def test_pack_refuses_what_it_cannot_place(
    unpacked_travel: Path, tmp_path: Path, change: Callable[[Path], object], message: str
) -> None:
    change(unpacked_travel)

    with pytest.raises(PackageError, match=message):
        pack_folder(unpacked_travel)


def test_a_file_name_climbing_out_of_the_zip_is_refused_on_pack(unpacked_travel: Path) -> None:
    data_xml = unpacked_travel / "Workflows/SetRequestRulesName-80472D75-A762-ED11-9562-002248212F5A.xaml.data.xml"
    data_xml.write_bytes(data_xml.read_bytes().replace(b"<XamlFileName>/Workflows/", b"<XamlFileName>/../"))

    with pytest.raises(PackageError) as refused:
        pack_folder(unpacked_travel)

    assert refused.value.code is PackageErrorCode.UNSAFE_NAME


def test_write_folder_writes_all_or_nothing_and_never_into_a_non_empty_folder(tmp_path: Path) -> None:
    files = {"Other/Solution.xml": b"<a/>", "Other/x/../../../escape.txt": b"x"}
    target = tmp_path / "out"

    with pytest.raises(PackageError):
        write_folder(files, target)
    assert not target.exists() and os.listdir(tmp_path) == []

    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(PackageError, match="not empty"):
        write_folder({"Other/Solution.xml": b"<a/>"}, target)
    assert os.listdir(target) == ["keep.txt"]

    write_folder({"Other/Solution.xml": b"<a/>"}, target, replace=True)
    assert sorted(os.listdir(target)) == ["Other"]


def test_the_same_folder_packs_to_the_same_bytes(unpacked_travel: Path) -> None:
    assert pack_folder(unpacked_travel).data == pack_folder(unpacked_travel).data
