"""docker-compose.yml and the Dockerfile stay in step with the code they run: the settings the
worker and the API read, the CLI commands the image starts, the search attributes the workflows
upsert, the files the image needs. No Docker engine needed: the compose file is validated against
the Compose specification's schema (check-jsonschema) and the Dockerfile is linted (hadolint), both
from the `test` extra; `docker compose config` runs too where the CLI is installed."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
import tomllib
import uuid
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from typer.testing import CliRunner

from activities.render import TEMPLATES_DIR
from activities.store import MIGRATIONS_DIR
from settings import Settings
from starter.cli import app
from workflows.core.search import ALL_KEYS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

STACK = {"postgresql", "temporal-schema", "temporal", "temporal-namespace", "temporal-ui", "mailpit", "worker", "api"}
FOLLOWUPS = ("worker", "api")
# The user's environment for `docker compose up`: the secrets the stack refuses to start without.
USER_ENV = {"FOLLOWUPS_SIGNING_SECRET": "signing-secret-from-env", "FOLLOWUPS_API_KEYS": "key-1,key-2"}
# Who needs which secret: the worker signs unsubscribe links, the API checks them and its keys.
NEEDS_SECRET = {"worker": {"FOLLOWUPS_SIGNING_SECRET"}, "api": {"FOLLOWUPS_SIGNING_SECRET", "FOLLOWUPS_API_KEYS"}}


@functools.cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def tool(name: str) -> Path:
    """A command-line tool the `test` extra installs beside this interpreter (not whatever is on PATH)."""
    path = Path(sysconfig.get_path("scripts")) / name
    assert path.is_file(), f"{name} is not installed: pip install -e '.[test]'"
    return path


def services() -> dict:
    return compose()["services"]


def setting_env_names() -> dict[str, str]:
    """Environment variable → Settings field, as pydantic-settings reads them."""
    prefix = Settings.model_config.get("env_prefix") or ""
    names = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = [alias] if isinstance(alias, str) else getattr(alias, "choices", None) or [f"{prefix}{field}"]
        for choice in choices:
            names[choice if Settings.model_config.get("case_sensitive") else choice.upper()] = field
    return names


def secret_env_names() -> set[str]:
    """Settings kept out of reprs: SecretStr fields and the API keys (repr=False)."""
    fields = Settings.model_fields
    return {env for env, field in setting_env_names().items()
            if "SecretStr" in str(fields[field].annotation) or fields[field].repr is False}


BARE_VARIABLE = re.compile(r"\$([A-Za-z_]\w*)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}` (nestable), `${VAR:?error}`."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if j >= len(text):
                    raise ValueError(f"unclosed ${{ in {text!r}")
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            name, op, rest = re.fullmatch(r"([A-Za-z_]\w*)(:-|-|:\?|\?)?(.*)", text[i + 2:j - 1], re.S).groups()
            value = env.get(name)
            if op in (":-", ":?") and not value or op in ("-", "?") and value is None:
                if op.endswith("?"):
                    raise LookupError(f"{name}: {rest}")
                value = interpolate(rest, env)
            out.append(value or "")
            i = j
        elif match := BARE_VARIABLE.match(text, i):
            out.append(env.get(match[1], ""))
            i = match.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def raw_environment(service: str) -> dict[str, str | None]:
    raw = services()[service].get("environment") or {}
    if isinstance(raw, list):
        raw = {k: (v if sep else None) for k, sep, v in (item.partition("=") for item in raw)}
    return {k: None if v is None else str(v) for k, v in raw.items()}


def environment(service: str, **user_env: str) -> dict[str, str]:
    """What the container gets: interpolated from the user's environment; a key without a value
    is passed through from it, or left out when the user has not set it."""
    env = {**USER_ENV, **user_env}
    resolved = {}
    for key, value in raw_environment(service).items():
        if value is None:
            if key in env:
                resolved[key] = env[key]
        else:
            resolved[key] = interpolate(value, env)
    return resolved


def settings_of(service: str, monkeypatch: pytest.MonkeyPatch, **user_env: str) -> Settings:
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    for key, value in environment(service, **user_env).items():
        monkeypatch.setenv(key, value)
    return Settings()


def script(service: str) -> str:
    """A job's shell script as the container runs it (`$$` unescaped)."""
    command = services()[service]["command"]
    return interpolate(command if isinstance(command, str) else "\n".join(command), {})


def command_lines(service: str) -> list[list[str]]:
    return [shlex.split(line) for line in script(service).replace("\\\n", " ").splitlines() if line.strip()]


def depends_on(service: str) -> dict[str, str]:
    deps = services()[service].get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def image_of(service: str) -> str:
    return services()[service].get("image", "")


def service_with_image(prefix: str) -> str:
    [name] = [name for name in services() if image_of(name).startswith(prefix)]
    return name


def ports(service: str, **user_env: str) -> list[tuple[int, int]]:
    """(published, target) pairs, short or long syntax."""
    pairs = []
    for port in services()[service].get("ports", []):
        if isinstance(port, dict):
            pairs.append((int(interpolate(str(port["published"]), {**USER_ENV, **user_env})),
                          int(interpolate(str(port["target"]), {**USER_ENV, **user_env}))))
        else:
            parts = interpolate(str(port), {**USER_ENV, **user_env}).split("/")[0].split(":")
            pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


# --- the compose file -----------------------------------------------------------------------


def test_the_whole_stack_is_there():
    assert STACK <= set(services())
    for name in FOLLOWUPS:
        assert services()[name].get("build") in (".", {"context": "."}), f"{name} is not built from the Dockerfile"


def test_every_dependency_exists_and_its_condition_can_be_met():
    for name in services():
        for target, condition in depends_on(name).items():
            assert target in services(), f"{name} depends on {target}, which is not a service"
            if condition == "service_healthy":
                assert "healthcheck" in services()[target], f"{name} waits for {target}'s health: it has no check"
            if condition == "service_completed_successfully":
                restart = str(services()[target].get("restart", "no"))
                assert restart == "no" or restart.startswith("on-failure"), f"{target} is a job: it must exit"


def test_worker_and_api_set_only_real_settings():
    names = setting_env_names()
    for name in FOLLOWUPS:
        unknown = set(raw_environment(name)) - set(names)
        assert not unknown, f"{name} sets {sorted(unknown)}: not read by settings.Settings"


def test_worker_and_api_settings_validate(monkeypatch):
    for name in FOLLOWUPS:
        settings = settings_of(name, monkeypatch)
        assert settings.database_url and settings.smtp_host, f"`followups {name}` refuses to start without them"
        assert settings.signing_secret.get_secret_value() == USER_ENV["FOLLOWUPS_SIGNING_SECRET"]
    assert settings_of("api", monkeypatch).api_keys == ["key-1", "key-2"]


def test_secrets_come_from_the_users_environment_only():
    secrets = secret_env_names()
    for name in FOLLOWUPS:
        env = raw_environment(name)
        for key in secrets & set(env):
            if env[key] is not None:  # a key without a value is passed through: fine
                assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", env[key]), f"{name}: {key} must be ${{{key}:?message}}"
        assert NEEDS_SECRET[name] <= set(env), f"{name} would run with the settings' dev secrets"
    assert raw_environment("worker")["FOLLOWUPS_SIGNING_SECRET"] == raw_environment("api")["FOLLOWUPS_SIGNING_SECRET"]
    with pytest.raises(LookupError, match="FOLLOWUPS_API_KEYS"):
        interpolate(raw_environment("api")["FOLLOWUPS_API_KEYS"], {})


def test_everything_points_at_the_temporal_service(monkeypatch):
    temporal = service_with_image("temporalio/server:")
    frontend = f"{temporal}:{environment(temporal).get('FRONTEND_GRPC_PORT', '7233')}"
    namespace = environment("temporal-namespace")["TEMPORAL_NAMESPACE"]
    for name in FOLLOWUPS:
        settings = settings_of(name, monkeypatch)
        assert settings.temporal_address == frontend
        assert settings.temporal_namespace == namespace, f"{name} uses a namespace the stack does not create"
    assert environment("temporal-namespace")["TEMPORAL_ADDRESS"] == frontend
    assert environment("temporal-ui")["TEMPORAL_ADDRESS"] == frontend
    assert "temporal-namespace" in depends_on("worker") and "temporal-namespace" in depends_on("api")


def test_the_database_url_is_the_database_the_stack_creates(monkeypatch):
    postgres = service_with_image("postgres:")
    init_sql = "\n".join(compose()["configs"][config["source"]]["content"]
                         for config in services()[postgres].get("configs", [])
                         if config["target"].startswith("/docker-entrypoint-initdb.d/"))
    for user_env in ({}, {"DATABASE_PASSWORD": "chosen"}):
        for name in FOLLOWUPS:
            url = urlsplit(settings_of(name, monkeypatch, **user_env).database_url)
            assert url.hostname == postgres and (url.port or 5432) == 5432
            assert re.search(rf"CREATE DATABASE {url.path.lstrip('/')} OWNER {url.username};", init_sql)
            variable = re.search(r"\\getenv (\w+) (\w+)", init_sql)  # psql variable ← environment variable
            assert variable and re.search(rf"CREATE ROLE {url.username} LOGIN PASSWORD :'{variable[1]}';", init_sql)
            assert environment(postgres, **user_env)[variable[2]] == url.password, "the role's password differs"


def test_mail_goes_to_mailpit(monkeypatch):
    mailpit = service_with_image("axllent/mailpit:")
    smtp_port = int(environment(mailpit).get("MP_SMTP_BIND_ADDR", ":1025").rpartition(":")[2])
    for name in FOLLOWUPS:
        settings = settings_of(name, monkeypatch)
        assert (settings.smtp_host, settings.smtp_port, settings.smtp_tls) == (mailpit, smtp_port, "none")


def test_the_schema_job_creates_and_migrates_both_temporal_databases():
    temporal, postgres = service_with_image("temporalio/server:"), service_with_image("postgres:")
    server, job = environment(temporal), environment("temporal-schema")
    assert server["DB"] == job["SQL_PLUGIN"] == "postgres12"
    assert server["POSTGRES_SEEDS"] == job["SQL_HOST"] == postgres
    assert server["POSTGRES_PWD"] == job["SQL_PASSWORD"] == environment(postgres)["POSTGRES_PASSWORD"]
    assert depends_on(temporal) == {"temporal-schema": "service_completed_successfully"}
    lines = command_lines("temporal-schema")
    for database, schema in ((server.get("DBNAME", "temporal"), "temporal"),
                             (server.get("VISIBILITY_DBNAME", "temporal_visibility"), "visibility")):
        steps = [line[3:] for line in lines if line[:3] == ["temporal-sql-tool", "--db", database]]
        assert ["create"] in steps
        assert ["setup-schema", "-v", "0.0"] in steps
        assert ["update-schema", "-d", f"/etc/temporal/schema/postgresql/v12/{schema}/versioned"] in steps
        assert [s[0] for s in steps] == ["create", "setup-schema", "update-schema"], f"{database}: steps out of order"


def registered_by_code() -> dict[str, str]:
    """Name → the CLI's type name (INDEXED_VALUE_TYPE_KEYWORD_LIST → KeywordList)."""
    def cli_type(value: int) -> str:
        words = IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").split("_")
        return "".join(word.capitalize() for word in words)

    return {key.name: cli_type(key.indexed_value_type) for key in ALL_KEYS}


def registered_by_compose() -> dict[str, str]:
    pairs = environment("temporal-namespace")["SEARCH_ATTRIBUTES"].split()
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_namespace_job_registers_exactly_what_the_workflows_upsert():
    assert registered_by_compose() == registered_by_code()
    job = script("temporal-namespace")
    assert "search-attribute create" in job and "$SEARCH_ATTRIBUTES" in job


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
async def test_the_namespace_job_script_works_and_runs_again(local_env):
    """The job's own script, run by sh with the temporal CLI against the dev server, on a new namespace."""
    from starter.embedded import temporal_cli

    namespace = f"compose-{uuid.uuid4().hex[:8]}"
    env = {**environment("temporal-namespace"), "TEMPORAL_NAMESPACE": namespace,
           "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
           "PATH": f"{Path(temporal_cli()).parent}{os.pathsep}{os.environ['PATH']}"}
    for _ in range(2):
        done = await asyncio.to_thread(subprocess.run, ["sh", "-euc", script("temporal-namespace")], env=env,
                                       capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
    listed = await local_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    assert {name: listed.custom_attributes[name] for name in registered_by_code()} == {
        key.name: key.indexed_value_type for key in ALL_KEYS}


@pytest.mark.parametrize("port", [None, "9001"])
def test_the_api_listens_where_it_is_published(monkeypatch, port):
    user_env = {"FOLLOWUPS_API_PORT": port} if port else {}
    settings = settings_of("api", monkeypatch, **user_env)
    assert settings.api_host in ("0.0.0.0", "::"), "the API binds inside the container only"
    assert ports("api", **user_env) == [(settings.api_port, settings.api_port)]
    assert settings.api_port == int(port or Settings.model_fields["api_port"].default)
    assert urlsplit(settings.public_base_url).port == settings.api_port, "unsubscribe links point elsewhere"


def test_images_are_pinned():
    version = PYPROJECT["project"]["version"]
    for name in services():
        image = image_of(name)
        assert image, f"{name} has no image"
        repository, _, tag = image.partition("@")[0].rpartition(":")
        pinned = "@sha256:" in image or bool(repository and tag and tag != "latest")
        assert pinned, f"{name}: {image} is not pinned"
        if "build" in services()[name]:
            assert tag == version, f"{name} is built as {image}, the project is {version}"


def test_temporal_images_are_one_release():
    admin_tools = {image_of(name).rpartition(":")[2] for name in services()
                   if image_of(name).startswith("temporalio/admin-tools:")}
    assert admin_tools == {image_of(service_with_image("temporalio/server:")).rpartition(":")[2]}


def test_docker_compose_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose CLI is not installed")
    env = {**os.environ, **USER_ENV}
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    missing = {k: v for k, v in env.items() if k not in USER_ENV}
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"], env=missing,
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0 and "FOLLOWUPS_" in done.stderr, "compose must refuse to start without the secrets"


def compose_schema_check(path: Path) -> subprocess.CompletedProcess:
    # The schema ships inside check-jsonschema: nothing is downloaded, no engine is needed.
    return subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_the_compose_file_follows_the_compose_specification():
    done = compose_schema_check(COMPOSE_FILE)
    assert done.returncode == 0, done.stdout + done.stderr


def _unknown_top_level_key(data: dict) -> None:
    data["servces"] = {}


def _ports_not_a_list(data: dict) -> None:
    data["services"]["api"]["ports"] = "not-a-list"


def _misspelled_service_key(data: dict) -> None:
    data["services"]["worker"]["restrat"] = data["services"]["worker"].pop("restart")


@pytest.mark.parametrize("break_it, complaint", [
    pytest.param(_unknown_top_level_key, "'servces' does not match any of the regexes", id="unknown-top-level-key"),
    pytest.param(_ports_not_a_list, "'not-a-list' is not of type 'array'", id="ports-not-a-list"),
    pytest.param(_misspelled_service_key, "'restrat' was unexpected", id="misspelled-service-key"),
])
def test_the_compose_schema_check_refuses_a_broken_copy(tmp_path, break_it, complaint):
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    break_it(data)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))
    done = compose_schema_check(broken)
    # The complaint, not only the exit status: a copy the tool cannot even read would fail too.
    assert done.returncode != 0 and complaint in done.stdout + done.stderr, done.stdout + done.stderr


# --- the Dockerfile -------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", (ROOT / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def instruction(name: str) -> list[str]:
    return [args for op, args in dockerfile() if op == name]


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def copies() -> dict[str, PurePosixPath]:
    """Each COPY source (relative to the repo) → where it lands in the image."""
    workdir, landed = PurePosixPath("/"), {}
    for op, args in dockerfile():
        if op == "WORKDIR":
            workdir = workdir / args
        if op == "COPY":
            if any(p.startswith("--from") for p in exec_form(args)):
                continue  # from another stage, not from the repository
            *sources, dest = [p for p in exec_form(args) if not p.startswith("--")]
            target = workdir / dest
            for source in (s.rstrip("/") for s in sources):
                if (ROOT / source).is_dir():  # a directory's contents land in dest
                    landed[source] = target
                elif dest.endswith("/") or dest == "." or len(sources) > 1:
                    landed[source] = target / PurePosixPath(source).name
                else:
                    landed[source] = target
    return landed


def dockerignored(path: str) -> bool:
    ignored = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch(prefix, p) for p in candidates for prefix in prefixes):
            ignored = not negate
    return ignored


def needed_in_image() -> set[str]:
    tool = PYPROJECT["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in tool["packages"]["find"]["include"]}
    return ({"pyproject.toml", PYPROJECT["project"]["readme"]} | packages
            | {f"{module}.py" for module in tool["py-modules"]}
            | {str(TEMPLATES_DIR.relative_to(ROOT)), str(MIGRATIONS_DIR.relative_to(ROOT))})


def test_the_image_gets_every_file_it_needs_in_the_repos_layout():
    landed = copies()
    for source in landed:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    missing = needed_in_image() - set(landed)
    assert not missing, f"the image lacks {sorted(missing)}"
    # templates/ and migrations/ are found beside the packages (Path(__file__).parent.parent), and
    # `pip install -e .` runs the packages where they were copied: the image keeps the repository's
    # layout under WORKDIR.
    workdir = PurePosixPath(instruction("WORKDIR")[-1])
    for path in needed_in_image():
        assert landed[path] == workdir / path, f"{path} lands at {landed[path]}, not {workdir / path}"


def test_the_image_installs_the_project_editable_without_the_embedded_extra():
    runs = " ".join(instruction("RUN"))
    assert re.search(r"pip install\b[^&;]*(-e|--editable) \.(\s|$)", runs), \
        "install with -e: a copy in site-packages would not find templates/ and migrations/"
    assert "embedded" not in runs and "test" not in re.findall(r"\[(\w+)\]", runs)
    [base] = instruction("FROM")
    repository, _, tag = base.partition(" ")[0].partition(":")
    assert repository == "python" and tag and tag != "latest"
    assert re.match(r"3\.(\d+)", tag) and int(re.match(r"3\.(\d+)", tag)[1]) >= int(
        re.search(r">=\s*3\.(\d+)", PYPROJECT["project"]["requires-python"])[1])


def hadolint(path: Path, home: Path) -> tuple[int, list[dict]]:
    """hadolint's findings at every level (style included), with the repository's .hadolint.yaml if
    there is one, and neither a developer's own config nor HADOLINT_* variables, which would change
    what passes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home))
    done = subprocess.run([tool("hadolint"), "--format", "json", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path):
    returncode, findings = hadolint(ROOT / "Dockerfile", tmp_path)
    assert findings == [] and returncode == 0, "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)


def test_hadolint_reports_a_floating_base_image_and_recommended_packages(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    returncode, findings = hadolint(bad, tmp_path)
    assert returncode != 0 and {"DL3007", "DL3015"} <= {f["code"] for f in findings}, findings


def test_the_image_runs_as_a_user_not_root():
    users = instruction("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_the_image_starts_real_cli_commands():
    [entrypoint], [cmd] = instruction("ENTRYPOINT"), instruction("CMD")
    assert exec_form(entrypoint) == ["followups"]
    assert PYPROJECT["project"]["scripts"]["followups"] == "starter.cli:app"
    commands = typer.main.get_command(app).commands
    started = [exec_form(cmd)] + [services()[name]["command"] for name in FOLLOWUPS]
    started = [c if isinstance(c, list) else shlex.split(c) for c in started]
    assert started == [["worker"], ["worker"], ["api"]]
    for args in started:
        assert args[0] in commands, f"`followups {args[0]}` is not a command"
        assert CliRunner().invoke(app, [*args, "--help"]).exit_code == 0
