"""deploy/'s nftables rules, as ``nft`` reads them (checked only: nothing is loaded)."""
import shutil
import subprocess

import pytest

from server import ROOT

RULES = ROOT / "deploy" / "nftables" / "sensorcast.nft"


@pytest.mark.skipif(not shutil.which("nft"), reason="nft is not installed (apt-get install nftables)")
def test_the_per_address_connection_cap_is_a_ruleset_nft_accepts():
    check = subprocess.run(["nft", "-c", "-f", str(RULES)], capture_output=True, text=True)
    if "Operation not permitted" in check.stderr:
        pytest.skip("nft needs CAP_NET_ADMIN even to check a ruleset")

    assert check.returncode == 0, check.stderr
