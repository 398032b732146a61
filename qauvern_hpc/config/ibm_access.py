"""IBM access as a site config describes it: the endpoints it names and the admin client for its account.

The config depends on the IBM package (CRNs, endpoints, clients), never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qauvern_hpc.ibm import factory

if TYPE_CHECKING:
    from qauvern_hpc.config.root import Config
    from qauvern_hpc.ibm.client import IBMClient
    from qauvern_hpc.ibm.endpoints import Endpoints


def endpoints_from_config(cfg: Config, *, staging: bool = False) -> Endpoints:
    """The IBM hosts the config names: the emulator, overrides of IBM's hosts, or production/staging."""
    ep = cfg.ibm.endpoints
    return factory.endpoints(
        emulator=ep.emulator,
        staging=staging or cfg.ibm.staging,
        iam=ep.iam,
        resource_controller=ep.resource_controller,
        quantum=ep.quantum,
    )


def client_from_config(cfg: Config, args: Any) -> IBMClient:
    """The admin client for `cfg`'s account, honouring the global --staging and key options."""
    return factory.client(
        args,
        endpoints_from_config(cfg, staging=bool(getattr(args, "staging", False))),
        cfg.ibm.api_key_file,
        ru_per_second=cfg.ibm.resource_units_per_second,
    )


__all__ = ["client_from_config", "endpoints_from_config"]
