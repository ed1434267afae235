"""The explorer's web app: one page (``static/``) and a small JSON API over :class:`.explorer.Explorer`.

Every endpoint takes its arguments in the query string (GET) or as a JSON object (POST, for long
texts), and answers JSON; bad input gets HTTP 400 and ``{"error": "..."}`` naming what was expected.

    GET /api/info                              the run: kind, model, layers, fields, limits, texts
    GET /api/trace?text=&layers=&fields=&top=  tokens; per layer, h / c / gates, each (N, H)
    GET /api/generate?prime=&length=&temperature=&top_k=&top_p=&seed=&greedy=&top=&stream=
    GET /api/units?text=&layer=&field=&pattern=&sort=&count=
    GET /api/search?text=&start=&end=&layer=&field=&threshold=&left=&right=&agree=&min_length=
    GET /api/pca?text=&layer=&field=
    GET /api/metrics                           the training curves (re-read each time)
    GET /api/text?name=                        a text file named on the command line
    GET /api/translate?text=&beam=             a seq2seq run's output and attention matrix
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from ..errors import InputError
from .explorer import Explorer

STATIC = Path(__file__).parent / "static"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), status, mimetype="application/json")


def _params() -> dict[str, Any]:
    params: dict[str, Any] = dict(request.args)
    if request.method == "POST":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InputError("a POST body must be a JSON object of the same arguments as the query string")
        params.update(body)
    return params


def _number(kind: type, name: str, value: Any) -> Any:
    if kind is int and isinstance(value, bool) or isinstance(value, (list, dict)):
        raise InputError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None


class Args:
    """Typed access to a request's arguments, each error naming the argument and what came."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def _get(self, name: str, default: Any) -> Any:
        value = self.params.get(name)
        return default if value is None or value == "" else value  # null or empty: not given

    def text(self, name: str, default: str | None = None) -> str:
        value = self.params.get(name)
        value = default if value is None else value
        if value is None:
            raise InputError(f"missing argument {name!r}")
        if not isinstance(value, str):
            raise InputError(f"{name} must be a string, got {type(value).__name__}")
        return value

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self._get(name, default)
        return None if value is None else _number(int, name, value)

    def float(self, name: str, default: float | None = None) -> float | None:
        value = self._get(name, default)
        return None if value is None else _number(float, name, value)

    def bool(self, name: str, default: bool = False) -> bool:
        value = self._get(name, default)
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off", ""):
            return False
        raise InputError(f"{name} must be true or false, got {value!r}")

    def ints(self, name: str) -> list[int] | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        items = value if isinstance(value, list) else str(value).split(",")
        return [_number(int, name, v) for v in items]

    def words(self, name: str) -> list[str] | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        return [str(v) for v in value] if isinstance(value, list) else str(value).split(",")


def create_app(explorer: Explorer, local_only: bool = True) -> Flask:
    """The Flask app over ``explorer``. ``local_only`` refuses requests whose Host header is not
    localhost (a page elsewhere cannot reach the server through DNS rebinding)."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = 4 * explorer.limits.max_chars + 65536  # UTF-8 and JSON escapes

    @app.before_request
    def check_host() -> Response | None:
        if (
            local_only
            and request.host.rsplit(":", 1)[0] not in LOCAL_HOSTS
            and request.host not in LOCAL_HOSTS
        ):
            return _json({"error": f"this server answers only on localhost, not {request.host!r}"}, 403)
        return None

    @app.errorhandler(InputError)
    @app.errorhandler(ValueError)
    @app.errorhandler(TypeError)
    def bad_input(e: Exception) -> Response:
        return _json({"error": str(e)}, 400)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        return _json({"error": f"{e.code} {e.name}: {e.description}"}, e.code or 500)

    @app.get("/")
    def index() -> Response:
        return app.send_static_file("index.html")

    def route(path: str) -> Callable[[Callable[[Args], Any]], Any]:
        def register(fn: Callable[[Args], Any]) -> Any:
            def view() -> Response:
                result = fn(Args(_params()))
                return result if isinstance(result, Response) else _json(result)

            view.__name__ = fn.__name__
            return app.route(path, methods=["GET", "POST"])(view)

        return register

    @route("/api/info")
    def info(a: Args) -> Any:
        return explorer.info()

    @route("/api/text")
    def text(a: Args) -> Any:
        return explorer.text(a.text("name"))

    @route("/api/trace")
    def trace(a: Args) -> Any:
        return explorer.trace(a.text("text"), a.ints("layers"), a.words("fields"), top=a.int("top", 0))

    @route("/api/units")
    def units(a: Args) -> Any:
        return explorer.units(a.text("text"), a.int("layer", 0), a.text("field", "h"), a.params.get("pattern")
                              or None, a.text("sort", "variance"), a.int("count", 20))  # fmt: skip

    @route("/api/search")
    def search(a: Args) -> Any:
        return explorer.search(
            a.text("text"), a.int("start"), a.int("end"), layer=a.int("layer", 0), field=a.text("field", "h"),
            threshold=a.float("threshold", 0.3), left=a.int("left", 1), right=a.int("right", 0),
            agree=a.float("agree", 1.0), min_length=a.int("min_length", 2), count=a.int("count", 20),
        )  # fmt: skip

    @route("/api/pca")
    def pca(a: Args) -> Any:
        return explorer.pca(a.text("text"), a.int("layer", 0), a.text("field", "h"))

    @route("/api/generate")
    def generate(a: Args) -> Any:
        events = explorer.generate(
            a.text("prime", "\n"), a.int("length", 200), temperature=a.float("temperature", 1.0),
            top_k=a.int("top_k"), top_p=a.float("top_p"), seed=a.int("seed", 0), greedy=a.bool("greedy"),
            top=a.int("top", 5),
        )  # fmt: skip
        if a.bool("stream"):  # one JSON object per line as each token is drawn, then the whole result
            return Response(_lines(events), mimetype="application/x-ndjson")
        return [e for e in events if e.get("done")][0]

    @route("/api/metrics")
    def metrics(a: Args) -> Any:
        return explorer.metrics(points=a.int("points", 2000))

    @route("/api/translate")
    def translate(a: Args) -> Any:
        return explorer.translate(a.text("text"), beam=a.int("beam", 1))

    return app


def _lines(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        yield orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
