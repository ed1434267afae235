"""``rnnkit serve RUN``: a local web app to look inside a trained RNN (the explorer).

:class:`~.explorer.Explorer` computes (from the library's diagnostics, sampling and metrics functions),
:func:`~.app.create_app` puts a JSON API and one page in front of it, :func:`serve` runs that on
werkzeug's threaded server (the one Flask and TensorBoard use for a local tool). Flask and orjson come
with the ``web`` extra: ``pip install "rnnkit[web]"``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError

__all__ = ["serve"]


def serve(
    run_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    texts: list[str] | None = None,
    max_chars: int = 5000,
    max_generate: int = 2000,
) -> None:
    """Serve the explorer over ``run_dir`` at http://host:port/ until interrupted.

    Reads only the run directory and the ``texts`` files (offered in the page's text picker); never
    imports or executes anything from the run directory (weights are safetensors, the rest JSON).
    ``host`` other than 127.0.0.1 / localhost exposes the model to the network: a warning says so.
    """
    try:
        from werkzeug.serving import make_server

        from .app import create_app
    except ImportError as e:
        raise InputError(
            f"rnnkit serve needs the web extra ({e.name} is missing): pip install 'rnnkit[web]'"
        ) from None
    from ..data import read_text
    from .explorer import Explorer, Limits

    named = {Path(p).name: read_text(p) for p in texts or []}
    explorer = Explorer(run_dir, named, Limits(max_chars=max_chars, max_generate=max_generate))
    local = host in ("127.0.0.1", "localhost", "::1")
    if not local:
        print(f"rnnkit serve: warning: listening on {host}, so other machines can reach this model",
              file=sys.stderr)  # fmt: skip
    server = make_server(host, port, create_app(explorer, local_only=local), threaded=True)
    print(f"rnnkit serve: {explorer.run_dir} ({explorer.kind}) at http://{host}:{server.port}/ "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
