"""Push a model folder to a Hugging Face Hub model repo, in the layout plain timm loads
(`timm.create_model("hf-hub:OWNER/NAME", pretrained=True)`), with a model card.

One commit holds model.safetensors, config.json, metrics.json (without local paths), README.md and the card's
figures. The token is used for the requests and nothing else: it is never logged, written or returned, and
it is scrubbed from any error message that could carry it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from engine import hub, model_card
from engine.errors import UserError
from engine.export import check_model_folder, read_metrics

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
TOKENS_URL = "https://huggingface.co/settings/tokens"


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise UserError(f"Repo id must look like OWNER/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}.")
    return repo_id


def files_for(model_dir: str | Path, repo_id: str) -> dict[str, bytes]:
    """Everything the commit uploads, path in repo -> bytes."""
    path = check_model_folder(model_dir)
    files = {name: (path / name).read_bytes() for name in ("model.safetensors", "config.json")}
    files["metrics.json"] = json.dumps(model_card.public_metrics(read_metrics(path)), indent=1).encode()
    files["README.md"] = model_card.render(path, repo_id).encode()
    files.update(model_card.figures(path))
    return files


def push(model_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Create (or reuse) the repo and upload the model in one commit. Returns the repo's URL."""
    repo_id = check_repo_id(repo_id)
    check_model_folder(model_dir)
    if hub.is_offline() or not hub.probe():
        raise UserError(f"Offline: the Hugging Face Hub ({hub.hub_endpoint()}) cannot be reached from this machine, so the "
                        "model cannot be pushed. Download the model folder as a .zip instead, and push it from a "
                        "connected machine with `python -m engine push`.")
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = (token or "").strip() or get_token()
    if not token:
        raise UserError(f"Pushing needs a Hugging Face token with write access: create one at {TOKENS_URL} and paste it "
                        "(on the command line: set HF_TOKEN).")
    files = files_for(model_dir, repo_id)
    api = HfApi(endpoint=hub.hub_endpoint(), token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
        api.create_commit(repo_id, operations, commit_message="Upload model trained with Snapfit")
    except Exception as exc:  # huggingface_hub raises HTTP errors, httpx2 errors and ValueErrors: all become one message
        raise UserError(_explain(exc, repo_id, token)) from None  # `from None`: the cause could carry the token
    return str(url)


def _explain(exc: Exception, repo_id: str, token: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        text = f"The Hub refused the token (401): check that it is a valid token with write access ({TOKENS_URL})."
    elif status == 403:
        text = f"The token may not write to {repo_id} (403): use a token with write access to that owner."
    elif status is not None:
        text = f"The Hub answered {status} while pushing to {repo_id}: {str(exc).splitlines()[0]}"
    else:
        text = f"Could not push to {repo_id}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return text.replace(token, "***")
