"""The shared token: loading it from a file or the environment, checking Authorization headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringrift_operator.agent.auth import (
    TOKEN_ENV,
    TokenError,
    bearer_headers,
    is_authorized,
    load_token,
)

TOKEN = "0123456789abcdef0123456789abcdef"


def test_token_from_file_is_stripped(tmp_path: Path) -> None:
    (tmp_path / "t").write_text(TOKEN + "\n")
    assert load_token(token_file=tmp_path / "t", env={TOKEN_ENV: "ignored-ignored-1"}) == TOKEN


def test_token_from_environment() -> None:
    assert load_token(token_file=None, env={TOKEN_ENV: f"  {TOKEN} "}) == TOKEN


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        pytest.param(None, {}, "is empty", id="none"),
        pytest.param(None, {TOKEN_ENV: "short"}, "shorter", id="short"),
        pytest.param("", {}, "is empty", id="empty-file"),
        pytest.param("a b c d e f g h i j k", {}, "whitespace", id="inner-space"),
        pytest.param("missing", {}, "cannot read", id="missing-file"),
    ],
)
def test_unusable_tokens_are_refused(
    tmp_path: Path, content: str | None, env: dict[str, str], message: str
) -> None:
    token_file = None
    if content is not None:
        token_file = tmp_path / "t"
        if content != "missing":
            token_file.write_text(content)
    with pytest.raises(TokenError, match=message):
        load_token(token_file=token_file, env=env)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        pytest.param(f"Bearer {TOKEN}", True, id="bearer"),
        pytest.param(f"bearer {TOKEN}", True, id="scheme-case"),
        pytest.param(None, False, id="missing"),
        pytest.param("", False, id="empty"),
        pytest.param("Bearer", False, id="no-token"),
        pytest.param(f"Bearer {TOKEN}x", False, id="longer"),
        pytest.param(f"Bearer {TOKEN[:-1]}", False, id="shorter"),
        pytest.param(f"Basic {TOKEN}", False, id="other-scheme"),
        pytest.param(f"Bearer {TOKEN[:-1]}é", False, id="non-ascii"),
    ],
)
def test_is_authorized(header: str | None, ok: bool) -> None:
    assert is_authorized(header, token=TOKEN) is ok


def test_bearer_headers_round_trip() -> None:
    assert is_authorized(bearer_headers(TOKEN)["Authorization"], token=TOKEN)
