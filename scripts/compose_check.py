#!/usr/bin/env python3
"""Validates docker-compose.yml, the Dockerfile and deploy/ against the daemons' binaries.

    python3 scripts/compose_check.py [--compose FILE] [--raw]

Reads the compose file as `docker-compose -f FILE config` resolves it (interpolation, merge keys,
absolute paths); with --raw, or when docker-compose is not installed, parses the file itself and
interpolates ${VAR}, ${VAR:-default} and the like from the environment the way Compose does.
Files the compose file refers to (Dockerfile, init scripts, Prometheus configuration) are read
from where the compose file puts them, so a copy of the whole set elsewhere is checked as a whole.

The variables each daemon reads come from its binary: `orchestrator env` and
`worker env marca|influencer|tracking`, one variable a line, exit status 0. The binaries are
$ORCHESTRATOR_BIN and $WORKER_BIN, by default ${TARGET_DIR:-target}/debug/orchestrator and
.../worker under the repository root.

Prints one line per check passed and one per violation; exits 1 if any check failed, 2 if the
files could not be read at all.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        "compose_check.py needs PyYAML: install the Debian package python3-yaml (docker-compose brings it) "
        "or `python3 -m pip install pyyaml`\n"
    )
    sys.exit(2)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Every participant the worker binary runs (`worker list`); set in main() before any check.
WORKERS: Tuple[str, ...] = ()
DAEMONS: Tuple[str, ...] = ("orchestrator",)
REQUIRED_SERVICES = ("pulsar", "pulsar-init", "postgres") + DAEMONS + ("bff", "prometheus")
CARGO_BUILD_FEATURES = ("pulsar",)
PULSAR_URL = "pulsar://pulsar:6650"
SCHEMA_COMPATIBILITY = "BACKWARD_TRANSITIVE"
# Where a container's HTTP server must listen to be reachable through a published port.
ANY_ADDRESS = {"0.0.0.0", "::", "[::]"}
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}
DEBIAN_CODENAMES = ("buster", "bullseye", "bookworm", "trixie", "forky")
BIN_DIRS = ("/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin", "/bin", "/sbin")


class Invalid(Exception):
    """A file cannot be read or does not have the shape the checks need."""


# ---------------------------------------------------------------------------------------------
# Loading the compose file
# ---------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Dict[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}."""

    def substitute(m: "re.Match[str]") -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if (op == ":?" and not current) or current is None:
                raise Invalid(f"variable {name} is required: {arg}")
            return current
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def interpolate_tree(node: Any, env: Dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(path: Path, raw: bool) -> Tuple[Dict[str, Any], str]:
    """The compose model and how it was obtained."""
    if not path.is_file():
        raise Invalid(f"{path}: no such file")
    compose_bin = shutil.which("docker-compose")
    if not raw and compose_bin:
        proc = subprocess.run(
            [compose_bin, "-f", str(path), "config"],
            cwd=str(path.parent),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise Invalid(f"`docker-compose -f {path} config` failed:\n{proc.stderr.strip()}")
        model = yaml.safe_load(proc.stdout)
        how = "docker-compose config"
    else:
        try:
            model = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise Invalid(f"{path}: not valid YAML: {e}") from e
        if not isinstance(model, dict):
            raise Invalid(f"{path}: not a mapping at the top level")
        model = {k: v for k, v in model.items() if not str(k).startswith("x-")}
        model = interpolate_tree(model, dict(os.environ))
        how = "the file itself (raw)"
    if not isinstance(model, dict) or not isinstance(model.get("services"), dict):
        raise Invalid(f"{path}: no `services` mapping")
    return model, how


# ---------------------------------------------------------------------------------------------
# Normalising a service's fields (short and long syntaxes)
# ---------------------------------------------------------------------------------------------


def service_env(svc: Dict[str, Any]) -> Dict[str, str]:
    env = svc.get("environment") or {}
    out: Dict[str, str] = {}
    if isinstance(env, dict):
        for k, v in env.items():
            out[str(k)] = "" if v is None else str(v)
    elif isinstance(env, list):
        for item in env:
            key, sep, value = str(item).partition("=")
            out[key] = value if sep else os.environ.get(key, "")
    return out


def service_command(svc: Dict[str, Any]) -> List[str]:
    parts: List[str] = []
    for field in ("entrypoint", "command"):
        value = svc.get(field)
        if isinstance(value, str):
            parts += shlex.split(value)
        elif isinstance(value, list):
            parts += [str(v) for v in value]
    return parts


def service_ports(svc: Dict[str, Any]) -> List[Tuple[str, Optional[str], str]]:
    """(host_ip, published, target) of each published or listed port."""
    out: List[Tuple[str, Optional[str], str]] = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            out.append((str(p.get("host_ip") or ""), str(p["published"]) if p.get("published") else None,
                        str(p.get("target"))))
            continue
        spec = str(p).split("/", 1)[0]
        host_ip = ""
        m = re.match(r"^\[([^\]]+)\]:(.*)$", spec)
        if m:
            host_ip, spec = m.group(1), m.group(2)
        fields = spec.split(":")
        if len(fields) == 3:
            host_ip, published, target = fields
        elif len(fields) == 2:
            published, target = fields
        else:
            published, target = None, fields[0]
        out.append((host_ip, published or None, target))
    return out


def service_depends(svc: Dict[str, Any]) -> Dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {str(d): "service_started" for d in deps}
    return {str(k): str((v or {}).get("condition", "service_started")) for k, v in deps.items()}


def healthcheck_test(svc: Dict[str, Any]) -> Optional[List[str]]:
    hc = svc.get("healthcheck")
    if not isinstance(hc, dict) or hc.get("disable"):
        return None
    test = hc.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not test or test[0] == "NONE":
        return None
    return [str(t) for t in test]


def bind_mounts(svc: Dict[str, Any], base: Path) -> List[Tuple[Path, str]]:
    """(host path, container path) of each bind mount."""
    out: List[Tuple[Path, str]] = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") != "bind":
                continue
            source, target = str(v.get("source")), str(v.get("target"))
        else:
            fields = str(v).split(":")
            if len(fields) < 2:
                continue
            source, target = fields[0], fields[1]
            if not (source.startswith((".", "/", "~"))):
                continue  # a named volume
        host = Path(os.path.expanduser(source))
        if not host.is_absolute():
            host = (base / host).resolve()
        out.append((host, target))
    return out


def host_port(address: str) -> Tuple[str, int]:
    m = re.match(r"^(\[[^\]]*\]|[^:]*):(\d+)$", address.strip())
    if not m:
        raise Invalid(f"`{address}` is not HOST:PORT")
    return m.group(1), int(m.group(2))


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


class Stage:
    def __init__(self, index: int, image: str, name: Optional[str]):
        self.index, self.image, self.name = index, image, name
        self.instructions: List[Tuple[str, str]] = []

    def text(self, kind: str) -> List[str]:
        return [args for k, args in self.instructions if k == kind]


def parse_dockerfile(path: Path) -> Tuple[List[Stage], Dict[str, str]]:
    if not path.is_file():
        raise Invalid(f"{path}: no such file")
    logical: List[str] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    global_args: Dict[str, str] = {}
    stages: List[Stage] = []
    for instr in logical:
        kind, _, args = instr.partition(" ")
        kind = kind.upper()
        args = args.strip()
        if kind == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif kind == "FROM":
            tokens = [t for t in args.split() if not t.startswith("--")]
            image = tokens[0]
            for name, value in global_args.items():
                image = image.replace("${%s}" % name, value).replace("$" + name, value)
            alias = tokens[2] if len(tokens) >= 3 and tokens[1].lower() == "as" else None
            stages.append(Stage(len(stages), image, alias))
        elif stages:
            stages[-1].instructions.append((kind, args))
    if not stages:
        raise Invalid(f"{path}: no FROM")
    return stages, global_args


def copy_parts(args: str) -> Tuple[Dict[str, str], List[str], str]:
    """(flags, sources, destination) of a COPY instruction, shell or JSON form."""
    flags: Dict[str, str] = {}
    rest = args
    while True:
        m = re.match(r"^--([a-z-]+)(?:=(\S+))?\s+", rest)
        if not m:
            break
        flags[m.group(1)] = m.group(2) or ""
        rest = rest[m.end():]
    if rest.startswith("["):
        parts = json.loads(rest)
    else:
        parts = shlex.split(rest)
    return flags, parts[:-1], parts[-1]


def debian_codename(image: str) -> Optional[str]:
    for name in DEBIAN_CODENAMES:
        if re.search(rf"\b{name}\b", image):
            return name
    return None


# ---------------------------------------------------------------------------------------------
# The binaries
# ---------------------------------------------------------------------------------------------


def binary_path(var: str, name: str) -> Path:
    if os.environ.get(var):
        return Path(os.environ[var])
    target = os.environ.get("TARGET_DIR") or os.environ.get("CARGO_TARGET_DIR") or "target"
    path = Path(target)
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path / "debug" / name


def env_list(binary: Path, args: List[str], var: str) -> List[str]:
    """The variables a binary says it reads (`BINARY env [SERVICE]`)."""
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise Invalid(
            f"{binary} is missing or not executable: build it (cargo build -p orchestrator -p worker "
            "--features pulsar --bins) "
            f"or point {var} at it"
        )
    cmd = [str(binary)] + args
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Invalid(f"`{' '.join(cmd)}` could not run: {e}") from e
    if proc.returncode != 0:
        raise Invalid(f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()}")
    names: List[str] = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        token = line.split()[0]
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", token):
            raise Invalid(f"`{' '.join(cmd)}` printed `{line}`: expected one variable name a line")
        names.append(token)
    if not names:
        raise Invalid(f"`{' '.join(cmd)}` printed no variable")
    return names


def worker_names(binary: Path) -> List[str]:
    """The participants the worker binary runs (`worker list`, one name a line)."""
    cmd = [str(binary), "list"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Invalid(f"`{' '.join(cmd)}` could not run (build it: cargo build -p worker --features pulsar): {e}") from e
    names = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not names or not all(re.fullmatch(r"[a-z][a-z0-9_-]*", n) for n in names):
        raise Invalid(f"`{' '.join(cmd)}` exited {proc.returncode} and printed {proc.stdout!r}: expected participant names")
    return names


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


class Context:
    def __init__(self, compose_path: Path, model: Dict[str, Any]):
        self.compose_path = compose_path
        self.base = compose_path.parent
        self.services: Dict[str, Dict[str, Any]] = model["services"]
        self._dockerfile: Optional[Tuple[Path, List[Stage], Dict[str, str]]] = None
        self._env_lists: Dict[str, List[str]] = {}

    def svc(self, name: str) -> Dict[str, Any]:
        svc = self.services.get(name)
        if not isinstance(svc, dict):
            raise Invalid(f"service `{name}` is missing")
        return svc

    def env(self, name: str) -> Dict[str, str]:
        return service_env(self.svc(name))

    def http_port(self, name: str) -> int:
        address = self.env(name).get("ALPES__HTTP")
        if not address:
            raise Invalid(f"{name}: ALPES__HTTP is not set")
        return host_port(address)[1]

    def build_paths(self, name: str) -> Tuple[Path, Path]:
        build = self.svc(name).get("build")
        if build is None:
            raise Invalid(f"{name}: no `build`")
        if isinstance(build, str):
            build = {"context": build}
        context = Path(str(build.get("context", ".")))
        if not context.is_absolute():
            context = (self.base / context).resolve()
        dockerfile = Path(str(build.get("dockerfile", "Dockerfile")))
        if not dockerfile.is_absolute():
            dockerfile = context / dockerfile
        return context, dockerfile

    def dockerfile(self) -> Tuple[Path, List[Stage], Dict[str, str]]:
        if self._dockerfile is None:
            _, path = self.build_paths("orchestrator")
            stages, args = parse_dockerfile(path)
            self._dockerfile = (path, stages, args)
        return self._dockerfile

    def env_list(self, name: str) -> List[str]:
        if name not in self._env_lists:
            if name == "bff":
                self._env_lists[name] = env_list(binary_path("BFF_BIN", "bff"), ["env"], "BFF_BIN")
            elif name == "orchestrator":
                self._env_lists[name] = env_list(binary_path("ORCHESTRATOR_BIN", "orchestrator"), ["env"],
                                                 "ORCHESTRATOR_BIN")
            else:
                self._env_lists[name] = env_list(binary_path("WORKER_BIN", "worker"), ["env", name], "WORKER_BIN")
        return self._env_lists[name]

    def init_sql(self) -> Tuple[List[str], set, set]:
        """(init files, databases, roles) that the postgres service creates."""
        svc = self.svc("postgres")
        env = self.env("postgres")
        files: List[Path] = []
        for host, target in bind_mounts(svc, self.base):
            if target.rstrip("/").startswith("/docker-entrypoint-initdb.d"):
                if host.is_dir():
                    files += sorted(p for p in host.iterdir() if p.suffix in (".sh", ".sql"))
                elif host.is_file():
                    files.append(host)
                else:
                    raise Invalid(f"postgres: init script {host} does not exist")
        if not files:
            raise Invalid("postgres: no init script mounted under /docker-entrypoint-initdb.d")
        text = "\n".join(f.read_text() for f in files)
        dbs = set(re.findall(r'CREATE\s+DATABASE\s+"?([A-Za-z_][A-Za-z0-9_]*)', text, re.I))
        roles = set(re.findall(r'CREATE\s+(?:ROLE|USER)\s+"?([A-Za-z_][A-Za-z0-9_]*)', text, re.I))
        superuser = env.get("POSTGRES_USER") or "postgres"
        roles.add(superuser)
        dbs.add(env.get("POSTGRES_DB") or superuser)
        return [str(f) for f in files], dbs, roles

    def prometheus_targets(self) -> Tuple[Path, Dict[str, str]]:
        """(config file, target -> metrics path) of the Prometheus service's static targets."""
        svc = self.svc("prometheus")
        config_in_container = "/etc/prometheus/prometheus.yml"
        for arg in service_command(svc):
            if arg.startswith("--config.file="):
                config_in_container = arg.split("=", 1)[1]
        host = None
        for source, target in bind_mounts(svc, self.base):
            if target == config_in_container:
                host = source
            elif config_in_container.startswith(target.rstrip("/") + "/"):
                host = source / config_in_container[len(target.rstrip("/")) + 1:]
        if host is None:
            raise Invalid(f"prometheus: no bind mount provides {config_in_container}")
        if not host.is_file():
            raise Invalid(f"prometheus: {host} does not exist")
        config = yaml.safe_load(host.read_text()) or {}
        targets: Dict[str, str] = {}
        for job in config.get("scrape_configs") or []:
            path = job.get("metrics_path", "/metrics")
            for sc in job.get("static_configs") or []:
                for t in sc.get("targets") or []:
                    targets[str(t)] = path
        return host, targets


Check = Callable[[Context], Tuple[List[str], str]]
CHECKS: List[Tuple[str, Check]] = []


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS.append((name, fn))
        return fn

    return register


@check("services")
def check_services(ctx: Context) -> Tuple[List[str], str]:
    missing = [s for s in REQUIRED_SERVICES if s not in ctx.services]
    errors = [f"service `{s}` is missing" for s in missing]
    return errors, f"{', '.join(REQUIRED_SERVICES)} are defined"


@check("pulsar")
def check_pulsar(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    pulsar, init = ctx.svc("pulsar"), ctx.svc("pulsar-init")
    image = str(pulsar.get("image", ""))
    if not image.startswith("apachepulsar/pulsar"):
        errors.append(f"pulsar: image is `{image}`, expected apachepulsar/pulsar")
    cmd = service_command(pulsar)
    if "standalone" not in cmd:
        errors.append(f"pulsar: command `{' '.join(cmd)}` does not run `bin/pulsar standalone`")
    if init.get("image") != image:
        errors.append(f"pulsar-init: image `{init.get('image')}` is not the broker's `{image}`")
    restart = str(init.get("restart", "no"))
    if restart not in ("no", "on-failure") and not restart.startswith("on-failure"):
        errors.append(f"pulsar-init: restart `{restart}` makes a one-shot service run forever")
    return errors, f"pulsar runs {image} standalone; pulsar-init is a one-shot on the same image"


@check("pulsar-init")
def check_pulsar_init(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    init = ctx.svc("pulsar-init")
    init_env = ctx.env("pulsar-init")
    cmd = service_command(init)
    scripts = [host for host, target in bind_mounts(init, ctx.base) if target in cmd and host.is_file()]
    if not scripts:
        errors.append("pulsar-init: its command runs no mounted script")
        return errors, ""
    text = scripts[0].read_text()
    # What the script runs: its lines without comments.
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for pattern, what in (
        (r"tenants\s+create", "create the tenant"),
        (r"namespaces\s+create", "create the namespace"),
        (r"set-schema-compatibility-strategy", "set the schema compatibility strategy"),
        (r"set-retention", "set a retention policy"),
        # a test on the output, not a message: `grep … "already exist"`, `case … *already exist*`, `[[ … ]]`
        (r"(grep|case|\[\[|==|=~)[^\n]*already exist", "tolerate `already exists`"),
    ):
        if not re.search(pattern, code):
            errors.append(f"pulsar-init: {scripts[0]} does not {what} (no `{pattern}` outside comments)")
    values = " ".join(init_env.values()) + " " + text
    if SCHEMA_COMPATIBILITY not in values:
        errors.append(f"pulsar-init: schema compatibility {SCHEMA_COMPATIBILITY} is set nowhere")
    for name in DAEMONS:
        env = ctx.env(name)
        tenant, ns = env.get("ALPES__PULSAR__TENANT"), env.get("ALPES__PULSAR__NAMESPACE")
        creates = (init_env.get("TENANT") == tenant and init_env.get("NAMESPACE") == ns) or f"{tenant}/{ns}" in text
        if not creates:
            errors.append(f"{name}: namespace {tenant}/{ns} is not the one pulsar-init creates "
                          f"({init_env.get('TENANT')}/{init_env.get('NAMESPACE')})")
    return errors, (f"pulsar-init runs {scripts[0].name}: tenant and namespace "
                    f"{init_env.get('TENANT')}/{init_env.get('NAMESPACE')} (idempotent), {SCHEMA_COMPATIBILITY}, "
                    "retention; every daemon uses that namespace")


@check("healthchecks")
def check_healthchecks(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    for name in ("postgres", "pulsar") + DAEMONS:
        test = healthcheck_test(ctx.svc(name))
        if test is None:
            errors.append(f"{name}: no healthcheck")
            continue
        if name in DAEMONS:
            line = " ".join(test)
            m = re.search(r"https?://[^/\s:]+:(\d+)/health\b", line)
            port = ctx.http_port(name)
            if not m:
                errors.append(f"{name}: healthcheck `{line}` does not GET /health over HTTP")
            elif int(m.group(1)) != port:
                errors.append(f"{name}: healthcheck probes port {m.group(1)}, ALPES__HTTP listens on {port}")
    return errors, "postgres, pulsar and every daemon has healthchecks; the daemons' GET /health on their port"


@check("builds")
def check_builds(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    seen = set()
    for name in DAEMONS:
        try:
            context, dockerfile = ctx.build_paths(name)
        except Invalid as e:
            errors.append(str(e))
            continue
        if not dockerfile.is_file():
            errors.append(f"{name}: build Dockerfile {dockerfile} does not exist")
        if not (context / "Cargo.toml").is_file():
            errors.append(f"{name}: build context {context} is not the workspace (no Cargo.toml)")
        seen.add((context, dockerfile))
    if len(seen) > 1:
        errors.append(f"the daemons are built from different Dockerfiles or contexts: {sorted(map(str, seen))}")
    where = next(iter(seen))[1] if len(seen) == 1 else "?"
    return errors, f"every daemon is built from {where}"


@check("commands")
def check_commands(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    expected = {"orchestrator": ["orchestrator", "distributed"]}
    expected.update({w: ["worker", "run", w] for w in WORKERS})
    for name, want in expected.items():
        cmd = service_command(ctx.svc(name))
        got = [os.path.basename(cmd[0])] + cmd[1:len(want)] if cmd else []
        if got != want:
            errors.append(f"{name}: command `{' '.join(cmd)}`, expected `{' '.join(want)} …`")
    return errors, "orchestrator runs `orchestrator distributed`; each worker `worker run <its service>`"


REQUIRED_DEPENDENCIES = {
    "pulsar-init": {"pulsar": "service_healthy"},
    **{w: {"postgres": "service_healthy", "pulsar-init": "service_completed_successfully"} for w in WORKERS},
    "orchestrator": {
        "postgres": "service_healthy",
        "pulsar-init": "service_completed_successfully",
        **{w: "service_healthy" for w in WORKERS},
    },
}


@check("start order")
def check_depends(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    for name, required in REQUIRED_DEPENDENCIES.items():
        deps = service_depends(ctx.svc(name))
        for dep, condition in required.items():
            if deps.get(dep) != condition:
                got = deps.get(dep, "no dependency")
                errors.append(f"{name}: depends_on {dep} must be `{condition}`, is `{got}`")
    for name, svc in ctx.services.items():
        for dep, condition in service_depends(svc).items():
            if condition == "service_healthy" and dep in ctx.services and healthcheck_test(ctx.services[dep]) is None:
                errors.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
    return errors, "postgres+pulsar healthy -> pulsar-init completed -> workers healthy -> orchestrator"


@check("environment")
def check_environment(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    counts = []
    for name in DAEMONS:
        try:
            wanted = ctx.env_list(name)
        except Invalid as e:
            errors.append(f"{name}: {e}")
            continue
        env = ctx.env(name)
        for var in wanted:
            if var not in env:
                errors.append(f"{name}: {var} (read by the binary) is not in the service's environment")
        for var in env:
            if var.startswith("ALPES_") and var not in wanted:
                errors.append(f"{name}: {var} is not a variable the binary reads (typo?)")
        counts.append(f"{name} {len(wanted)}")
    return errors, f"each daemon sets exactly the ALPES_* variables its binary reads ({', '.join(counts)})"


@check("http ports")
def check_http(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    try:
        prom_file, targets = ctx.prometheus_targets()
    except Invalid as e:
        errors.append(str(e))
        prom_file, targets = None, {}
    ports = {}
    for name in DAEMONS:
        address = ctx.env(name).get("ALPES__HTTP")
        if not address:
            errors.append(f"{name}: ALPES__HTTP is not set")
            continue
        try:
            host, port = host_port(address)
        except Invalid as e:
            errors.append(f"{name}: ALPES__HTTP {e}")
            continue
        ports[name] = port
        if host not in ANY_ADDRESS:
            errors.append(f"{name}: ALPES__HTTP listens on {host}, unreachable from outside the container "
                          "(use 0.0.0.0)")
        published = service_ports(ctx.svc(name))
        exposed = [str(e).split("/")[0] for e in ctx.svc(name).get("expose") or []]
        if not any(t == str(port) for _, _, t in published) and str(port) not in exposed:
            errors.append(f"{name}: ALPES__HTTP port {port} is neither published nor exposed "
                          f"(ports: {[t for _, _, t in published]})")
        target = f"{name}:{port}"
        if prom_file is not None:
            if target not in targets:
                errors.append(f"prometheus: {prom_file.name} does not scrape {target}")
            elif targets[target] != "/metrics":
                errors.append(f"prometheus: {target} is scraped at {targets[target]}, not /metrics")
    if len(set(ports.values())) != len(ports):
        errors.append(f"two daemons share an HTTP port: {ports}")
    summary = ", ".join(f"{n} {p}" for n, p in ports.items())
    return errors, f"ALPES__HTTP ports match the published ports and Prometheus targets ({summary})"


@check("bff")
def check_bff(ctx: Context) -> Tuple[List[str], str]:
    """The BFF: no database or broker, its backends the services' own addresses."""
    errors = []
    svc, env = ctx.svc("bff"), ctx.env("bff")
    cmd = service_command(svc)
    if not cmd or [os.path.basename(cmd[0])] + cmd[1:2] != ["bff", "run"]:
        errors.append(f"bff: command `{' '.join(cmd)}`, expected `bff run`")
    wanted = ctx.env_list("bff")
    errors += [f"bff: {v} (read by the binary) is not in the service's environment" for v in wanted if v not in env]
    errors += [f"bff: {v} is not a variable the binary reads (typo?)" for v in env
               if v.startswith("ALPES_") and v not in wanted]
    port = ctx.http_port("bff")
    if not any(t == str(port) for _, _, t in service_ports(svc)):
        errors.append(f"bff: ALPES__HTTP port {port} is not published")
    line = " ".join(healthcheck_test(svc) or [])
    if not re.search(rf"https?://[^/\s:]+:{port}/api/v1/health\b", line):
        errors.append(f"bff: healthcheck `{line}` does not GET /api/v1/health on port {port}")
    for var, backend in (("ALPES__ORQUESTADOR_URL", "orchestrator"), ("ALPES__CLIENTE_URL", "cliente")):
        u = urllib.parse.urlsplit(env.get(var, ""))
        if u.hostname != backend or u.port != ctx.http_port(backend):
            errors.append(f"bff: {var} is `{env.get(var)}`, expected http://{backend}:{ctx.http_port(backend)}")
        if service_depends(svc).get(backend) != "service_healthy":
            errors.append(f"bff: depends_on {backend} must be `service_healthy`")
    _, targets = ctx.prometheus_targets()
    if f"bff:{port}" not in targets:
        errors.append(f"prometheus does not scrape bff:{port}")
    path, stages, _ = ctx.dockerfile()
    runs = " ".join(r for s in stages for r in s.text("RUN"))
    copies = " ".join(c for c in stages[-1].text("COPY"))
    if not re.search(r"(-p|--package)[ =]bff\b", runs):
        errors.append(f"{path.name}: `cargo build` does not build package bff")
    if not re.search(r"\bbff\b", copies):
        errors.append(f"{path.name}: the runtime stage does not copy `bff`")
    return errors, (f"bff runs `bff run` on port {port} with exactly the {len(wanted)} variables it reads, "
                    "reads orchestrator and cliente at their ports once they are healthy, is scraped, built and copied")


@check("orchestrator's cliente")
def check_orchestrator_cliente(ctx: Context) -> Tuple[List[str], str]:
    """The orchestrator asks cliente whether a partner exists before a payout: at its port."""
    errors = []
    env = ctx.env("orchestrator")
    url = env.get("ALPES__CLIENTE_URL", "")
    u = urllib.parse.urlsplit(url)
    if u.hostname != "cliente" or u.port != ctx.http_port("cliente"):
        errors.append(f"orchestrator: ALPES__CLIENTE_URL is `{url}`, expected http://cliente:{ctx.http_port('cliente')}")
    if service_depends(ctx.svc("orchestrator")).get("cliente") != "service_healthy":
        errors.append("orchestrator: depends_on cliente must be `service_healthy`")
    return errors, f"the orchestrator reads cliente at http://cliente:{ctx.http_port('cliente')} once it is healthy"


@check("published ports")
def check_loopback(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    count = 0
    for name, svc in ctx.services.items():
        for host_ip, published, target in service_ports(svc):
            count += 1
            if host_ip not in LOOPBACK:
                errors.append(f"{name}: port {published or ''}:{target} is published on "
                              f"{host_ip or 'every interface'}, not 127.0.0.1")
    return errors, f"all {count} published ports are bound to 127.0.0.1"


@check("databases")
def check_databases(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    files, dbs, roles = ctx.init_sql()
    used: Dict[str, str] = {}
    for name in DAEMONS:
        url = ctx.env(name).get("ALPES__DATABASE_URL")
        if not url:
            errors.append(f"{name}: ALPES__DATABASE_URL is not set")
            continue
        u = urllib.parse.urlsplit(url)
        db = u.path.lstrip("/")
        if u.scheme not in ("postgres", "postgresql"):
            errors.append(f"{name}: ALPES__DATABASE_URL scheme `{u.scheme}` is not postgres")
        if u.hostname != "postgres":
            errors.append(f"{name}: ALPES__DATABASE_URL host is `{u.hostname}`, expected `postgres`")
        if u.port not in (None, 5432):
            errors.append(f"{name}: ALPES__DATABASE_URL port is {u.port}, the postgres service listens on 5432")
        if db not in dbs:
            errors.append(f"{name}: database `{db}` is not created by the init script ({sorted(dbs)})")
        if u.username and u.username not in roles:
            errors.append(f"{name}: role `{u.username}` is not created by the init script ({sorted(roles)})")
        if db in used:
            errors.append(f"{name}: shares database `{db}` with {used[db]}")
        used[db] = name
    return errors, (f"each daemon has its own database on host postgres, created by "
                    f"{', '.join(Path(f).name for f in files)} ({', '.join(sorted(used))})")


@check("broker")
def check_broker(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    for name in DAEMONS:
        url = ctx.env(name).get("ALPES__PULSAR__URL")
        if url != PULSAR_URL:
            errors.append(f"{name}: ALPES__PULSAR__URL is `{url}`, expected {PULSAR_URL}")
    # Topic names are fixed by the binaries (comandos.<service>); should they become configurable
    # (ALPES__TOPICS__<SERVICE> on the orchestrator, ALPES__TOPIC on a worker), both ends must agree.
    orch = ctx.env("orchestrator")
    for w in WORKERS:
        topic = ctx.env(w).get("ALPES__TOPIC", f"comandos.{w}")
        wanted = orch.get(f"ALPES__TOPICS__{w.upper()}", f"comandos.{w}")
        if topic != wanted:
            errors.append(f"{w}: consumes `{topic}`, the orchestrator sends its commands to `{wanted}`")
    return errors, f"every daemon reaches {PULSAR_URL}; each worker consumes the topic the orchestrator sends to"


@check("dockerfile build")
def check_dockerfile_build(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    path, stages, args = ctx.dockerfile()
    builder = None
    for stage in stages:
        for run in stage.text("RUN"):
            if "cargo build" in run:
                builder = stage
                tokens = run.split()
                features = []
                for i, t in enumerate(tokens):
                    if t in ("--features", "-F") and i + 1 < len(tokens):
                        features += tokens[i + 1].split(",")
                    elif t.startswith("--features="):
                        features += t.split("=", 1)[1].split(",")
                for pkg in ("orchestrator", "worker"):
                    if not re.search(rf"(-p|--package)[ =]{pkg}\b", run):
                        errors.append(f"{path.name}: `cargo build` does not build package {pkg} (-p {pkg})")
                for feat in CARGO_BUILD_FEATURES:
                    if feat not in features:
                        errors.append(f"{path.name}: `cargo build` lacks feature {feat}")
                if "--release" not in tokens:
                    errors.append(f"{path.name}: `cargo build` is not --release")
                if "--locked" not in tokens:
                    errors.append(f"{path.name}: `cargo build` is not --locked")
    if builder is None:
        errors.append(f"{path.name}: no `RUN cargo build`")
        return errors, ""
    installs = " ".join(builder.text("RUN"))
    if "protobuf-compiler" not in installs and "protoc" not in installs:
        errors.append(f"{path.name}: the builder stage does not install protoc (protobuf-compiler)")
    # Rust release of the builder image against the workspace's rust-version.
    m = re.match(r"^(?:docker\.io/)?(?:library/)?rust:(\d+)\.(\d+)", builder.image)
    workspace = re.search(r'rust-version\s*=\s*"(\d+)\.(\d+)', (ctx.base / "Cargo.toml").read_text()
                          if (ctx.base / "Cargo.toml").is_file() else "")
    if not m:
        errors.append(f"{path.name}: builder image `{builder.image}` is not a versioned rust:X.Y image")
    elif workspace and (int(m.group(1)), int(m.group(2))) < (int(workspace.group(1)), int(workspace.group(2))):
        errors.append(f"{path.name}: builder {builder.image} is older than the workspace's rust-version "
                      f"{workspace.group(1)}.{workspace.group(2)}")
    return errors, f"{path.name}: stage `{builder.name or builder.index}` ({builder.image}) runs " \
                   f"cargo build --release --locked -p orchestrator -p worker with {', '.join(CARGO_BUILD_FEATURES)}"


@check("dockerfile runtime")
def check_dockerfile_runtime(ctx: Context) -> Tuple[List[str], str]:
    errors = []
    path, stages, _ = ctx.dockerfile()
    runtime = stages[-1]
    builder_names = {s.name for s in stages[:-1] if s.name} | {str(s.index) for s in stages[:-1]}
    copied: Dict[str, str] = {}
    for args in runtime.text("COPY"):
        flags, sources, dest = copy_parts(args)
        if flags.get("from") not in builder_names:
            continue
        for src in sources:
            if dest.endswith("/") or len(sources) > 1 or dest in BIN_DIRS:
                copied[os.path.basename(src.rstrip("/"))] = dest.rstrip("/")
            else:
                copied[os.path.basename(dest)] = os.path.dirname(dest)
    for binary in ("orchestrator", "worker"):
        if binary not in copied:
            errors.append(f"{path.name}: the runtime stage (`{runtime.image}`) does not copy `{binary}` "
                          "from the build stage")
        else:
            used_absolute = any(service_command(ctx.svc(n))[:1] == [f"{copied[binary]}/{binary}"] for n in DAEMONS)
            if copied[binary] not in BIN_DIRS and not used_absolute:
                errors.append(f"{path.name}: `{binary}` goes to {copied[binary]}, not on PATH")
    runs = " ".join(runtime.text("RUN"))
    uses_curl = any(re.search(r"\bcurl\b", " ".join(healthcheck_test(ctx.svc(n)) or [])) for n in DAEMONS)
    if uses_curl and not re.search(r"\bcurl\b", runs):
        errors.append(f"{path.name}: the healthchecks use curl, the runtime stage does not install it")
    build_stage = next((s for s in stages if any("cargo build" in r for r in s.text("RUN"))), None)
    if build_stage is not None:
        a, b = debian_codename(build_stage.image), debian_codename(runtime.image)
        if a and b and a != b:
            errors.append(f"{path.name}: built on Debian {a} but run on {b} (glibc mismatch)")
    # marca's brands file must be inside the image or mounted.
    marcas = ctx.env("marca").get("ALPES__MARCAS")
    context, _ = ctx.build_paths("orchestrator")
    if marcas:
        provided = any(target == marcas for _, target in bind_mounts(ctx.svc("marca"), ctx.base))
        for args in runtime.text("COPY"):
            flags, sources, dest = copy_parts(args)
            if "from" in flags:
                continue
            for src in sources:
                in_image = dest if not dest.endswith("/") else dest + os.path.basename(src)
                if in_image == marcas:
                    if not (context / src).is_file():
                        errors.append(f"{path.name}: copies {src} to {marcas}, but {src} does not exist")
                    elif dockerignored(context, src):
                        errors.append(f"{path.name}: copies {src}, which .dockerignore leaves out of the context")
                    provided = True
        if not provided:
            errors.append(f"marca: ALPES__MARCAS is {marcas}, which neither the image nor a mount provides")
    return errors, (f"{path.name}: the runtime stage ({runtime.image}) copies orchestrator and worker onto PATH, "
                    f"has curl for the healthchecks and marca's seed at {marcas}")


def dockerignore_patterns(context: Path) -> List[str]:
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def dockerignored(context: Path, relative: str) -> bool:
    """Whether .dockerignore leaves `relative` (or a folder above it) out of the build context."""
    relative = relative.strip("/")
    excluded = False
    for pattern in dockerignore_patterns(context):
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace("**/", "")) for p in prefixes):
            excluded = not negated
    return excluded


def workspace_members(context: Path) -> List[str]:
    text = (context / "Cargo.toml").read_text() if (context / "Cargo.toml").is_file() else ""
    m = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


@check("dockerignore")
def check_dockerignore(ctx: Context) -> Tuple[List[str], str]:
    context, _ = ctx.build_paths("orchestrator")
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return [f"{ignore} is missing: the build context would include target/ and .git"], ""
    errors = [f"{ignore.name} does not exclude {d}/" for d in ("target", ".git") if not dockerignored(context, d)]
    needed = ["Cargo.toml", "Cargo.lock"] + workspace_members(context)
    for path in needed:
        if dockerignored(context, path):
            errors.append(f"{ignore.name} leaves {path} out of the build context; the build needs it")
    return errors, (f".dockerignore keeps target/ and .git out of the build context, and keeps "
                    f"{', '.join(needed)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compose", type=Path, default=REPO_ROOT / "docker-compose.yml")
    parser.add_argument("--raw", action="store_true", help="parse the file without docker-compose")
    opts = parser.parse_args()
    compose_path = opts.compose.resolve()
    try:
        model, how = load_compose(compose_path, opts.raw)
    except Invalid as e:
        print(f"FAIL compose file: {e}")
        return 2
    print(f"compose check: {compose_path} (read through {how})")
    global WORKERS, DAEMONS
    try:
        WORKERS = tuple(worker_names(binary_path("WORKER_BIN", "worker")))
    except Invalid as e:
        print(f"FAIL worker list: {e}")
        return 2
    DAEMONS = ("orchestrator",) + WORKERS
    ctx = Context(compose_path, model)
    passed, failed = 0, 0
    for name, fn in CHECKS:
        try:
            errors, summary = fn(ctx)
        except Invalid as e:
            errors, summary = [str(e)], ""
        if errors:
            failed += 1
            for err in errors:
                print(f"FAIL {name}: {err}")
        else:
            passed += 1
            print(f"ok   {name}: {summary}")
    if failed:
        print(f"compose check FAILED: {failed} of {passed + failed} checks failed")
        return 1
    print(f"compose check OK: all {passed} checks hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
