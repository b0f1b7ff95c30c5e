"""docker-compose.yml, checked structurally (Docker is not available to the test suite).

What it proves: every service the Airflow deployment needs is there with the right command,
health check and start order; one PostgreSQL serves both databases; our code and the report
folder are mounted; the `celery` profile adds redis and a worker. What it cannot prove: that
the images build and the stack starts (see docs/airflow.md for the manual check).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(service: dict) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _env(service: dict) -> dict:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def _healthcheck(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_services_present(compose):
    services = compose["services"]
    for name in ["postgres", "airflow-init", *AIRFLOW_SERVICES, "redis", "airflow-worker"]:
        assert name in services, name
    assert services["postgres"]["image"].startswith("postgres:16")


def test_default_stack_excludes_celery_services(compose):
    services = compose["services"]
    default = [n for n, s in services.items() if not s.get("profiles")]
    assert set(default) == {"postgres", "airflow-init", *AIRFLOW_SERVICES}
    assert services["redis"]["profiles"] == ["celery"]
    assert services["airflow-worker"]["profiles"] == ["celery"]


def test_airflow_image_is_built_from_the_official_one(compose):
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"apache/airflow:3\.3\.2-python3\.11", dockerfile)
    assert "requirements.txt" in dockerfile and "pip install" in dockerfile
    assert re.search(r"pip install .*-e /opt/billing", dockerfile)
    for name in ["airflow-init", *AIRFLOW_SERVICES, "airflow-worker"]:
        build = compose["services"][name]["build"]
        assert build["dockerfile"] == "docker/Dockerfile" and build["context"] == "."


@pytest.mark.parametrize("service, subcommand", [
    ("airflow-apiserver", "airflow api-server"),
    ("airflow-scheduler", "airflow scheduler"),
    ("airflow-dag-processor", "airflow dag-processor"),
    ("airflow-triggerer", "airflow triggerer"),
    ("airflow-worker", "airflow celery worker"),
])
def test_service_commands(compose, service, subcommand):
    assert subcommand in _command(compose["services"][service])


def test_init_migrates_creates_pool_user_and_billing_schema(compose):
    init = compose["services"]["airflow-init"]
    script = _command(init)
    assert "airflow db migrate" in script
    assert re.search(r"airflow pools set billing_posting 1\b", script)
    assert "billing-jobs upgrade-db" in script  # the billing schema (Alembic) to head
    assert "simple_auth_manager_passwords" in script
    env = _env(init)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/config/")
    assert init.get("restart") == "no"
    assert init["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_airflow_services_wait_for_postgres_and_init(compose):
    for name in [*AIRFLOW_SERVICES, "airflow-worker"]:
        deps = compose["services"][name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert (compose["services"]["airflow-worker"]["depends_on"]["redis"]["condition"]
            == "service_healthy")


def test_every_long_running_service_has_a_healthcheck(compose):
    checks = {name: _healthcheck(s) for name, s in compose["services"].items()
              if name != "airflow-init"}
    assert "pg_isready" in checks["postgres"]
    assert "redis-cli ping" in checks["redis"]
    assert "8080/api/v2/version" in checks["airflow-apiserver"]
    assert "8974/health" in checks["airflow-scheduler"]
    assert "DagProcessorJob" in checks["airflow-dag-processor"]
    assert "TriggererJob" in checks["airflow-triggerer"]
    assert "inspect ping" in checks["airflow-worker"]
    assert _env(compose["services"]["airflow-scheduler"])[
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_one_postgres_holds_both_databases(compose):
    pg = compose["services"]["postgres"]
    init_mount = [v for v in pg["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init_mount and init_mount[0].startswith("./docker/postgres-init:")
    sql = "\n".join(p.read_text() for p in sorted((ROOT / "docker" / "postgres-init").glob("*.sql")))
    assert re.search(r"CREATE DATABASE airflow\b", sql)
    assert re.search(r"CREATE DATABASE billing\b", sql)
    env = _env(compose["services"]["airflow-scheduler"])
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert re.fullmatch(r"postgresql\+psycopg://\w+:\w+@postgres:5432/billing", env["BILLING_DB_URL"])
    assert any(v.startswith("postgres-data:") for v in pg["volumes"])
    assert "postgres-data" in compose["volumes"]


def test_code_and_reports_are_mounted_in_every_airflow_container(compose):
    for name in ["airflow-init", *AIRFLOW_SERVICES, "airflow-worker"]:
        service = compose["services"][name]
        targets = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert targets["/opt/airflow/dags"] == "./dags", name
        assert targets["/opt/billing/billing_jobs"] == "./billing_jobs", name
        assert targets["/opt/billing/sql"] == "./sql", name
        assert targets["/opt/airflow/reports"] == "./reports", name
        assert _env(service)["BILLING_REPORT_DIR"] == "/opt/airflow/reports", name


def test_executors(compose):
    scheduler = _env(compose["services"]["airflow-scheduler"])
    assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    worker = _env(compose["services"]["airflow-worker"])
    assert worker["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert worker["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert scheduler["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == \
        "http://airflow-apiserver:8080/execution/"
    # every component signs/verifies with the same JWT secret
    secrets = {_env(compose["services"][n])["AIRFLOW__API_AUTH__JWT_SECRET"]
               for n in [*AIRFLOW_SERVICES, "airflow-worker"]}
    assert len(secrets) == 1


def test_ui_port_published(compose):
    ports = compose["services"]["airflow-apiserver"]["ports"]
    assert any(str(p).endswith(":8080") for p in ports)


def test_build_context_leaves_out_the_venv_and_reports():
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**")] == "**"  # everything out, then only what the image copies
    copied = set(re.findall(r"^COPY \S+ (\S+) ", (ROOT / "docker" / "Dockerfile").read_text(), re.M))
    assert {"requirements.txt", "pyproject.toml", "billing_jobs", "sql", "dags"} <= copied
    for path in copied:
        assert f"!{path.rstrip('/')}" in ignore or f"!{path.rstrip('/')}/" in ignore, path


def test_dag_folder_and_package_paths_exist():
    assert (ROOT / "dags" / "package_billing.py").is_file()
    assert (ROOT / "billing_jobs").is_dir() and (ROOT / "sql").is_dir()
    assert (ROOT / "docs" / "airflow.md").is_file()


# Read only by tests or by hand (crash injection), never set in a deployment.
TEST_ONLY_SETTINGS = {"BILLING_CRASH_AT", "BILLING_PAUSE_AT", "BILLING_WORKER_NAME"}


def _settings_read_by_the_code() -> set[str]:
    names = set()
    for path in [*ROOT.joinpath("billing_jobs").rglob("*.py"), *ROOT.joinpath("dags").glob("*.py")]:
        names |= set(re.findall(r"\bBILLING_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    return names - TEST_ONLY_SETTINGS - {"BILLING_DB_CONN_ID"}


TASK_SERVICES = ["airflow-init", *AIRFLOW_SERVICES, "airflow-worker"]


@pytest.mark.parametrize("name", TASK_SERVICES)
def test_every_setting_the_code_reads_reaches_every_service_running_tasks(compose, name):
    """A deployment set to post (BILLING_SIMULATE_DEFAULT=false in .env) really posts."""
    service = compose["services"][name]
    env = _env(service)
    wanted = _settings_read_by_the_code()
    assert {"BILLING_SIMULATE_DEFAULT", "BILLING_DB_RETRIES", "BILLING_DB_RETRY_DELAY_S"} <= wanted
    assert sorted(wanted - set(env)) == [], name
    env_file = service["env_file"]
    assert env_file == [{"path": ".env", "required": False}], name
    # a value set in .env wins over the default: ${NAME:-default}, never a fixed value
    for key in ("BILLING_SIMULATE_DEFAULT", "BILLING_DB_RETRIES", "BILLING_DB_RETRY_DELAY_S"):
        assert env[key].startswith("${" + key + ":-"), (name, key, env[key])


def test_docs_list_every_setting(compose):
    docs = (ROOT / "docs" / "airflow.md").read_text()
    missing = sorted(n for n in _settings_read_by_the_code() if f"`{n}`" not in docs)
    assert missing == []
