"""The proxy's configuration on its own: rendered as the official image renders it, checked by nginx,
and served by a real nginx with no node process behind it (so whatever answers is nginx itself)."""

from __future__ import annotations

import http.client
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from connext.chain.devchain import free_port
from tests.support.processes import ROOT
from tests.support.proxy import PROXY_DIR, TEMPLATE, VARIABLES, NginxProcess, collect_static, render

VALUES = {
    "CONNEXT_UPSTREAMS": "server node1:8000 max_fails=1 fail_timeout=5s; server node2:8000 max_fails=1 fail_timeout=5s;",
    "CONNEXT_LISTEN": "80",
    "CONNEXT_SERVER_NAME": "node.example.com",
    "CONNEXT_STATIC_ROOT": "/srv/static",
    "CONNEXT_PAGES_ROOT": "/etc/nginx/connext",
    "CONNEXT_PROCESS_UPSTREAMS": "upstream connext_process_node1 { server node1:8000; }",
}


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collect_static(tmp_path_factory.mktemp("static-var"))


@pytest.fixture(scope="module")
def proxy(static_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProcess]:
    """nginx in front of two node addresses where nothing listens (all node processes down)."""
    nginx = NginxProcess(
        directory=tmp_path_factory.mktemp("proxy"),
        upstreams=[f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"],
        static_root=static_root,
        processes={"node1": f"127.0.0.1:{free_port()}"},
    )
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    tls: bool = False,
    host: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=context
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Host": host})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# -- the template -------------------------------------------------------------------------------------


def test_the_template_refers_to_no_environment_variable_but_its_own_and_uses_each_of_them():
    # The official image substitutes every variable its container defines (PATH, HOSTNAME, …): an upper
    # case reference other than ours would be replaced there. nginx's own variables are lower case.
    text = TEMPLATE.read_text()
    upper = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    assert upper == set(VARIABLES)


def test_rendering_gives_exactly_what_envsubst_gives_in_the_official_image():
    text = TEMPLATE.read_text()
    shell_format = " ".join(f"${name}" for name in VARIABLES)
    envsubst = subprocess.run(
        ["/usr/bin/envsubst", shell_format],
        input=text,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **VALUES},
        check=True,
    )
    rendered = render(text, VALUES)
    assert rendered == envsubst.stdout
    assert "$connext_connection" in rendered
    assert "$proxy_add_x_forwarded_for" in rendered
    assert "${" not in rendered


def test_rendering_refuses_a_template_variable_left_undefined():
    values = {name: value for name, value in VALUES.items() if name != "CONNEXT_STATIC_ROOT"}
    with pytest.raises(ValueError, match="CONNEXT_STATIC_ROOT"):
        render(TEMPLATE.read_text(), values)


def test_the_body_limit_is_the_nodes_default():
    # client_max_body_size 1m: what API_MAX_BODY_BYTES is unless the operator changes it.
    assert re.search(r"client_max_body_size 1m;", TEMPLATE.read_text())
    assert settings.API_MAX_BODY_BYTES == 1024 * 1024


def test_nginx_accepts_the_rendered_configuration(proxy: NginxProcess):
    assert "test is successful" in proxy.check()


# -- served by nginx with every node process down ---------------------------------------------------


def test_the_root_redirects_to_the_card(proxy: NginxProcess):
    status, headers, _ = request(proxy.port, "GET", "/")
    assert (status, headers["location"]) == (302, "/card/")


def test_static_files_are_served_by_nginx_from_the_collected_root(proxy: NginxProcess, static_root: Path):
    status, headers, body = request(proxy.port, "GET", "/static/card/build/card.js")
    assert status == 200
    assert body == (ROOT / "card" / "static" / "card" / "build" / "card.js").read_bytes()
    assert body == (static_root / "card" / "build" / "card.js").read_bytes()
    assert headers["content-type"] == "application/javascript"
    assert headers["x-content-type-options"] == "nosniff"
    assert request(proxy.port, "GET", "/static/../nginx.conf")[0] in (400, 404)


def test_metrics_are_not_served_to_anyone_outside(proxy: NginxProcess):
    assert request(proxy.port, "GET", "/metrics")[0] == 403
    assert request(proxy.port, "GET", "/metrics?format=prometheus")[0] == 403


def test_paths_the_node_does_not_serve_are_not_found_at_the_proxy(proxy: NginxProcess):
    assert request(proxy.port, "GET", "/index.html")[0] == 404
    assert request(proxy.port, "GET", "/connext-waiting.html")[0] == 404  # internal only


def test_a_body_over_the_nodes_limit_is_refused_by_the_proxy_with_413(proxy: NginxProcess):
    limit = settings.API_MAX_BODY_BYTES
    assert request(proxy.port, "POST", "/api/channel/updates", b"x" * (limit + 1))[0] == 413
    # At the limit it is passed on (and finds no node here).
    assert request(proxy.port, "POST", "/api/channel/updates", b"x" * limit)[0] == 503


def test_with_no_node_process_up_pages_get_the_waiting_page_as_503(proxy: NginxProcess):
    waiting = (PROXY_DIR / "waiting.html").read_bytes()
    for method, path in [
        ("GET", "/card/"),
        ("GET", "/dashboard/"),
        ("POST", "/admin/login/"),
        ("GET", "/redeem"),
    ]:
        status, headers, body = request(proxy.port, method, path, b"" if method == "POST" else None)
        assert (status, body) == (503, waiting), (method, path)
        assert headers["content-type"].startswith("text/html")
        assert headers["retry-after"] == "5"


def test_with_no_node_process_up_the_api_and_the_socket_get_the_nodes_error_shape_as_503(
    proxy: NginxProcess,
):
    import json

    for method, path in [
        ("GET", "/api/health"),
        ("POST", "/api/channel/updates"),
        ("GET", "/ws/v1"),
        ("GET", "/ws/v1/node1"),  # a process by name, down
        ("GET", "/ws/v1/node9"),  # a name no upstream has
    ]:
        status, headers, body = request(proxy.port, method, path, b"{}" if method == "POST" else None)
        assert status == 503, (method, path)
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "node_unavailable"


# -- the TLS example ------------------------------------------------------------------------------------


def test_the_tls_example_serves_https_with_hsts_and_redirects_plain_http(static_root: Path, tmp_path: Path):
    certificates = tmp_path / "letsencrypt"
    certificates.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=node.example.com",
            "-keyout", str(certificates / "privkey.pem"), "-out", str(certificates / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    http_port = free_port()
    example = (PROXY_DIR / "tls.conf.example").read_text()
    assert "/etc/letsencrypt/live/node.example.com/" in example
    assert "listen 80;" in example
    tls_conf = example.replace("/etc/letsencrypt/live/node.example.com/", f"{certificates}/").replace(
        "listen 80;", f"listen 127.0.0.1:{http_port};"
    )
    https_port = free_port()
    nginx = NginxProcess(
        directory=tmp_path / "proxy",
        upstreams=[f"127.0.0.1:{free_port()}"],
        static_root=static_root,
        port=https_port,
        listen=f"127.0.0.1:{https_port} ssl",
        server_name="node.example.com",
        extra_conf=tls_conf,
    )
    nginx.start()
    try:
        status, headers, _ = request(https_port, "GET", "/", tls=True, host="node.example.com")
        assert (status, headers["location"]) == (302, "/card/")
        assert headers["strict-transport-security"].startswith("max-age=")
        status, headers, _ = request(https_port, "GET", "/api/health", tls=True, host="node.example.com")
        assert status == 503
        assert headers["strict-transport-security"].startswith("max-age=")
        status, headers, _ = request(http_port, "GET", "/card/?x=1", host="node.example.com")
        assert (status, headers["location"]) == (301, "https://node.example.com/card/?x=1")
        assert "strict-transport-security" not in request(http_port, "GET", "/", host="node.example.com")[1]
    finally:
        nginx.stop()
