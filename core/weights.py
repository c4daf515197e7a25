"""Where shipped weights are found, in one documented order, so an installed package finds them too.

    find_weights("stack.safetensors")            # the search order below
    find_weights("stack.safetensors", "my.safetensors")   # an explicit path, used as given

The order, first match wins:
1. an explicit path (a flag such as `--weights`, or a Python argument), which must exist;
2. the folder named by the `DRIVESTACK_WEIGHTS` environment variable;
3. `weights/` beside the packages: a checkout, or an editable install of one;
4. the user's cache folder, `$XDG_CACHE_HOME/drivestack/weights` (default `~/.cache/drivestack/weights`),
   where a machine without the repository keeps its copy.
Nothing is downloaded: a vehicle or a CI machine may have no network, and weights that arrive silently are
weights nobody reviewed. When no place has the file, the error lists every place it looked.
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_VARIABLE = "DRIVESTACK_WEIGHTS"
CHECKOUT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


class WeightsNotFound(FileNotFoundError):
    """No weights file where they were looked for; the message names each place."""


def cache_folder() -> Path:
    """The user's cache folder for weights (XDG base directories)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "drivestack" / "weights"


def search_folders() -> list[tuple[str, Path | None]]:
    """(what, folder) in search order after an explicit path; the folder is None for an unset variable."""
    variable = os.environ.get(WEIGHTS_VARIABLE)
    return [
        (f"${WEIGHTS_VARIABLE}", Path(variable) if variable else None),
        ("the checkout", CHECKOUT_WEIGHTS),
        ("the cache", cache_folder()),
    ]


def find_weights(name: str, explicit: str | Path | None = None, reproduce: str | None = None) -> Path:
    """The weights file `name` (e.g. "stack.safetensors") by the module's search order; `explicit`, when
    given, is the answer or an error naming it. `reproduce`: the command that makes the file, for the error."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise WeightsNotFound(f"weights {path}: no such file")
        return path
    looked = []
    for what, folder in search_folders():
        if folder is None:
            looked.append(f"{what} (not set)")
            continue
        if (folder / name).is_file():
            return folder / name
        looked.append(f"{folder} ({what})")
    raise WeightsNotFound(
        f"weights {name}: not found; looked in {'; '.join(looked)}. Put the file in one of these folders "
        "or pass its path" + (f", or reproduce it with `{reproduce}` in a checkout" if reproduce else "")
    )
