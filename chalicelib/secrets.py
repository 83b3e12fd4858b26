"""Secrets from SSM Parameter Store (SecureString), fetched on first use and cached per container.

Values are never logged; errors name the parameter, not its value.
"""

from __future__ import annotations

import threading

from chalicelib.errors import SluiceError

_CACHE: dict[str, str] = {}
_LOCK = threading.Lock()


class SecretUnavailable(SluiceError):
    """An SSM parameter could not be read."""


def parameter(name: str) -> str:
    """The decrypted value of SSM parameter `name`."""
    with _LOCK:
        if name in _CACHE:
            return _CACHE[name]
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
    except (ClientError, BotoCoreError) as exc:
        raise SecretUnavailable(
            f"Could not read SSM parameter {name}: {type(exc).__name__}. "
            "Check that it exists and that the Lambda role may read it."
        ) from None
    value = response["Parameter"]["Value"]
    with _LOCK:
        _CACHE[name] = value
    return value


def value_or_parameter(value: str, parameter_name: str) -> str:
    """`value` when set (local runs); else the SSM parameter it names (deployed stages); else ""."""
    if value:
        return value
    return parameter(parameter_name) if parameter_name else ""


def known_values() -> list[str]:
    """The secret values read so far (chalicelib.logs masks them in every line it formats)."""
    with _LOCK:
        return [v for v in _CACHE.values() if len(v) >= 4]


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
