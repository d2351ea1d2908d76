"""Unpack solution zips into, and pack them from, the folder layout of Microsoft's SolutionPackager.

``pac solution unpack`` / ``SolutionPackager /action:Extract`` is how teams put solutions under source control;
this package reads and writes the same layout (Other/Solution.xml, Other/Customizations.xml, Entities/,
Workflows/, ...) so that a folder we write can be packed by ``pac`` and a folder ``pac`` wrote can be packed here.
docs/solution-packager.md documents the layout, the commands and what is equal to SolutionPackager's output.

Pure Python and part of the Dataverse client library: nothing here may import Django, DRF or Celery. Every zip and
folder is read under the package limits the product applies to uploads, and every XML part goes through
``package.xmlsafe.parse_xml`` first.
"""

from .compare import EntryDifference, canonical_xml, compare_packages
from .folders import write_file, write_folder
from .pack import PackedSolution, content_types_xml, folder_package_type, pack_files, pack_folder, read_folder
from .unpack import PackageType, UnpackedSolution, unpack_solution

__all__ = [
    "EntryDifference",
    "PackageType",
    "PackedSolution",
    "UnpackedSolution",
    "canonical_xml",
    "compare_packages",
    "content_types_xml",
    "folder_package_type",
    "pack_files",
    "pack_folder",
    "read_folder",
    "unpack_solution",
    "write_file",
    "write_folder",
]
