"""Solution zips for emulator tests: the corpus files kept in the repo, and small synthetic packages.

Corpus copies live in tests/fixtures/reference/solutions/ (see the ATTRIBUTION.md there) and in
dataverse_emulator/demo_solutions/. Synthetic packages are written here with zipfile, independently
of the emulator's own package code, following the shapes of docs/dataverse.md §11.1/§11.2.
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

REPO = Path(__file__).resolve().parents[2]
SOLUTION_DIRS = [
    REPO / "tests" / "fixtures" / "reference" / "solutions",
    REPO / "dataverse_emulator" / "demo_solutions",
]
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/octet-stream" /></Types>'
)


def corpus(name: str) -> bytes:
    """A corpus zip by file name."""
    for directory in SOLUTION_DIRS:
        path = directory / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(name)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_solution(
    name: str,
    version: str,
    *,
    managed: bool = True,
    publisher: str = "emutestpub",
    prefix: str = "emt",
    tables: tuple[str, ...] = (),
    workflows: tuple[tuple[str, str], ...] = (),
    missing: tuple[dict[str, str], ...] = (),
    omit: str | None = None,
    solution_xml: str | None = None,
    web_resources: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A minimal solution zip. ``tables`` are custom table logical names (each gets a name column);
    ``workflows`` and ``web_resources`` are (guid, name) pairs; ``missing`` are Required attribute dicts of
    MissingDependencies; ``omit`` drops one root file (to provoke 0x80048060)."""
    roots = [f'<RootComponent type="1" schemaName="{t}" behavior="0" />' for t in tables]
    roots += [f'<RootComponent type="29" id="{{{g}}}" behavior="0" />' for g, _ in workflows]
    roots += [f'<RootComponent type="61" schemaName="{n}" behavior="0" />' for _, n in web_resources]
    missing_xml = "".join(
        "<MissingDependency><Required "
        + " ".join(f"{k}={quoteattr(v)}" for k, v in required.items())
        + f' /><Dependent type="1" schemaName="{tables[0] if tables else name.lower()}" /></MissingDependency>'
        for required in missing
    )
    header = (
        '<ImportExportXml version="9.2.25093.134" SolutionPackageVersion="9.2" languagecode="1033" '
        'generatedBy="CrmLive" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    )
    manifest = (
        solution_xml
        or f"""{header}
  <SolutionManifest>
    <UniqueName>{escape(name)}</UniqueName>
    <LocalizedNames><LocalizedName description={quoteattr(name + " (test)")} languagecode="1033" /></LocalizedNames>
    <Descriptions />
    <Version>{escape(version)}</Version>
    <Managed>{1 if managed else 0}</Managed>
    <Publisher>
      <UniqueName>{escape(publisher)}</UniqueName>
      <LocalizedNames><LocalizedName description={quoteattr(publisher)} languagecode="1033" /></LocalizedNames>
      <Descriptions />
      <CustomizationPrefix>{prefix}</CustomizationPrefix>
      <CustomizationOptionValuePrefix>12345</CustomizationOptionValuePrefix>
    </Publisher>
    <RootComponents>{"".join(roots)}</RootComponents>
    <MissingDependencies>{missing_xml}</MissingDependencies>
  </SolutionManifest>
</ImportExportXml>"""
    )
    entities = "".join(
        f"""<Entity><Name LocalizedName="{t}" OriginalName="{t}">{t}</Name><EntityInfo><entity Name="{t}">
<LocalizedNames><LocalizedName description="{t}" languagecode="1033" /></LocalizedNames>
<LocalizedCollectionNames><LocalizedCollectionName description="{t}s" languagecode="1033" /></LocalizedCollectionNames>
<attributes>
<attribute PhysicalName="{prefix}_Name"><Type>nvarchar</Type><Name>{prefix}_name</Name>
<LogicalName>{prefix}_name</LogicalName></attribute>
<attribute PhysicalName="{t}Id"><Type>primarykey</Type><Name>{t}id</Name><LogicalName>{t}id</LogicalName></attribute>
</attributes>
<EntitySetName>{t}s</EntitySetName></entity></EntityInfo></Entity>"""
        for t in tables
    )
    flows = "".join(
        f'<Workflow WorkflowId="{{{g}}}" Name={quoteattr(n)}><Category>5</Category></Workflow>' for g, n in workflows
    )
    resources = "".join(
        f"<WebResource><WebResourceId>{{{g}}}</WebResourceId><Name>{escape(n)}</Name>"
        f"<DisplayName>{escape(n)}</DisplayName><WebResourceType>3</WebResourceType></WebResource>"
        for g, n in web_resources
    )
    customizations = (
        '<ImportExportXml xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<Entities>{entities}</Entities><Roles /><Workflows>{flows}</Workflows><optionsets />"
        f"<WebResources>{resources}</WebResources>"
        "<Languages><Language>1033</Language></Languages></ImportExportXml>"
    )
    files = {"solution.xml": manifest, "customizations.xml": customizations, "[Content_Types].xml": CONTENT_TYPES}
    if omit:
        files.pop(omit)
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file_name, content in files.items():
            archive.writestr(file_name, content)
    return output.getvalue()


def manifest_of(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read("solution.xml").decode("utf-8-sig")
