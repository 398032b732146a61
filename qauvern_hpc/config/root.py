"""`Config`, the root model: the sections of `schema` plus the cross-section checks and the compilation.

Validating a `Config` runs `checks.problems` (a config built in code cannot skip them); the loader passes
``context={"defer_cross_checks": True}`` and runs them itself, so that each problem gets its own
``file:line:column``. `to_policy` is `compile.to_policy`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, model_validator

from qauvern_hpc.config import checks
from qauvern_hpc.config.compile import to_policy as policy_of
from qauvern_hpc.config.positions import Issue, format_loc
from qauvern_hpc.config.schema import ConfigFields, InstanceConfig
from qauvern_hpc.policy.compiled import Policy


class Config(ConfigFields):
    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> Config:
        if (info.context or {}).get("defer_cross_checks"):
            return self
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{format_loc(p.loc)}: {p.message}" for p in problems))
        return self

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of the config file (the docs' config reference is generated from it)."""
        return cls.model_json_schema(mode="validation")

    def problems(self) -> list[Issue]:
        """Cross-reference errors: duplicates, unknown instances/resources named by rules."""
        return checks.problems(self)

    def warnings(self) -> list[Issue]:
        """Things that load but are probably not what the admin meant."""
        return checks.warnings(self)

    def plan_of(self, instance: InstanceConfig) -> str:
        """The instance's IBM Quantum plan: its own `plan`, else `ibm.plan`."""
        return instance.plan or self.ibm.plan

    def to_policy(
        self, *, source: str | None = None, source_sha256: str | None = None, generated_at: str | None = None
    ) -> Policy:
        """The compiled, secret-free policy (see qauvern_hpc.policy.compiled for the JSON shape)."""
        return policy_of(self, source=source, source_sha256=source_sha256, generated_at=generated_at)
