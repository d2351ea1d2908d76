"""Limits that keep one client from using up the portal: API throttles and concurrent exports.

State lives in the default cache, shared by every process: Redis when REDIS_URL is set, otherwise the
database cache table this app's migration creates (`alm_cache`). Rates and counts are settings
(README "Configuration"; docs/security.md "Limits and throttles").
"""
