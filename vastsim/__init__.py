"""A local Vast.ai marketplace: the same endpoints, shapes and quirks as the real API (vast-api.md).

Contract:
- Standard library only (no Flask, Kubernetes client or requests); the domain package stays pure.
- `generate_offers(seed, count)` is deterministic: the same seed gives the same offers.
- `SimulatorServer` serves the Vast REST routes on a real local port (`.url`), with instances that
  go null → loading → running on the injected clock and, once running, really listen on
  127.0.0.1 for each `-p` mapping (HTTP 200 by default). `stop()` joins every thread it started
  and closes every socket, instance ports included.
- Faults are injected and state inspected through `server.faults`, `server.market` and
  `server.state()`, or over HTTP under `/_sim/` (not authenticated). docs/simulator.md lists both.
- The simulator never logs or echoes the API key.

Modules: `catalog` (static market facts), `offerset` (offer generation and pricing), `filters`,
`search`, `listing` (pure query logic), `rental` (rent body), `container` (what the simulated
image does: exits, shutdown), `lifecycle`, `instance`, `market`
(state, thread-safe), `ports` (instance sockets), `faults`, `api` and `admin` (routes),
`server` (HTTP shell), `cli`.
"""

from vastsim.faults import ENDPOINTS, Faults
from vastsim.offerset import generate_offers
from vastsim.server import SimulatorServer

__all__ = ["ENDPOINTS", "Faults", "SimulatorServer", "generate_offers"]
