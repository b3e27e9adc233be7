"""The proxy (proxy/nginx.conf.template) rendered and run for tests and benches: Debian's nginx as a
child process with its own prefix, pid, logs and temp directories, on a free port of 127.0.0.1.

`render` substitutes exactly what the official nginx image's envsubst would: `$NAME` and `${NAME}`
of the variables given, nothing else (nginx's own `$vars` stay). A `${CONNEXT_…}` the template uses
but the caller did not give is an error here, as it is for nginx when the container lacks it.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from connext.chain.devchain import free_port
from tests.support.processes import ROOT, ManagedProcess, wait_until

NGINX = "/usr/sbin/nginx"
PROXY_DIR = ROOT / "proxy"
TEMPLATE = PROXY_DIR / "nginx.conf.template"
VARIABLES = (
    "CONNEXT_UPSTREAMS",
    "CONNEXT_LISTEN",
    "CONNEXT_SERVER_NAME",
    "CONNEXT_STATIC_ROOT",
    "CONNEXT_PAGES_ROOT",
    "CONNEXT_PROCESS_UPSTREAMS",
)
_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED_OURS = re.compile(r"\$\{(CONNEXT_[A-Za-z0-9_]*)\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """`envsubst '$NAME1 $NAME2 …'` over `template` with `values`."""
    missing = sorted(set(_BRACED_OURS.findall(template)) - set(values))
    if missing:
        raise ValueError(f"the template needs {', '.join(missing)}")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values[name] if name in values else match.group(0)

    return _REFERENCE.sub(substitute, template)


def upstream_lines(addresses: Iterable[str], *, fail_timeout: int = 5) -> str:
    """CONNEXT_UPSTREAMS for node processes at `addresses` ("127.0.0.1:8001", …)."""
    return " ".join(f"server {a} max_fails=1 fail_timeout={fail_timeout}s;" for a in addresses)


def process_upstream_lines(processes: Mapping[str, str]) -> str:
    """CONNEXT_PROCESS_UPSTREAMS for node processes by name ({"node1": "127.0.0.1:8001", …})."""
    return " ".join(f"upstream connext_process_{name} {{ server {a}; }}" for name, a in processes.items())


def main_conf(directory: Path, site_conf: Path) -> str:
    """What the official image's /etc/nginx/nginx.conf is around conf.d, with every path in `directory`
    (the pid file is given on the command line)."""
    # As root, the workers run as the same user: they read the test's private (0700) directories.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = directory / "temp"
    return (
        f"{user}worker_processes 1;\n"
        f"error_log {directory / 'error.log'} notice;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {directory / 'access.log'};\n"
        f"    client_body_temp_path {temp / 'body'};\n"
        f"    proxy_temp_path {temp / 'proxy'};\n"
        f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"    scgi_temp_path {temp / 'scgi'};\n"
        f"    include {site_conf};\n"
        "}\n"
    )


class NginxProcess(ManagedProcess):
    """nginx in the foreground (`daemon off`) serving the rendered template from `directory` (with
    `extra_conf` beside it in the http block), listening on `listen` (default 127.0.0.1:`port`);
    `processes` names node processes a socket reaches one by one (/ws/v1/<name>)."""

    def __init__(
        self,
        *,
        directory: Path,
        upstreams: Iterable[str],
        static_root: Path,
        port: int | None = None,
        listen: str | None = None,
        server_name: str = "_",
        fail_timeout: int = 5,
        extra_conf: str = "",
        processes: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port() if port is None else port
        (directory / "temp").mkdir(parents=True, exist_ok=True)
        self.site_conf = directory / "connext.conf"
        self.site_conf.write_text(
            render(
                TEMPLATE.read_text(),
                {
                    "CONNEXT_UPSTREAMS": upstream_lines(upstreams, fail_timeout=fail_timeout),
                    "CONNEXT_LISTEN": listen or f"127.0.0.1:{self.port}",
                    "CONNEXT_SERVER_NAME": server_name,
                    "CONNEXT_STATIC_ROOT": str(static_root),
                    "CONNEXT_PAGES_ROOT": str(PROXY_DIR),
                    "CONNEXT_PROCESS_UPSTREAMS": process_upstream_lines(processes or {}),
                },
            )
            + extra_conf
        )
        self.conf = directory / "nginx.conf"
        self.conf.write_text(main_conf(directory, self.site_conf))
        super().__init__(
            self._command("daemon off;"),
            env={"PATH": os.environ.get("PATH", "")},
            log_path=directory / "nginx.out",
        )

    def _command(self, *directives: str) -> list[str]:
        pid = f"pid {self.directory / 'nginx.pid'};"
        return [
            NGINX,
            "-p",
            str(self.directory),
            "-e",
            str(self.directory / "error.log"),
            "-c",
            str(self.conf),
            "-g",
            " ".join([*directives, pid]),
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1"

    def check(self) -> str:
        """`nginx -t` on the configuration; its output, or AssertionError with it."""
        result = subprocess.run(
            [*self._command(), "-t"], capture_output=True, text=True, timeout=30, check=False
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise AssertionError(
                f"nginx -t failed:\n{output}\n--- {self.site_conf}\n{self.site_conf.read_text()}"
            )
        return output

    def start(self) -> None:
        self.check()
        super().start()

        def answering() -> bool:
            if not self.alive():
                raise AssertionError(f"nginx exited:\n{self.log()}\n{self.error_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/nginx-probe", timeout=2):  # noqa: S310 - local
                    return True
            except urllib.error.HTTPError:
                return True  # anything nginx answers (404 here) means it listens
            except OSError:
                return False

        wait_until(answering, timeout=30, what=f"nginx on {self.url}")

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def collect_static(var_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """`manage.py collectstatic` into `var_dir`/static (the nodes' STATIC_ROOT there): the directory
    the proxy serves /static/ from."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**(env or os.environ), "NODE_VAR_DIR": str(var_dir)},
        check=True,
        timeout=120,
    )
    return var_dir / "static"
