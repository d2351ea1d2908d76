"""The full verification of the audit chain as a job: above the job engine, which runs it, and above the audit
app, which only provides the walk (alm_portal.audit.services.audit_verify)."""
