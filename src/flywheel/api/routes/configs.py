"""``/api/configs``: named, versioned job configurations (admin writes, viewers read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from flywheel.api.deps import ConfigsDep, PrincipalDep, require
from flywheel.api.errors import error_responses
from flywheel.api.schemas import CONFIG_NAME_PATTERN, ConfigIn, ConfigList, ConfigOut, ConfigUpdate
from flywheel.domain.jobs import Role
from flywheel.services.auth import Forbidden

router = APIRouter(
    prefix="/api/configs",
    tags=["configs"],
    dependencies=[require(Role.viewer)],
    responses=error_responses(401, 403, 503),
)


def _unscoped(principal: PrincipalDep) -> None:
    """Named configurations are shared by every tenant (any job may name one), so only an
    unscoped admin may write them: a tenant's admin could otherwise point another tenant's
    jobs at its own endpoints, judge or webhook."""
    if principal.client_ids is not None:
        raise Forbidden(
            f"named configurations are shared by every tenant, and this key is scoped to "
            f"client_ids {sorted(principal.client_ids)}: ask an unscoped admin to write them, "
            "or pass data_split_config overrides on POST /api/jobs"
        )


_admin = [require(Role.admin), Depends(_unscoped)]
ConfigName = Annotated[str, Path(pattern=CONFIG_NAME_PATTERN)]


@router.post(
    "",
    status_code=201,
    dependencies=_admin,
    responses=error_responses(409, 413, 422),
    summary="Create",
)
def create_config(body: ConfigIn, configs: ConfigsDep, principal: PrincipalDep) -> ConfigOut:
    """Validate and store version 1 of a named config."""
    return ConfigOut.from_domain(
        configs.create(
            name=body.name,
            job_type=body.job_type,
            body=body.body,
            description=body.description,
            created_by=principal.key_id,
        )
    )


@router.get("", summary="List")
def list_configs(configs: ConfigsDep) -> ConfigList:
    """List the latest version of every named config."""
    return ConfigList(items=[ConfigOut.from_domain(c) for c in configs.list_latest()])


@router.get("/{name}", responses=error_responses(404), summary="Show")
def get_config(
    name: ConfigName, configs: ConfigsDep, version: Annotated[int | None, Query(ge=1)] = None
) -> ConfigOut:
    """Return the latest (or the given) version of a named config."""
    return ConfigOut.from_domain(configs.get(name, version))


@router.get("/{name}/versions", responses=error_responses(404), summary="Versions")
def list_config_versions(name: ConfigName, configs: ConfigsDep) -> ConfigList:
    """List every version of a named config, oldest first."""
    return ConfigList(items=[ConfigOut.from_domain(c) for c in configs.versions(name)])


@router.put(
    "/{name}", dependencies=_admin, responses=error_responses(404, 409, 413, 422), summary="Update"
)
def update_config(
    name: ConfigName, body: ConfigUpdate, configs: ConfigsDep, principal: PrincipalDep
) -> ConfigOut:
    """Add a new version; 409 when ``expected_version`` is not the latest."""
    return ConfigOut.from_domain(
        configs.update(
            name,
            expected_version=body.expected_version,
            body=body.body,
            job_type=body.job_type,
            description=body.description,
            created_by=principal.key_id,
        )
    )


@router.delete(
    "/{name}",
    status_code=204,
    dependencies=_admin,
    responses=error_responses(404, 409),
    summary="Delete",
)
def delete_config(name: ConfigName, configs: ConfigsDep) -> None:
    """Soft-delete a config no active job uses; jobs that pinned it keep their snapshot."""
    configs.delete(name)
