"""Code tables used when describing solution components to people."""

from __future__ import annotations

# solutioncomponent.componenttype choices, from MicrosoftDocs/powerapps-docs
# powerapps-docs/developer/data-platform/reference/entities/solutioncomponent.md at commit
# 05cfff5341d4db7cec326318fdd63b9618e9c206 ("ComponentType Choices/Options"). 80 (AppModule) is missing from that
# page and comes from third-party tables quoted in docs/dataverse.md §3.2.
# The page lists 371 and 372 both as "Connector"; real exports use 372 for custom connectors.
COMPONENT_TYPE_NAMES: dict[int, str] = {
    1: "Entity",
    2: "Attribute",
    3: "Relationship",
    4: "Attribute Picklist Value",
    5: "Attribute Lookup Value",
    6: "View Attribute",
    7: "Localized Label",
    8: "Relationship Extra Condition",
    9: "Option Set",
    10: "Entity Relationship",
    11: "Entity Relationship Role",
    12: "Entity Relationship Relationships",
    13: "Managed Property",
    14: "Entity Key",
    16: "Privilege",
    17: "PrivilegeObjectTypeCode",
    18: "Index",
    20: "Role",
    21: "Role Privilege",
    22: "Display String",
    23: "Display String Map",
    24: "Form",
    25: "Organization",
    26: "Saved Query",
    29: "Workflow",
    31: "Report",
    32: "Report Entity",
    33: "Report Category",
    34: "Report Visibility",
    35: "Attachment",
    36: "Email Template",
    37: "Contract Template",
    38: "KB Article Template",
    39: "Mail Merge Template",
    44: "Duplicate Rule",
    45: "Duplicate Rule Condition",
    46: "Entity Map",
    47: "Attribute Map",
    48: "Ribbon Command",
    49: "Ribbon Context Group",
    50: "Ribbon Customization",
    52: "Ribbon Rule",
    53: "Ribbon Tab To Command Map",
    55: "Ribbon Diff",
    59: "Saved Query Visualization",
    60: "System Form",
    61: "Web Resource",
    62: "Site Map",
    63: "Connection Role",
    64: "Complex Control",
    65: "Hierarchy Rule",
    66: "Custom Control",
    68: "Custom Control Default Config",
    70: "Field Security Profile",
    71: "Field Permission",
    80: "AppModule",
    90: "Plugin Type",
    91: "Plugin Assembly",
    92: "SDK Message Processing Step",
    93: "SDK Message Processing Step Image",
    95: "Service Endpoint",
    150: "Routing Rule",
    151: "Routing Rule Item",
    152: "SLA",
    153: "SLA Item",
    154: "Convert Rule",
    155: "Convert Rule Item",
    161: "Mobile Offline Profile",
    162: "Mobile Offline Profile Item",
    165: "Similarity Rule",
    166: "Data Source Mapping",
    201: "SDKMessage",
    202: "SDKMessageFilter",
    203: "SdkMessagePair",
    204: "SdkMessageRequest",
    205: "SdkMessageRequestField",
    206: "SdkMessageResponse",
    207: "SdkMessageResponseField",
    208: "Import Map",
    210: "WebWizard",
    300: "Canvas App",
    371: "Connector",
    372: "Connector",
    380: "Environment Variable Definition",
    381: "Environment Variable Value",
    400: "AI Project Type",
    401: "AI Project",
    402: "AI Configuration",
    430: "Entity Analytics Configuration",
    431: "Attribute Image Configuration",
    432: "Entity Image Configuration",
}

# Newer components (bots, connection references, custom APIs, ...) are rows of ordinary tables, and their
# component type is that table's object type code, which is >= 10000 and differs between environments
# (docs/dataverse.md §3.2, "Connection reference componenttype ... UNCONFIRMED"). We cannot name them reliably.
FIRST_TABLE_BASED_TYPE_CODE = 10_000


def component_type_name(code: int) -> str:
    """A human-readable name for a solution component type code."""
    name = COMPONENT_TYPE_NAMES.get(code)
    if name is not None:
        return name
    if code >= FIRST_TABLE_BASED_TYPE_CODE:
        return f"Table-based component (object type code {code}, environment-specific)"
    return f"Unknown component type {code}"


# workflow.category choices, from MicrosoftDocs/powerapps-docs
# powerapps-docs/developer/data-platform/reference/entities/workflow.md at commit
# 06570acda9b264783a6b7732e4ce286ea3d3c45f ("Category Choices/Options").
WORKFLOW_CATEGORY_NAMES: dict[int, str] = {
    0: "Workflow",
    1: "Dialog",
    2: "Business Rule",
    3: "Action",
    4: "Business Process Flow",
    5: "Modern Flow",
    6: "Desktop Flow",
    7: "AI Flow",
}

# environmentvariabledefinition.type choices (docs/dataverse.md §12, ENT-EVDEF).
ENVIRONMENT_VARIABLE_TYPE_NAMES: dict[int, str] = {
    100000000: "String",
    100000001: "Number",
    100000002: "Boolean",
    100000003: "JSON",
    100000004: "Data Source",
    100000005: "Secret",
}
