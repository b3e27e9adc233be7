"""`make up`: run the node and everything it needs on this machine, stop it all on Ctrl-C.

Embedded default (no DATABASE_URL, no REDIS_URL): SQLite under var/, in-process tasks, one daphne.
With REDIS_URL: daphne plus a Celery worker and Celery beat. anvil is started unless CHAIN_RPC_URL
points at a chain already (its state is kept in var/anvil-state.json between runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import environ  # noqa: E402

from connext.chain import devchain  # noqa: E402

PYTHON = sys.executable


def log(message: str) -> None:
    print(f"[up] {message}", flush=True)


def port_is_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def run_manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def database_ready(url: str | None) -> bool:
    """Make sure the Postgres database of DATABASE_URL answers, creating it when the server is there
    but the database is not (a fresh machine). Says what is wrong otherwise: behind the node's
    connection pool the cause would only show as a timeout. SQLite (no URL) needs nothing."""
    if not url or not url.startswith(("postgres://", "postgresql://")):
        return True
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.replace(f":{parts.password}@", "@") if parts.password else parts.netloc
    shown = parts._replace(netloc=netloc).geturl()  # no password in logs
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return True
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
    try:  # the server's catalogue says whether the database is missing (its messages are localized)
        maintenance = parts._replace(path="/postgres").geturl()
        with psycopg.connect(maintenance, connect_timeout=5, autocommit=True) as connection:
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                log(f"cannot reach the database at {shown}: {reason}")
                return False
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        log(f"cannot reach the database at {shown}: {reason} ({str(exc).strip()})")
        return False
    log(f"created the database {name} at {shown}")
    return True


def wait_for_health(url: str, processes: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"[up] {' '.join(map(str, process.args))} exited early")
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - our own URL
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            last = exc.read().decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise SystemExit(f"[up] the node did not become healthy within {timeout:.0f}s: {last}")


def demo_instructions(base: str, var_dir: Path) -> str:
    """A key for trying the node with the CLI: anvil's last dev account, which holds test ETH."""
    key_file = var_dir / "demo-user.key"
    if not key_file.exists():
        key_file.write_text(devchain.DEV_PRIVATE_KEYS[9] + "\n")
        key_file.chmod(0o600)
    cli = f".venv/bin/connext --node {base} --key-file {key_file}"
    return (
        "  Try a channel with the CLI (a funded anvil key is in the key file):\n"
        f"    {cli} deposit 0.5eth\n"
        f"    {cli} balance\n"
        f"    {cli} withdraw 0.1eth --to 0x000000000000000000000000000000000000dEaD\n"
    )


# On our own anvil only: ETH and the TestToken the deployment adds, at a fixed price (the node holds
# TestToken there: deploy_contracts --dev mints it).
DEV_SWAPS = json.dumps(
    {
        "pairs": [
            {
                "base": "eth",
                "quote": "TestToken",
                "source": {"type": "fixed", "price": "2000"},
                "spreadBps": 30,
                "maxPerSwap": str(10**18),
                "maxPerDay": str(10 * 10**18),
            }
        ]
    }
)


def interrupt(signum: int, frame: object) -> None:
    """SIGINT (Ctrl-C) and SIGTERM stop the node, whatever the disposition `make up` inherited."""
    raise KeyboardInterrupt


def main() -> int:
    if (ROOT / ".env").exists():
        environ.Env.read_env(ROOT / ".env", overwrite=False)
    env = dict(os.environ)
    host = env.get("NODE_HOST", "127.0.0.1")
    port = int(env.get("NODE_PORT", "8000"))
    var_dir = Path(env.get("NODE_VAR_DIR") or ROOT / "var").resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env["NODE_VAR_DIR"] = str(var_dir)
    # Every process of this node writes its live metrics here; /metrics adds them up. Files of an
    # earlier run belong to processes that are gone: start empty.
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(var_dir / "prometheus")))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    children: list[subprocess.Popen[bytes]] = []
    chain: devchain.Anvil | None = None

    def stop_all(*_: object) -> None:
        for process in reversed(children):
            if process.poll() is None:
                process.terminate()
        for process in reversed(children):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if chain is not None:
            chain.stop()

    signal.signal(signal.SIGTERM, interrupt)  # from the start: whatever was started is stopped
    # Ctrl-C too, explicitly: started from a script as a background job, a process inherits SIGINT
    # ignored, and Python then leaves it ignored (the node could not be stopped with it).
    signal.signal(signal.SIGINT, interrupt)
    try:
        if not port_is_free(host, port):
            log(f"port {host}:{port} is taken; set NODE_PORT to another port")
            return 1
        if not env.get("CHAIN_RPC_URL"):
            anvil_port = int(env.get("ANVIL_PORT", "8545"))
            if not port_is_free("127.0.0.1", anvil_port):
                anvil_port = devchain.free_port()
            # A block a second, like a real chain: confirmations (CHAIN_CONFIRMATIONS) then arrive
            # by themselves instead of waiting for the next transaction.
            chain = devchain.Anvil(
                port=anvil_port,
                state_path=var_dir / "anvil-state.json",
                log_path=var_dir / "anvil.log",
                block_time=1,
            )
            env["CHAIN_RPC_URL"] = chain.start()
            env.setdefault("PUBLIC_CHAIN_RPC_URL", env["CHAIN_RPC_URL"])  # clients send deposits here
            if not env.get("SWAPS") and not env.get("SWAPS_FILE"):
                env["SWAPS"] = DEV_SWAPS  # the card's swap screen has something to swap
                log("swaps: ETH and TestToken at a fixed 2000 (set SWAPS or SWAPS_FILE for others)")
            log(f"anvil (chain id {devchain.DEV_CHAIN_ID}) on {chain.url}, log in {var_dir / 'anvil.log'}")
        else:
            log(f"using the chain at {env['CHAIN_RPC_URL']}")

        if not database_ready(env.get("DATABASE_URL")):
            return 1
        run_manage("migrate", "--noinput", "-v", "0", env=env)
        if chain is not None:  # our own anvil: deploy (or reuse) the contracts and fund the node
            run_manage("deploy_contracts", "--dev", env=env)
        if env.get("DJANGO_SUPERUSER_USERNAME") and env.get("DJANGO_SUPERUSER_PASSWORD"):
            run_manage("ensure_operator", env=env)
        else:
            log(
                "no operator account configured: set DJANGO_SUPERUSER_USERNAME, DJANGO_SUPERUSER_PASSWORD"
                " (and DJANGO_SUPERUSER_EMAIL) or run `.venv/bin/python manage.py createsuperuser`"
            )

        daphne = [PYTHON, "-m", "daphne", "-b", host, "-p", str(port), "connext_site.asgi:application"]
        children.append(subprocess.Popen(daphne, cwd=ROOT, env=env))
        if env.get("REDIS_URL"):
            celery = [PYTHON, "-m", "celery", "-A", "connext_site"]
            beat_schedule = str(var_dir / "celerybeat-schedule")
            worker = [*celery, "worker", "-l", "INFO", "-c", "2"]
            beat = [*celery, "beat", "-l", "INFO", "-s", beat_schedule]
            children.extend(subprocess.Popen(command, cwd=ROOT, env=env) for command in (worker, beat))
            log("Celery worker and beat started (REDIS_URL is set)")
        else:
            log("tasks run inside the node process (no REDIS_URL)")

        base = f"http://{host}:{port}"
        health = wait_for_health(f"{base}/api/health", children)
        chain_check = health["checks"]["chain"]
        log(
            f"node is up; chain {chain_check['detail']['chain_id']} at block {chain_check['detail']['block_number']}"
        )
        print(
            f"\n  API      {base}/api/  (OpenAPI schema: {base}/api/schema)\n  Health   {base}/api/health\n"
            f"  Admin    {base}/admin/\n  Websocket ws://{host}:{port}/ws/v1\n"
            f"  Dashboard {base}/dashboard/  (staff accounts; activity: manage.py seed_demo)\n"
            f"  Card     {base}/card/  (the browser wallet; its key stays in the browser)\n"
            f"  Metrics  {base}/metrics  (staff session or METRICS_TOKEN)\n",
            flush=True,
        )
        if chain is not None:
            print(demo_instructions(base, var_dir), flush=True)
        print("  Ctrl-C stops everything.\n", flush=True)
        while all(process.poll() is None for process in children):
            time.sleep(0.5)
        log("a node process exited; stopping the rest")
        return 1
    except KeyboardInterrupt:
        log("stopping")
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
