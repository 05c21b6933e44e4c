"""The lab's Keystone: its setup commands, its server, and what it must know about the lab.

Keystone (PyPI `keystone`) runs from the lab venv under gunicorn on 127.0.0.1, with SQLite
and fernet tokens, as Glance does. `keystone-manage bootstrap` makes the admin (the
operator's user, project "admin") and Keystone's own endpoint; `register` then adds what a
cloud's installer would: a "service" project with one user each for Ironic and Glance (to
check tokens and, for Ironic's conductor, to read Glance), and the baremetal and image
services in the catalog, which is how k1prov finds Ironic and Glance with a Keystone entry.
"""
from __future__ import annotations

import os
from pathlib import Path

from k1prov.atomic_file import write_if_changed
from k1prov.errors import LabError
from k1prov.lab.config import KEYSTONE_ADMIN, KEYSTONE_REGION, SERVICE_PROJECT, LabSettings

# Service users and the catalog entry each is for: (user, service type, service name).
SERVICE_USERS = (("ironic", "baremetal", "ironic"), ("glance", "image", "glance"))
# Roles of the service users in the service project: "service" lets keystonemiddleware
# validate tokens (Keystone's identity:validate_token), "admin" lets Ironic's conductor read
# any project's images in Glance, as clouds' installers (devstack, kolla) give them.
SERVICE_ROLES = ("admin", "service")


def setup_commands(s: LabSettings) -> list[list[str]]:
    """keystone-manage steps before the first start: schema, fernet and credential keys,
    and the admin with Keystone's own endpoint (password from OS_BOOTSTRAP_PASSWORD)."""
    import grp
    import pwd

    manage = [str(s.venv / "bin" / "keystone-manage"), "--config-file", str(s.keystone_conf)]
    url = s.keystone_url + "/v3"
    # The lab's services run as the user who runs `lab up`: the keys belong to it.
    owner = ["--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
             "--keystone-group", grp.getgrgid(os.getgid()).gr_name]
    return [
        [*manage, "db_sync"],
        [*manage, "fernet_setup", *owner],
        [*manage, "credential_setup", *owner],
        [*manage, "bootstrap", "--bootstrap-username", KEYSTONE_ADMIN,
         "--bootstrap-project-name", "admin", "--bootstrap-role-name", "admin",
         "--bootstrap-service-name", "keystone", "--bootstrap-region-id", KEYSTONE_REGION,
         "--bootstrap-admin-url", url, "--bootstrap-internal-url", url, "--bootstrap-public-url", url],
    ]


# Keystone's WSGI entry point parses the process's command line with oslo.config, which
# refuses gunicorn's options: this module (written into the lab venv) empties it first.
WSGI_MODULE = "k1prov_lab_keystone"
WSGI_SOURCE = """\
# Written by k1prov lab (k1prov/lab/keystone.py): Keystone's WSGI application under gunicorn.
import sys

# oslo.config would read gunicorn's arguments as Keystone's (OS_KEYSTONE_CONFIG_FILES names
# the configuration).
del sys.argv[1:]
from keystone.wsgi.api import application  # noqa: E402,F401
"""


def install_wsgi_module(venv: Path) -> None:
    sites = sorted(venv.glob("lib/python3*/site-packages"))
    if not sites:
        raise LabError(f"lab virtualenv {venv} has no site-packages")
    write_if_changed(sites[0] / f"{WSGI_MODULE}.py", WSGI_SOURCE)


def server_argv(s: LabSettings) -> list[str]:
    return [str(s.venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{s.keystone_port}",
            "--workers", "1", "--threads", "4", "--graceful-timeout", "5",
            # As for Glance (lab.py): no keep-alive races, no control socket shared in $HOME.
            "--keep-alive", "0", "--no-control-socket",
            # One line per request in keystone.log (Keystone itself logs none at INFO): how
            # often clients asked for a token shows there ("POST /v3/auth/tokens").
            "--access-logfile", "-", f"{WSGI_MODULE}:application"]


def registered_marker(s: LabSettings) -> Path:
    """Written once `register` has filled Keystone's database for these endpoints (a new
    database removes it: Lab._sync_databases)."""
    return s.root / "keystone.sqlite.registered"


def register(s: LabSettings, *, admin_password: str, service_password: str, timeout: float) -> None:
    """Find or create the service project, users, roles, services and endpoints. A second
    `lab up` skips it (a dozen API calls, seconds) unless the endpoints changed; the service
    password is made once, in its file."""
    marker = registered_marker(s)
    done = f"{s.ironic_url} {s.glance_url}\n"
    if marker.is_file() and marker.read_text() == done:
        return
    _register(s, admin_password=admin_password, service_password=service_password, timeout=timeout)
    marker.write_text(done)


def _register(s: LabSettings, *, admin_password: str, service_password: str, timeout: float) -> None:
    import openstack
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    try:
        conn = openstack.connect(
            auth_type="password", load_yaml_config=False, load_envvars=False, api_timeout=timeout,
            auth=dict(auth_url=s.keystone_url + "/v3", username=KEYSTONE_ADMIN, password=admin_password,
                      project_name="admin", user_domain_name="Default", project_domain_name="Default"),
            region_name=KEYSTONE_REGION)
        idm = conn.identity
        project = idm.find_project(SERVICE_PROJECT, domain_id="default") or \
            idm.create_project(name=SERVICE_PROJECT, domain_id="default",
                               description="k1prov lab: Ironic's and Glance's users")
        roles = {}
        for role_name in SERVICE_ROLES:
            roles[role_name] = idm.find_role(role_name) or idm.create_role(name=role_name)
        urls = {"baremetal": s.ironic_url, "image": s.glance_url}
        for user_name, service_type, service_name in SERVICE_USERS:
            user = idm.find_user(user_name, domain_id="default")
            if user is None:
                user = idm.create_user(name=user_name, password=service_password, domain_id="default",
                                       default_project_id=project.id)
            for role in roles.values():
                idm.assign_project_role_to_user(project, user, role)
            service = next((sv for sv in idm.services() if sv.type == service_type), None) or \
                idm.create_service(name=service_name, type=service_type)
            endpoints = [e for e in idm.endpoints(service_id=service.id)]
            for interface in ("public", "internal", "admin"):
                found = [e for e in endpoints if e.interface == interface]
                if found and found[0].url == urls[service_type]:
                    continue
                for stale in found:
                    idm.delete_endpoint(stale)
                idm.create_endpoint(service_id=service.id, interface=interface,
                                    url=urls[service_type], region_id=KEYSTONE_REGION)
    # keystoneauth's own errors (connection, 401) are not SDK exceptions.
    except (os_exc.SDKException, ks_exc.ClientException) as exc:
        raise LabError(f"cannot register Ironic and Glance in the lab's Keystone at {s.keystone_url}: "
                       f"{exc}") from None
