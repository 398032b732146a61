"""The site config: one YAML file mapping HPC users, accounts, partitions and QOS onto IBM Quantum instances.

    from qauvern_hpc.config import load_config, load_api_key
    cfg = load_config("/etc/qauvern-hpc/config.yaml")    # raises ConfigError("file:line:col: key.path: ...")
    policy = cfg.to_policy()                             # compiled, secret-free (qauvern_hpc.policy.compiled)
    key = load_api_key(cfg.api_key_file_for("physics"))  # SecretStr, read only when asked

Every model forbids unknown keys. Keys that qauvern removed or that we renamed get a message of their own,
and a close misspelling gets a "did you mean". Errors name file:line:column and the key path.
`qauvern_hpc/data/config.example.yaml` is the commented reference; `Config.json_schema()` feeds the docs.

API keys never live in the config: only paths of key files (mode 0600 or stricter), read lazily by
`load_api_key()`, which returns a pydantic `SecretStr` so the key never shows in a repr or a dump.

Modules, each importing only those above it: `positions` (YAML with line/column of every key), `schema`
(the section models), `checks` (across sections), `compile` (-> `qauvern_hpc.policy.compiled.Policy`),
`root` (`Config`), `load` (files, errors naming file:line), `docs` (the generated reference).
"""

from qauvern_hpc.config.load import (
    DEFAULT_CONFIG_PATH,
    LoadedConfig,
    compile_policy,
    example_config_text,
    load_api_key,
    load_config,
    load_config_full,
    parse_config,
)
from qauvern_hpc.config.root import Config
from qauvern_hpc.config.schema import DemandConfig, InstanceConfig, ResourceConfig
from qauvern_hpc.config.values import Seconds
from qauvern_hpc.ibm.plans import PLAN_IDS

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "PLAN_IDS",
    "Config",
    "DemandConfig",
    "InstanceConfig",
    "LoadedConfig",
    "ResourceConfig",
    "Seconds",
    "compile_policy",
    "example_config_text",
    "load_api_key",
    "load_config",
    "load_config_full",
    "parse_config",
]
