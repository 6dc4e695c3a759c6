"""A contract-faithful fake NeMo Microservices Platform for tests (nmp-api.md §11).

``run_fake_nmp()`` serves three FastAPI apps on loopback ports: N (Entity Store, DMS,
Customizer, Evaluator), D (Data Store + HF Hub mount) and P (NIM Proxy). Tests drive work
and failures through the shared :class:`FakeNMP` state and assert on its ledger.
"""

from tests.fake_nmp.server import FakeNMPServer, run_fake_nmp
from tests.fake_nmp.state import FakeNMP, LedgerEntry, new_id

__all__ = ["FakeNMP", "FakeNMPServer", "LedgerEntry", "new_id", "run_fake_nmp"]
