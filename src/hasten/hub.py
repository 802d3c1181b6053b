"""Hugging Face Hub ids (hf:ORG/NAME[@REVISION]) turned into local folders: huggingface_hub's
cache, filled once online; only configs, tokenizers and weights are fetched, never code."""

from __future__ import annotations

import re
from pathlib import Path

from hasten.errors import HastenError

# ORG/NAME with an optional @REVISION (a branch, tag or commit).
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+(@[\w./-]+)?")
# What a snapshot fetches: configs, tokenizers and weights, never code (`trust_remote_code` is
# never passed, so a repository's Python files would not run anyway). PyTorch .bin weights
# only when the repository has no safetensors.
HUB_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken")
HUB_WEIGHTS = (("*.safetensors",), ("pytorch_model*.bin",))


def hub_folder(hub_id: str) -> Path:
    """The local folder of a Hub model ORG/NAME[@REVISION] in huggingface_hub's cache: what
    the cache holds, downloaded first when online. HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE and
    the token variables work as they do for transformers."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, _, revision = hub_id.partition("@")
    try:
        for weights in HUB_WEIGHTS:
            folder = Path(snapshot_download(repo, revision=revision or None,
                                            allow_patterns=[*HUB_FILES, *weights]))
            if any(folder.glob(weights[0])):
                break
    except RepositoryNotFoundError:
        raise HastenError(f"{repo} is neither a folder here nor a model on "
                          f"{constants.ENDPOINT} (a private one needs HF_TOKEN).") from None
    except RevisionNotFoundError:
        raise HastenError(f"{repo} has no revision {revision!r}; give a branch, tag or "
                          "commit it has.") from None
    except LocalEntryNotFoundError:
        raise HastenError(f"{repo} is not in the Hugging Face cache and cannot be downloaded "
                          "now (offline, or HF_HUB_OFFLINE is set); fetch it once online "
                          f"(hf download {repo}) or pass a local folder.") from None
    except (HfHubHTTPError, OSError) as exc:
        raise HastenError(f"Downloading {repo} failed ({' '.join(str(exc).split())[:200]}); "
                          "check the network or HF_ENDPOINT, or pass a local folder.") from None
    return folder
