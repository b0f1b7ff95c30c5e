-- Runs once, when the PostgreSQL data volume is first created (docker-entrypoint-initdb.d).
-- One server, two databases: Airflow's metadata and the billing data (ledger, runs...).
-- Passwords here are the local-development defaults of docker-compose.yml; change both
-- together (or pass real secrets) for anything beyond a laptop.

CREATE ROLE airflow LOGIN PASSWORD 'airflow';
CREATE DATABASE airflow OWNER airflow;

CREATE ROLE billing LOGIN PASSWORD 'billing';
CREATE DATABASE billing OWNER billing;

-- PostgreSQL 15+ no longer lets every role create in schema public; the owners above own
-- their database, and therefore its public schema (pg_database_owner), so migrations work.
