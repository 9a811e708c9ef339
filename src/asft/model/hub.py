"""Publishing a model folder to the Hugging Face Hub.

:func:`token` finds the Hub token a push will use (the environment variable ``hub.token_env``
names, else the ``hf auth login`` token); the train command calls it before training, so a
missing token costs seconds, not a run. :func:`push` writes the model card into the folder
and uploads the folder through ``huggingface_hub.HfApi``: ``create_repo`` (``exist_ok``), then
``upload_folder``. Whatever stops the upload (a refused token, an HTTP error, no network) is
a :class:`HubError` that says where the model is and how to push it again: a failed push
never costs the trained model. The token never appears in a message.
"""

from __future__ import annotations

import os
from pathlib import Path

from asft import atomic
from asft.config import HubConfig
from asft.errors import AsftError

CARD_FILE = "README.md"


class HubError(AsftError):
    """A push to the Hub that cannot start or did not complete."""


def token(hub: HubConfig) -> str:
    """The Hub token for ``hub``: ``$<hub.token_env>``, else the token of ``hf auth login``.

    Raises :class:`HubError` when there is none, or when ``HF_HUB_OFFLINE`` forbids the
    network, before any work is done.
    """
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise HubError(f"hub.repo_id is {hub.repo_id!r} but HF_HUB_OFFLINE is set, and a push "
                       "needs the network; unset HF_HUB_OFFLINE or drop the push")
    value = os.environ.get(hub.token_env, "").strip()
    if not value:
        try:
            value = get_token() or ""
        except Exception:  # an OIDC exchange or OAuth refresh that failed: as no token
            value = ""
    if not value:
        raise HubError(f"hub.repo_id is {hub.repo_id!r} but no Hub token was found: set "
                       f"${hub.token_env} (hub.token_env names the variable) to a token with "
                       "write access, or run `hf auth login`")
    return value


def push(folder: Path, hub: HubConfig, card: str, *, again: str | None = None) -> str:
    """Write ``card`` as ``folder/README.md`` and upload ``folder`` to ``hub.repo_id``.

    Args:
        folder: the final model folder (Hugging Face format).
        hub: where and how to push (``hub.repo_id`` must be set).
        card: the model card (:func:`asft.model.card.model_card`).
        again: the command that pushes the model again, for the error message; default
            ``hf upload REPO FOLDER``.

    Returns the URL of the repository. Raises :class:`HubError` naming the cause, the folder
    that still holds the model and ``again``.
    """
    from huggingface_hub import HfApi

    from asft import __version__

    if not hub.repo_id:
        raise HubError("hub.repo_id is not set: nothing to push to")
    again = again or f"hf upload {hub.repo_id} {folder}"
    try:
        atomic.write_text(folder / CARD_FILE, card)
    except OSError as err:
        raise HubError(f"cannot write the model card into {folder}: {err.strerror or err}; the "
                       f"model itself is intact there: push it with `{again}`") from None
    safe = f"The trained model is safe in {folder}; push it again with `{again}`"
    try:
        secret = token(hub)
    except HubError as err:
        raise HubError(f"{err}. {safe}") from None
    api = HfApi(endpoint=hub.endpoint, token=secret, library_name="asft",
                library_version=__version__)
    try:
        url = api.create_repo(hub.repo_id, private=hub.private, exist_ok=True)
        api.upload_folder(repo_id=hub.repo_id, folder_path=folder,
                          commit_message=hub.commit_message)
    except Exception as err:  # any cause: the message must say the model is safe, and where
        raise HubError(f"could not push {folder} to {hub.repo_id}"
                       f"{' at ' + hub.endpoint if hub.endpoint else ''}: "
                       f"{_reason(err, secret)}. {safe}") from None
    return str(url)


def _reason(err: Exception, secret: str) -> str:
    """One line on why the push failed, with a hint for the usual causes; never the token."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        # the Hub's own words and the request, not httpx's boilerplate around them
        said = getattr(err, "server_message", None) or getattr(response, "reason_phrase", "")
        request = getattr(response, "request", None)
        where = f" on {request.method} {request.url.path}" if request is not None else ""
        text = f"HTTP {status}{where}: {said}"
    else:
        text = f"{type(err).__name__}: {err}"
    text = " ".join(text.split()).replace(secret, "***")
    if len(text) > 400:
        text = text[:397] + "..."
    hint = {401: "the token was refused: check that it is valid and has write access",
            403: "the token may not write to this namespace",
            404: "no such repository or namespace"}.get(status or 0)
    return text + (f" ({hint})" if hint else "")
