-- An existing installation with one database role (in the old docker-compose.yml, POSTGRES_USER=alm: a
-- superuser that owns everything) moves to the owner and application roles of docs/security.md. Run it once,
-- as a superuser, in the portal's database, with web, worker and beat stopped (docs/upgrading.md):
--
--   psql -v ON_ERROR_STOP=1 -v owner=alm_owner -v app=alm_app \
--        -v owner_password='...' -v app_password='...' -d alm -f deploy/postgres/upgrade-to-roles.sql
--
-- Then run `manage.py migrate` with DATABASE_MIGRATE_URL (alm_owner) and DATABASE_URL (alm_app): it grants
-- alm_app its rights. The old role keeps its login; nothing in the portal uses it any more.

CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT PASSWORD :'app_password';

SELECT current_database() AS db \gset
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"owner";
GRANT CONNECT ON DATABASE :"db" TO :"app";
ALTER SCHEMA public OWNER TO :"owner";
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- Every table (its identity sequences follow it), other sequence, view and function of the schema changes
-- hands. REASSIGN OWNED cannot do this when the old role is the bootstrap superuser, which owns the system
-- catalogues too.
SELECT set_config('alm.new_owner', :'owner', false);
DO $$
DECLARE
    owner text := current_setting('alm.new_owner');
    item record;
BEGIN
    FOR item IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
                       CASE item.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                         WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                       item.name, owner);
    END LOOP;
    FOR item IN SELECT p.oid::regprocedure AS name FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', item.name, owner);
    END LOOP;
END
$$;
RESET alm.new_owner;
