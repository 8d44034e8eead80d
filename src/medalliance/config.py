"""Settings from the environment (prefix ``MEDALLIANCE_``) via pydantic-settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from medalliance.kernel.errors import ConfigurationError

DEFAULT_SECRET_KEY = "insecure-demo-secret-change-me-before-production"  # noqa: S105
DEFAULT_DATABASE_URL = "sqlite:///./medalliance.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDALLIANCE_", env_file=None, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str = DEFAULT_SECRET_KEY
    demo_mode: bool = False
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_hours: int = Field(default=12, ge=1, le=24 * 30)
    # Lockout after repeated failures is an MLPS 2.0 level-3 expectation
    # (../shared/reference/care/WORKFLOWS.md §6); the numbers are site policy.
    lockout_threshold: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    break_glass_minutes: int = Field(default=60, ge=1, le=24 * 60)
    log_sql: bool = False
    # Web UI sessions: ended after this long without a request (site policy), and the
    # cookie is marked Secure when the site is served over https (behind a proxy).
    web_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    web_secure_cookies: bool = False

    def check_safe_to_serve(self) -> None:
        """Refuse to serve real data with the published default secret."""
        if not self.demo_mode and self.secret_key == DEFAULT_SECRET_KEY:
            raise ConfigurationError(
                "Refusing to start: MEDALLIANCE_SECRET_KEY is the published default. "
                "Set MEDALLIANCE_SECRET_KEY to a long random value "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))"), '
                "or run `medalliance demo` for a demonstration."
            )
        if len(self.secret_key) < 32:
            raise ConfigurationError("MEDALLIANCE_SECRET_KEY must be at least 32 characters long.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
