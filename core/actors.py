"""Who is acting: a person or tool with a role and, for county operators, a county scope.

The API builds one from a token; the CLI, collectors and scheduler use system actors. Scope
checks live here so that the API, the engine and the UI apply the same rule (属地原则)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.models import Institution, Role, User


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role
    county_codes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_user(cls, user: User) -> Actor:
        return cls(user.name, user.role, frozenset(c.code for c in user.counties))

    @classmethod
    def system(cls, name: str) -> Actor:
        """A service component (collector, scheduler); acts with the city's authority."""
        return cls(name, Role.CITY_ADMIN)

    @property
    def city_wide(self) -> bool:
        return self.role in (Role.CITY_ADMIN, Role.AUDITOR, Role.VIEWER) and not self.county_codes

    def may_see(self, institution: Institution) -> bool:
        return self.city_wide or institution.county.code in self.county_codes

    def may_act(self, institution: Institution) -> bool:
        if self.role == Role.CITY_ADMIN:
            return True
        return self.role == Role.COUNTY_OPERATOR and institution.county.code in self.county_codes
