"""Solution package reader: safe zip reading, manifests, diffs and re-versioning.

Pure Python and part of the Dataverse client library: nothing here may import Django, DRF or Celery.
"""

from .component_types import COMPONENT_TYPE_NAMES, component_type_name
from .diff import ComponentChange, ComponentRef, DataLoss, ManifestDiff, diff_manifests
from .errors import PackageError, PackageErrorCode
from .manifest import (
    CanvasApp,
    Component,
    ComponentKind,
    ConnectionReference,
    CustomConnector,
    DependencyNode,
    EnvironmentVariable,
    MissingDependency,
    ModelDrivenApp,
    OptionSet,
    PackageFile,
    PluginAssembly,
    PluginStep,
    Publisher,
    RootComponent,
    SecurityRole,
    SiteMap,
    SolutionManifest,
    Table,
    WebResource,
    Workflow,
)
from .readers import read_solution_folder, read_solution_package, read_solution_zip
from .reversion import reversion_package
from .versions import SolutionVersion, VersionPart, versions_equivalent
from .zipsafety import (
    ALLOWED_PACKAGE_SUFFIXES,
    MAX_COMPRESSION_RATIO,
    MAX_ENTRIES,
    MAX_TOTAL_UNCOMPRESSED_BYTES,
    RATIO_GRACE_BYTES,
    ZipEntry,
    ZipLimits,
    ZipScan,
    scan_zip,
)

__all__ = [
    "ALLOWED_PACKAGE_SUFFIXES",
    "COMPONENT_TYPE_NAMES",
    "MAX_COMPRESSION_RATIO",
    "MAX_ENTRIES",
    "MAX_TOTAL_UNCOMPRESSED_BYTES",
    "RATIO_GRACE_BYTES",
    "CanvasApp",
    "Component",
    "ComponentChange",
    "ComponentKind",
    "ComponentRef",
    "ConnectionReference",
    "CustomConnector",
    "DataLoss",
    "DependencyNode",
    "EnvironmentVariable",
    "ManifestDiff",
    "MissingDependency",
    "ModelDrivenApp",
    "OptionSet",
    "PackageError",
    "PackageErrorCode",
    "PackageFile",
    "PluginAssembly",
    "PluginStep",
    "Publisher",
    "RootComponent",
    "SecurityRole",
    "SiteMap",
    "SolutionManifest",
    "SolutionVersion",
    "Table",
    "VersionPart",
    "WebResource",
    "Workflow",
    "ZipEntry",
    "ZipLimits",
    "ZipScan",
    "component_type_name",
    "diff_manifests",
    "read_solution_folder",
    "read_solution_package",
    "read_solution_zip",
    "reversion_package",
    "scan_zip",
    "versions_equivalent",
]
