"""Command-line hook: `add_arguments(parser)` and `run(args)`, used by `kube-vast simulator` and
`python -m vastsim`. `run` serves until SIGINT or SIGTERM, then stops cleanly."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Any

from vastsim.faults import ENDPOINTS, THRESHOLDS
from vastsim.server import SimulatorServer

log = logging.getLogger("vastsim")

DEFAULT_PORT = 8181


def boot_seconds(text: str) -> tuple[float, float]:
    """`"1,2"` → (1.0, 2.0): seconds from the rental to `loading`, and to `running`."""
    try:
        to_loading, to_running = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOADING,RUNNING seconds such as 1,2; got {text!r}") from None
    if not 0 <= to_loading <= to_running:
        raise argparse.ArgumentTypeError("boot seconds must satisfy 0 <= LOADING <= RUNNING")
    return to_loading, to_running


def rate_limit(text: str) -> tuple[str, float]:
    """`"create=4.5"` → ("create", 4.5)."""
    endpoint, _, seconds = text.partition("=")
    if endpoint not in ENDPOINTS:
        raise argparse.ArgumentTypeError(f"endpoint must be one of {', '.join(ENDPOINTS)}; got {endpoint!r}")
    try:
        interval = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ENDPOINT=SECONDS such as create=4.5; got {text!r}") from None
    if interval < 0:
        raise argparse.ArgumentTypeError("the interval must be non-negative")
    return endpoint, interval


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on, 0 for any (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the offer set (default: %(default)s)")
    parser.add_argument("--offers", type=int, default=500, help="number of offers on the market (default: %(default)s)")
    parser.add_argument(
        "--boot-seconds",
        type=boot_seconds,
        default=(1.0, 2.0),
        metavar="LOADING,RUNNING",
        help="seconds from a rental until the instance is loading, and until it is running (default: 1,2)",
    )
    parser.add_argument(
        "--public-ip",
        default=None,
        help="address instances advertise in public_ipaddr (default: the listen address, or 127.0.0.1)",
    )
    parser.add_argument(
        "--rate-limit",
        type=rate_limit,
        action="append",
        default=[],
        metavar="ENDPOINT=SECONDS",
        help="answer 429 to calls of ENDPOINT closer than SECONDS apart (repeatable; "
        f"endpoints: {', '.join(ENDPOINTS)}; published: "
        + ", ".join(f"{e}={t:g}" for e, t in THRESHOLDS.items())
        + ")",
    )
    parser.add_argument(
        "--published-rate-limits",
        action="store_true",
        help="answer 429 (a text body, no Retry-After) to calls closer than the published minimum interval of "
        "their endpoint; --rate-limit entries override single endpoints",
    )
    parser.add_argument(
        "--search-row-cap",
        type=int,
        default=None,
        metavar="ROWS",
        help="most offers one search answers; more matches are cut and the answer says truncated (default: 10000)",
    )
    parser.add_argument(
        "--search-quota",
        type=int,
        default=None,
        metavar="ROWS",
        help="offer rows a key may receive per day (UTC); then 429 search_quota_exceeded with Retry-After "
        "(default: none)",
    )
    parser.add_argument(
        "--credit",
        type=float,
        default=None,
        metavar="DOLLARS",
        help="the account's starting credit that rentals draw down (GET /api/v0/users/current; default: 100)",
    )
    parser.add_argument(
        "--api-key-file",
        default=None,
        help="file holding the API key clients must send; without it any key (or none) is accepted",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(default: %(default)s)",
    )


def limits(args: argparse.Namespace) -> dict[str, Any]:
    """The `SimulatorServer` arguments of the limit flags: rate limits (the published ones with
    `--published-rate-limits`, each `--rate-limit` over them), the search limits, the credit."""
    return {
        "rate_limits": {**(THRESHOLDS if args.published_rate_limits else {}), **dict(args.rate_limit)},
        "search_row_cap": args.search_row_cap,
        "search_quota_rows": args.search_quota,
        "credit": args.credit,
    }


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 2 on a bad key file, 1 if the port is taken."""
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("vastsim", "vastmarket"):
        logging.getLogger(name).setLevel(args.log_level)
    api_key = None
    if args.api_key_file:
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                api_key = f.read().strip()
        except OSError as e:
            log.error("cannot read the API key file %s: %s", args.api_key_file, e.strerror)
            return 2
        if not api_key:
            log.error("the API key file %s is empty", args.api_key_file)
            return 2
    server = SimulatorServer(
        seed=args.seed,
        offers=args.offers,
        host=args.host,
        port=args.port,
        api_key=api_key,
        boot_seconds=args.boot_seconds,
        public_ip=args.public_ip,
        **limits(args),
    )
    try:
        server.start()
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, e.strerror)
        server.stop()
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info(
            "Vast simulator listening on %s (seed=%s offers=%s auth=%s admin=%s/_sim/state)",
            server.url,
            args.seed,
            args.offers,
            "on" if api_key else "off",
            server.url,
        )
        while not done.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        log.info("Vast simulator stopped")
    return 0
